"""``farm worker``'s wait for Redis at start, in-process: one line per try, waits that double up to a cap, and
the store once Redis answers. (The same path over a real cut link is in test_partitions.py.)"""

from __future__ import annotations

import logging

import pytest

from farm.errors import FarmUnavailable
from farm.settings import FarmSettings
from farm.store import Store
from workers import worker


def test_waits_double_to_a_cap_then_returns_the_store(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    down = FarmUnavailable("cannot reach Redis at redis://:***@lab:6379/0: connection refused")
    answers: list[Store | FarmUnavailable] = [down] * 6 + [Store.__new__(Store)]
    calls: list[int] = []

    def from_settings(settings: FarmSettings) -> Store:
        calls.append(1)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(Store, "from_settings", staticmethod(from_settings))
    waits: list[float] = []
    settings = FarmSettings(broker_url="redis://:secret@lab:6379/0")
    with caplog.at_level(logging.INFO, logger="farm.worker"):
        store = worker.connect_with_backoff(settings, first_s=1.0, cap_s=10.0, sleep=waits.append)
    assert isinstance(store, Store) and len(calls) == 7
    nominal = [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert all(0.8 * n <= w <= 1.2 * n for w, n in zip(waits, nominal, strict=True)), waits
    tries = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(tries) == 6 and all("cannot reach Redis" in t and "trying again in" in t for t in tries)
    assert "secret" not in caplog.text and "after 6 failed tries" in caplog.text
