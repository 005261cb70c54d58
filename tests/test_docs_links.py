"""Every relative link in README.md and docs/*.md points at a file that exists, and every ``#anchor`` at a heading.

The README is short and the rest lives in ``docs/``: text moves between pages, and a link that moved with it (or
was left behind) breaks silently. Anchors follow GitHub's rule for heading ids.
"""

import re
from pathlib import Path

import pytest

from tests.helpers import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks: a ``[x](y)`` in code is not a link."""
    lines, in_code = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            in_code = not in_code
        elif not in_code:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's id for a heading: lower case, punctuation dropped (but ``-`` and ``_``), spaces to hyphens."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading id of a page, with GitHub's ``-1``, ``-2`` suffixes for repeated ones."""
    seen: dict[str, int] = {}
    ids = set()
    for line in prose_lines(page.read_text()):
        if match := re.match(r"#{1,6}\s+(.*)", line):
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            ids.add(base if count == 0 else f"{base}-{count}")
    return ids


def links(page: Path) -> list[str]:
    """The relative link targets of a page (web addresses and mail left out)."""
    targets = [m.group(1) for line in prose_lines(page.read_text()) for m in LINK.finditer(line)]
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def test_docs_exist() -> None:
    assert {p.name for p in PAGES} >= {
        "README.md",
        "user-guide.md",
        "operations.md",
        "measurement.md",
        "architecture.md",
    }


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_link_resolves(page: Path) -> None:
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no file {file.relative_to(REPO) if file.is_relative_to(REPO) else file}")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {file.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_slug_follows_github() -> None:
    assert slug("What you see: terminal, report.md, HTML") == "what-you-see-terminal-reportmd-html"
    assert slug("Your own workloads: plugins") == "your-own-workloads-plugins"
    assert slug("The life of a job, module by module") == "the-life-of-a-job-module-by-module"
    assert slug("`farm/store/`: the record") == "farmstore-the-record"


TREE_PATH = re.compile(r"(?<![\w/.~-])((?:farm|workers|cli|tests|benchmarks|deploy|examples|scripts)/[\w./-]*[\w/])")

MODULE = re.compile(r"-m ((?:farm|workers|cli|benchmarks)(?:\.[a-z_][a-z0-9_]*)*)")  # NAME: a placeholder


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_named_path_exists(page: Path) -> None:
    """A module, script or file of the tree named in the docs (``workers/execute.py``, ``benchmarks/run_all.py``)
    exists: modules are split and renamed, and a page naming the old one misleads whoever follows it."""
    text = page.read_text()
    named = set(TREE_PATH.findall(text))
    modules = {m.replace(".", "/") for m in MODULE.findall(text)}  # ``python -m benchmarks.run_all``
    named |= {m if (REPO / m).is_dir() else f"{m}.py" for m in modules}
    missing = sorted(p for p in named if not (REPO / p).exists())
    assert not missing, f"{page.name} names paths that are not in the tree: {missing}"


def floor_plan_names(text: str) -> set[str]:
    """Every ``name.py`` (or ``package/``) the architecture page names, whatever folder it is written under."""
    return {m.rstrip("/").rsplit("/", 1)[-1] for m in re.findall(r"[\w/]*\w+(?:\.py|/)(?=[`\s,)])", text)}


@pytest.mark.parametrize("package", ["farm", "farm/store", "farm/reports", "workers", "cli"])
def test_floor_plan_names_every_module(package: str) -> None:
    """docs/architecture.md's floor plan names every module of the packages: a module added (or split out) without
    a line there is a room missing from the plan."""
    named = floor_plan_names((REPO / "docs" / "architecture.md").read_text())
    modules = {p.name for p in (REPO / package).glob("*.py") if p.name != "__init__.py"}
    modules |= {p.name for p in (REPO / package).iterdir() if (p / "__init__.py").exists()}
    missing = sorted(modules - named)
    assert not missing, f"docs/architecture.md does not name {package}/: {missing}"
