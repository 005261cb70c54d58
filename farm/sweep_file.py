"""Reading sweep files (YAML, TOML, JSON) defensively: size-capped, alias bombs refused, errors with lines."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from farm import defaults
from farm.errors import SpecError


def _count_nodes(value: Any, budget: int) -> int:
    """Walk the parsed tree counting every visit, so a shared (aliased) subtree counts each time it is used.

    An anchor 'bomb' is cheap in memory because PyYAML shares aliased objects, but it explodes the moment
    anything walks it: we stop as soon as the budget is spent instead.
    """
    stack = [(value, 0)]
    seen = 0
    while stack:
        node, depth = stack.pop()
        seen += 1
        if seen > budget:
            raise OverflowError(f"more than {budget} values (YAML aliases count each time they are used)")
        if depth > 32:
            raise OverflowError("nested more than 32 levels deep")
        if isinstance(node, dict):
            stack.extend((k, depth + 1) for k in node)
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
        elif isinstance(node, str) and len(node) > 10_000:
            raise OverflowError(f"a string of {len(node)} characters")
    return seen


def parse_sweep_text(text: str, fmt: str, source: str) -> dict[str, Any]:
    """Parse ``text`` as ``fmt`` ('yaml', 'toml' or 'json') into a plain dict, or raise SpecError."""
    try:
        if fmt == "toml":
            data = tomllib.loads(text)
        elif fmt == "json":
            data = json.loads(text)
        else:
            data = _parse_yaml(text, source)
    except tomllib.TOMLDecodeError as e:
        raise SpecError.one("", f"malformed TOML: {e}", source) from None
    except json.JSONDecodeError as e:
        raise SpecError.one(f"line {e.lineno}, column {e.colno}", f"malformed JSON: {e.msg}", source) from None
    except RecursionError:
        raise SpecError.one("", "nested too deeply", source) from None
    if not isinstance(data, dict):
        raise SpecError.one("", f"a sweep file must hold a mapping at the top, not {type(data).__name__}", source)
    try:
        _count_nodes(data, defaults.MAX_SWEEP_NODES)
    except OverflowError as e:
        raise SpecError.one("", f"refused: {e}", source) from None
    return data


def _parse_yaml(text: str, source: str) -> Any:
    """PyYAML's safe loader (no Python objects ever built); imported only for YAML files."""
    import yaml

    try:
        return yaml.load(text, Loader=yaml.SafeLoader)  # noqa: S506 - the safe loader
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        raise SpecError.one(where, f"malformed YAML: {e.problem or e.context}", source) from None
    except yaml.YAMLError as e:
        raise SpecError.one("", f"malformed YAML: {e}", source) from None


def read_sweep_file(path: Path) -> dict[str, Any]:
    source = str(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise SpecError.one("", f"cannot read: {e.strerror}", source) from None
    if size > defaults.MAX_SWEEP_FILE_BYTES:
        raise SpecError.one("", f"refused: {size} bytes is larger than {defaults.MAX_SWEEP_FILE_BYTES}", source)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SpecError.one("", "not UTF-8 text", source) from None
    suffix = path.suffix.lower()
    fmt = {".toml": "toml", ".json": "json"}.get(suffix, "yaml")
    return parse_sweep_text(text, fmt, source)
