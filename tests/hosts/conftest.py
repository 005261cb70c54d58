"""Fixtures of the multi-host suite: a lab of network namespaces per test module (tests/hosts/lab.py).

Everything here is marked ``hosts`` and ``slow`` (``pytest -m hosts`` runs just these). The whole package is
skipped, with the reason, where no lab can be built: not root, no ``ip netns``, a tool missing. Before the
first lab of a session, what earlier runs left behind (killed before their teardown) is swept away.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hosts.lab import HostSpec, Lab, sweep_leftovers, unsupported

_checked: dict[str, str | None] = {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    ours = [item for item in items if "tests/hosts/" in str(item.fspath)]
    if not ours:
        return
    if "reason" not in _checked:
        _checked["reason"] = unsupported()
    reason = _checked["reason"]
    for item in ours:
        item.add_marker(pytest.mark.hosts)
        item.add_marker(pytest.mark.slow)
        if reason:
            item.add_marker(pytest.mark.skip(reason=f"multi-host lab unavailable: {reason}"))


@pytest.fixture(scope="session")
def lab_leftovers_swept() -> list[str]:
    """The namespaces of dead earlier labs, deleted once per session before any lab is built."""
    return sweep_leftovers()


@pytest.fixture(scope="module")
def lab(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, lab_leftovers_swept: list[str]
) -> Iterator[Lab]:
    """One lab for the module: a Redis host, a submitter host and the worker hosts the module names in
    ``LAB_WORKERS`` (a list of :class:`HostSpec`). It is torn down after the module, also when a test failed."""
    workers: list[HostSpec] = getattr(request.module, "LAB_WORKERS", [HostSpec("lab-w1"), HostSpec("lab-w2")])
    home: Path = tmp_path_factory.mktemp("lab")
    with Lab(home, workers) as built:
        yield built
