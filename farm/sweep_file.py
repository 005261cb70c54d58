"""Reading sweep files (YAML, TOML, JSON) defensively.

Only a regular file is read, and never more than the size cap plus one byte; duplicate keys, integers too
long to be counts, non-finite numbers, alias bombs and deep nesting are refused, each located by line and
column or by its key path, before anything is validated.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import stat
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from farm import defaults
from farm.errors import Problem, SpecError, format_loc

MAX_INT_DIGITS = 30
"""Longest integer a sweep file may spell: every count and seed of a job has at most 10 digits, and Python's
own conversion limit (4300 digits) would otherwise raise from deep inside the parsers."""

MAX_PROBLEMS = 20
"""Problems listed for one file; the rest are noise once the first twenty are known."""

_FILE_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class _BigInt:
    """What the JSON reader keeps in place of an integer too long to convert, so the walk can locate it."""

    def __init__(self, digits: int) -> None:
        self.digits = digits


class _DuplicateKeys(dict[str, Any]):
    """A JSON object in which some keys appeared more than once (the walk reports them with their path)."""

    duplicates: list[str]


def _walk(value: Any, budget: int) -> list[Problem]:
    """Visit every value (an aliased subtree once per use) and list what no sweep may hold, by key path.

    An anchor 'bomb' is cheap in memory because PyYAML shares aliased objects, but it explodes the moment
    anything walks it: the walk stops as soon as the budget is spent or the nesting is too deep.
    """
    problems: list[Problem] = []
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, ())]
    seen = 0
    while stack and len(problems) < MAX_PROBLEMS:
        node, path = stack.pop()
        seen += 1
        if seen > budget:
            return [Problem("", f"refused: more than {budget} values (YAML aliases count each time they are used)")]
        if len(path) > 32:
            return [Problem(format_loc(path[:32]), "refused: nested more than 32 levels deep")]
        if isinstance(node, dict):
            for key in getattr(node, "duplicates", ()):
                problems.append(Problem(format_loc((*path, str(key))), "duplicate key"))
            stack.extend((k, path) for k in node)
            stack.extend(reversed([(v, (*path, str(k))) for k, v in node.items()]))  # popped in file order
        elif isinstance(node, list):
            stack.extend(reversed([(v, (*path, i)) for i, v in enumerate(node)]))
        elif isinstance(node, str) and len(node) > 10_000:
            problems.append(Problem(format_loc(path), f"refused: a string of {len(node)} characters"))
        elif isinstance(node, _BigInt) or (isinstance(node, int) and abs(node) >= 10**MAX_INT_DIGITS):
            digits = node.digits if isinstance(node, _BigInt) else len(str(abs(node)))
            problems.append(
                Problem(format_loc(path), f"refused: an integer of {digits} digits (at most {MAX_INT_DIGITS})")
            )
        elif isinstance(node, float) and not math.isfinite(node):
            why = "NaN is not a number" if math.isnan(node) else "a number this large reads as infinity"
            problems.append(Problem(format_loc(path), f"refused: {why}"))
    return problems


def parse_sweep_text(text: str, fmt: str, source: str) -> dict[str, Any]:
    """Parse ``text`` as ``fmt`` ('yaml', 'toml' or 'json') into a plain dict, or raise SpecError."""
    try:
        if fmt == "toml":
            data = _parse_toml(text, source)
        elif fmt == "json":
            data = _parse_json(text, source)
        else:
            data = _parse_yaml(text, source)
    except RecursionError:
        raise SpecError.one("", "nested too deeply", source) from None
    if not isinstance(data, dict):
        raise SpecError.one("", f"a sweep file must hold a mapping at the top, not {type(data).__name__}", source)
    problems = _walk(data, defaults.MAX_SWEEP_NODES)
    if problems:
        raise SpecError(problems, source)
    return data


def _parse_toml(text: str, source: str) -> Any:
    """tomllib refuses duplicate keys itself; it has no integer hook, so an integer past Python's conversion
    limit surfaces as a bare ValueError, located here by the first run of digits that long."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError.one("", f"malformed TOML: {e}", source) from None
    except ValueError as e:
        match = re.search(r"[0-9A-Fa-f_]{" + str(sys.get_int_max_str_digits()) + ",}", text)
        if match is None:
            raise SpecError.one("", f"malformed TOML: {str(e)[:200]}", source) from None
        raise SpecError.one(
            _line_col(text, match.start()),
            f"refused: an integer too long to read (at most {MAX_INT_DIGITS} digits)",
            source,
        ) from None


def _parse_json(text: str, source: str) -> Any:
    """Integers are converted only when short (a long one becomes a marker the walk locates), NaN and
    Infinity become floats the walk refuses, and objects remember their repeated keys."""

    def integer(s: str) -> int | _BigInt:
        digits = len(s.lstrip("-"))
        return int(s) if digits <= MAX_INT_DIGITS else _BigInt(digits)

    def obj(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(pairs)
        if len(out) == len(pairs):
            return out
        seen: set[str] = set()
        repeated: list[str] = []  # each key again at each of its second and later appearances
        for k, _ in pairs:
            if k in seen:
                repeated.append(k)
            seen.add(k)
        dup = _DuplicateKeys(out)
        dup.duplicates = list(dict.fromkeys(repeated))
        return dup

    try:
        return json.loads(text, parse_int=integer, object_pairs_hook=obj)
    except json.JSONDecodeError as e:
        raise SpecError.one(f"line {e.lineno}, column {e.colno}", f"malformed JSON: {e.msg}", source) from None


def _line_col(text: str, position: int) -> str:
    line = text.count("\n", 0, position) + 1
    return f"line {line}, column {position - (text.rfind(chr(10), 0, position) + 1) + 1}"


@functools.cache
def _yaml_loader() -> type:
    """PyYAML's safe loader (no Python objects ever built), refusing duplicate keys and long integers where
    they stand. Built on first use: PyYAML is imported only for YAML files."""
    import yaml
    from yaml.constructor import ConstructorError

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            if isinstance(node, yaml.MappingNode):
                first: dict[Any, Any] = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may be overridden: not a duplicate
                        continue
                    key = self.construct_object(key_node, deep=False)
                    try:
                        earlier = first.setdefault(key, key_node.start_mark)
                    except TypeError:  # an unhashable key: the safe loader's own error says so
                        continue
                    if earlier is not key_node.start_mark:
                        raise ConstructorError(
                            None,
                            None,
                            f"refused: duplicate key {key!r} (first at line {earlier.line + 1})",
                            key_node.start_mark,
                        )
            return super().construct_mapping(node, deep=deep)

        def construct_yaml_int(self, node: Any) -> int:
            digits = len(str(self.construct_scalar(node)).lstrip("+-").replace("_", ""))
            if digits > MAX_INT_DIGITS:
                raise ConstructorError(
                    None, None, f"refused: an integer of {digits} digits (at most {MAX_INT_DIGITS})", node.start_mark
                )
            return super().construct_yaml_int(node)

    Loader.add_constructor("tag:yaml.org,2002:int", Loader.construct_yaml_int)
    return Loader


def _parse_yaml(text: str, source: str) -> Any:
    import yaml

    try:
        return yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - a subclass of the safe loader
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = str(e.problem or e.context)
        if not problem.startswith("refused: "):
            problem = f"malformed YAML: {problem}"
        raise SpecError.one(where, problem, source) from None
    except yaml.reader.ReaderError as e:  # a control character: PyYAML's message spans lines
        char = chr(e.character) if isinstance(e.character, int) else e.character
        raise SpecError.one(
            _line_col(text, e.position), f"malformed YAML: character {char!r} is not allowed", source
        ) from None
    except yaml.YAMLError as e:
        raise SpecError.one("", f"malformed YAML: {e}", source) from None


def _read_capped(path: Path, source: str) -> bytes:
    """The bytes of a regular file, at most the cap plus one of them (which proves the file too large).

    The kind of file is checked before opening, so a FIFO, a device or a socket is refused instead of read
    (``/dev/zero`` never ends, a FIFO blocks its opener); it is opened non-blocking and checked again, so a
    file swapped for a FIFO in between cannot block either; and the reading stops at the cap whatever size
    the file claims (procfs files claim 0, a file may grow while read).
    """
    cap = defaults.MAX_SWEEP_FILE_BYTES
    try:
        mode = os.stat(path).st_mode
        _check_regular(mode, source)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        try:
            _check_regular(os.fstat(fd).st_mode, source)
            data = _read_at_most(lambda n: os.read(fd, n), cap + 1)
        finally:
            os.close(fd)
    except OSError as e:
        raise SpecError.one("", f"cannot read: {e.strerror or e}", source) from None
    if len(data) > cap:
        raise SpecError.one("", f"refused: larger than {cap} bytes", source)
    return data


def _read_at_most(read: Callable[[int], bytes], limit: int) -> bytes:
    """Up to ``limit`` bytes from ``read`` (which returns b"" at the end), in 64 KiB reads."""
    chunks: list[bytes] = []
    left = limit
    while left > 0:
        chunk = read(min(left, 1 << 16))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _check_regular(mode: int, source: str) -> None:
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a plain file")
        raise SpecError.one("", f"refused: {kind}, not a regular file", source)


def _read_stdin_capped(source: str) -> bytes:
    """At most the cap plus one byte of standard input (``farm submit -``): a stream has no size to check first,
    so the reading itself is bounded, whatever is piped in."""
    cap = defaults.MAX_SWEEP_FILE_BYTES
    stream = sys.stdin.buffer
    try:
        data = _read_at_most(getattr(stream, "read1", stream.read), cap + 1)
    except OSError as e:
        raise SpecError.one("", f"cannot read: {e.strerror or e}", source) from None
    if len(data) > cap:
        raise SpecError.one("", f"refused: more than {cap} bytes", source)
    return data


def read_sweep_file(path: Path) -> dict[str, Any]:
    """The parsed sweep file at ``path``; ``-`` reads standard input (YAML, which also reads JSON)."""
    source = str(path)
    if source == "-":
        source = "<stdin>"
        try:
            return parse_sweep_text(_read_stdin_capped(source).decode("utf-8"), "yaml", source)
        except UnicodeDecodeError:
            raise SpecError.one("", "not UTF-8 text", source) from None
    try:
        text = _read_capped(path, source).decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError.one("", "not UTF-8 text", source) from None
    suffix = path.suffix.lower()
    fmt = {".toml": "toml", ".json": "json"}.get(suffix, "yaml")
    return parse_sweep_text(text, fmt, source)
