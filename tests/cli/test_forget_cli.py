"""``farm forget`` as a user meets it, on a real redis-server: it asks before deleting, refuses without a
terminal unless --yes, says in one line what it deleted or why it did not, and the sweep is gone afterwards."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from farm.store import Store
from tests.helpers import store_finished_sweep


@pytest.fixture
def store(redis_url: str) -> Store:
    return Store(redis.Redis.from_url(redis_url, decode_responses=True))


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def test_without_a_terminal_it_needs_yes_and_deletes_nothing(store: Store, redis_url: str, invoke: Any) -> None:
    sid = store_finished_sweep(store, "keep-me", {("cpu", "jax"): [100.0, 101.0]})
    keys = sorted(store.r.keys("*"))

    res = invoke("forget", sid, "--broker", redis_url)

    assert res.exit_code == 2
    assert "--yes" in one_line(res.output) and sid in res.output
    assert sorted(store.r.keys("*")) == keys


def test_a_no_at_the_prompt_deletes_nothing_and_a_yes_deletes(
    store: Store, redis_url: str, isolated_env: Any, monkeypatch: Any
) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    sid = store_finished_sweep(store, "asked", {("cpu", "jax"): [100.0]})
    keys = sorted(store.r.keys("*"))
    monkeypatch.setattr("cli.lifecycle.interactive", lambda: True)

    res = CliRunner().invoke(app, ["forget", sid, "--broker", redis_url], input="n\n")
    assert res.exit_code == 2, res.output
    assert f"Delete sweep {sid}, its 1 job(s) and their results, for good?" in res.output
    assert "left as it is" in res.output
    assert sorted(store.r.keys("*")) == keys

    res = CliRunner().invoke(app, ["forget", sid, "--broker", redis_url], input="y\n")
    assert res.exit_code == 0, res.output
    assert store.sweep_ids() == []


def test_with_yes_the_sweep_is_gone(store: Store, redis_url: str, invoke: Any) -> None:
    gone = store_finished_sweep(store, "old", {("cpu", "jax"): [100.0, 101.0, 99.0]})
    kept = store_finished_sweep(store, "new", {("cpu", "jax"): [100.0]})

    res = invoke("forget", "old", "--broker", redis_url, "--yes")

    assert res.exit_code == 0, res.output
    assert one_line(res.output).startswith(f"forgot {gone}: 3 job(s) deleted")
    assert store.sweep_ids() == [kept]
    status = invoke("status", gone, "--broker", redis_url)
    assert status.exit_code == 2 and "no sweep matches" in status.output
    assert invoke("report", kept, "--broker", redis_url).exit_code == 0


def test_json_says_what_was_deleted(store: Store, redis_url: str, invoke: Any) -> None:
    sid = store_finished_sweep(store, "js", {("cpu", "jax"): [100.0, 101.0]})
    res = invoke("forget", sid, "--broker", redis_url, "-y", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output) == {"sweep_id": sid, "deleted": 2, "kept": 0, "withdrawn_messages": 0}


def test_a_sweep_still_running_is_refused_in_one_line(store: Store, redis_url: str, invoke: Any) -> None:
    sid = store_finished_sweep(store, "busy", {("cpu", "jax"): [100.0, 101.0]})
    [first, _] = store.sweep_job_ids(sid)
    store.r.delete(store.k("result", first))  # that job is still running
    keys = sorted(store.r.keys("*"))

    res = invoke("forget", sid, "--broker", redis_url, "--yes")

    assert res.exit_code == 2
    line = one_line(res.output)
    assert "1 job(s) without a result" in line and f"farm cancel {sid}" in line
    assert sorted(store.r.keys("*")) == keys


def test_an_unknown_sweep_is_one_line_and_exit_2(redis_url: str, invoke: Any) -> None:
    res = invoke("forget", "nothing-like-it", "--broker", redis_url, "--yes")
    assert res.exit_code == 2
    assert "no sweep matches 'nothing-like-it'" in one_line(res.output)


@pytest.mark.parametrize("blank", ["", "  "])
def test_a_blank_sweep_argument_forgets_nothing(store: Store, redis_url: str, invoke: Any, blank: str) -> None:
    """Elsewhere an empty prefix would pick the latest sweep; here it is refused."""
    store_finished_sweep(store, "only", {("cpu", "jax"): [100.0]})
    keys = sorted(store.r.keys("*"))
    res = invoke("forget", blank, "--broker", redis_url, "--yes")
    assert res.exit_code == 2 and "needs the id" in one_line(res.output)
    assert sorted(store.r.keys("*")) == keys


def test_a_name_that_several_sweeps_have_is_refused_naming_them(store: Store, redis_url: str, invoke: Any) -> None:
    """Other commands take a name's latest sweep; a deletion does not guess."""
    from farm.job import JobEnvelope, JobSpec

    first = store_finished_sweep(store, "twice", {("cpu", "jax"): [100.0]})
    job = JobSpec(sweep="twice", workload="fashion_mnist_mlp", epochs=2)
    store.save_sweep("twice-fedcba98", {"name": "twice"}, [JobEnvelope.for_job(job, "twice-fedcba98")])
    keys = sorted(store.r.keys("*"))

    res = invoke("forget", "twice", "--broker", redis_url, "--yes")

    assert res.exit_code == 2
    line = one_line(res.output)
    assert "matches 2 sweeps" in line and first in line and "twice-fedcba98" in line
    assert sorted(store.r.keys("*")) == keys
    assert invoke("forget", first, "--broker", redis_url, "--yes").exit_code == 0
