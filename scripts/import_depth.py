"""Print the longest chain of imports among one package's modules, and how many modules each folder holds:
``python scripts/import_depth.py [PACKAGE] [--top-level]``.

Why: issue #25 measured ``farm/`` as "11 import levels deep"; a renovation that moves modules into wings should
be able to say whether it made the floor shallower, with the same ruler before and after. The depth is the
number of modules on the longest chain ``a imports b imports c …`` (a module importing nothing of the package
has depth 1). By default every import counts, function-level ones too (the static dependency, as in
``scripts/import_cycles.py``, whose graph this reuses); ``--top-level`` counts only the imports a module runs
when it is imported (module-level statements, ``if TYPE_CHECKING:`` blocks left out). Edges from a module to
its own package are dropped, as there."""

from __future__ import annotations

import ast
import sys
from collections import Counter
from functools import cache
from pathlib import Path

from import_cycles import ROOT, imported_by, imports, modules


def top_level_imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of ``known`` that ``path`` imports when it is itself imported."""
    return imported_by(_top_level_statements(ast.parse(path.read_text()).body), known)


def _top_level_statements(body: list[ast.stmt]) -> list[ast.stmt]:
    """Statements run at import: the body itself, and the branches of try/if/with (not ``if TYPE_CHECKING:``)."""
    out: list[ast.stmt] = []
    for node in body:
        out.append(node)
        if isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
            out += _top_level_statements(node.body) + _top_level_statements(node.orelse)
        elif isinstance(node, ast.Try):
            out += _top_level_statements(node.body + node.orelse + node.finalbody)
            for handler in node.handlers:
                out += _top_level_statements(handler.body)
        elif isinstance(node, ast.With):
            out += _top_level_statements(node.body)
    return out


def longest_chain(graph: dict[str, set[str]]) -> list[str]:
    """The longest path of the (acyclic) graph, as the list of its modules; a cycle is cut where it closes."""
    sys.setrecursionlimit(10_000)
    visiting: set[str] = set()

    @cache
    def chain(v: str) -> tuple[str, ...]:
        visiting.add(v)
        best: tuple[str, ...] = ()
        for w in sorted(graph[v]):
            if w not in visiting:
                best = max(best, chain(w), key=len)
        visiting.discard(v)
        return (v, *best)

    return list(max((chain(v) for v in sorted(graph)), key=len, default=()))


def main(argv: list[str]) -> int:
    package = next((a for a in argv if not a.startswith("-")), "farm")
    read = top_level_imports if "--top-level" in argv else imports
    known = {m: p for m, p in modules().items() if m == package or m.startswith(package + ".")}
    graph = {m: {d for d in read(p, known) if d != m and not m.startswith(d + ".")} for m, p in known.items()}
    path = longest_chain(graph)
    folders = Counter(str(p.parent.relative_to(ROOT)) for p in known.values())
    for folder, count in sorted(folders.items()):
        print(f"{folder}/: {count} modules")
    print(f"depth {len(path)}: " + " -> ".join(path))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
