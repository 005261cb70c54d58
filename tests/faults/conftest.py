"""Fault tests: real redis-server, real workers as subprocesses, real kills. Everything here is marked
``faults`` (and ``slow``): ``pytest -m faults`` runs just these. What they share besides fixtures is in
tests/faults/helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.helpers import Farm


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/faults/" in str(item.fspath):
            item.add_marker(pytest.mark.faults)
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def farm(redis_url: str, tmp_path: Path) -> Farm:
    return Farm(redis_url, tmp_path)
