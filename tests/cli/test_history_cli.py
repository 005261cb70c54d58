"""``farm history`` through typer's CliRunner against a real throwaway redis-server holding several finished
nightly sweeps (nothing trains): the table, the CSV, sweep selection, exit codes, and the HTML hand-off."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
import redis

from farm.reports.history import HISTORY_COLUMNS, NO_SOFTWARE_CHANGE
from farm.store import Store
from tests.helpers import store_finished_sweep, throwaway_redis, tight

NIGHTS = 8
HARDWARE = "cpu:x x2"


@pytest.fixture(scope="module")
def farm_store() -> Iterator[dict[str, Any]]:
    """Eight nightly sweeps of two cells; on the eighth night Keras went 3.15.1 → 3.16.0 and the JAX cell got
    12 % slower (the TensorFlow cell did not move). Beside them, an ad-hoc sweep on other hardware."""
    with throwaway_redis(appendonly=False) as server:
        store = Store(redis.Redis.from_url(server.url, decode_responses=True))
        ids = []
        for night in range(1, NIGHTS + 1):
            last = night == NIGHTS
            cells = {
                ("cpu", "jax"): tight(880.0 if last else 1000.0, 5, seed=night, cv=0.01),
                ("cpu", "tensorflow"): tight(700.0, 5, seed=100 + night, cv=0.01),
            }
            ids.append(
                store_finished_sweep(
                    store,
                    f"nightly-2026-11-{night:02d}",
                    cells,
                    keras="3.16.0" if last else "3.15.1",
                    day=night,
                    hardware=HARDWARE,
                )
            )
        adhoc = store_finished_sweep(
            store, "adhoc", {("cpu", "jax"): tight(3000.0, 5, seed=50)}, day=20, hardware="cpu:y x16"
        )
        yield {"url": server.url, "ids": ids, "adhoc": adhoc, "store": store}
        store.r.close()


def flat(text: str) -> str:
    return " ".join(text.split())


def test_table_marks_the_regression_and_names_the_upgrade(farm_store: dict[str, Any], invoke: Any) -> None:
    res = invoke("history", "nightly", "--broker", farm_store["url"])
    assert res.exit_code == 0, res.output
    out = res.output
    assert "▼" in out and "slower" in out
    assert "keras 3.15.1 → 3.16.0" in out
    assert "nightly-2026-11-08-0123456789" in out and "nightly-2026-11-01-0123456789" in out
    assert "baseline" in out
    assert "cpu:y x16" not in out  # the ad-hoc sweep was not selected
    assert "2 cell(s) over 8 sweep(s); 1 change(s) flagged: 1 slower, 0 faster" in flat(out)


def test_fail_on_regression_exits_3_only_when_the_newest_sweep_regressed(
    farm_store: dict[str, Any], invoke: Any
) -> None:
    url = farm_store["url"]
    res = invoke("history", "nightly", "--broker", url, "--fail-on-regression")
    assert res.exit_code == 3, res.output
    assert "1 cell(s) regressed in their newest sweep" in res.output
    # the first seven nights: nothing changed, nothing fails
    res = invoke("history", "nightly-2026-11-0[1-7]*", "--broker", url, "--fail-on-regression")
    assert res.exit_code == 0, res.output
    assert "0 change(s) flagged" in flat(res.output)
    # the TensorFlow cell alone did not regress
    res = invoke("history", "nightly", "--broker", url, "--workload", "fashion_mnist_mlp", "--fail-on-regression")
    assert res.exit_code == 3


def test_csv_holds_every_cell_and_sweep(farm_store: dict[str, Any], invoke: Any, tmp_path: Any) -> None:
    path = tmp_path / "history.csv"
    res = invoke("history", "nightly", "--broker", farm_store["url"], "--csv", str(path))
    assert res.exit_code == 0, res.output
    assert f"wrote 16 rows to {path}" in flat(res.output)
    df = pd.read_csv(path)
    assert list(df.columns) == HISTORY_COLUMNS
    assert len(df) == 2 * NIGHTS
    assert set(df["hardware_key"]) == {HARDWARE}
    jax = df[df["backend"] == "jax"]
    assert list(jax["sweep_id"]) == farm_store["ids"]  # time order
    assert list(jax["change"]) == [False] * (NIGHTS - 1) + [True]
    last = jax.iloc[-1]
    assert last["change_pct"] == pytest.approx(-12, abs=2)
    assert last["p_value"] < 0.05
    assert last["changed"] == "keras 3.15.1 → 3.16.0"
    assert last["when"] == "2026-11-08T03:02:00+00:00"
    assert (jax["n"] == 5).all() and (jax["unit"] == "samples").all()
    tf = df[df["backend"] == "tensorflow"]
    assert not tf["change"].any()
    assert tf.iloc[-1]["changed"] == "keras 3.15.1 → 3.16.0"  # named, not flagged: its speed did not move
    assert np.all(tf["ci_low"] <= tf["median"])


def test_json_is_the_history_for_scripts(farm_store: dict[str, Any], invoke: Any, tmp_path: Any) -> None:
    """``--json``: only JSON on standard output (a script parses it whole), the same rows as the CSV, and
    ``--fail-on-regression`` still exits 3 without a word outside the JSON."""
    path = tmp_path / "history.csv"
    res = invoke("history", "nightly", "--broker", farm_store["url"], "--json", "--csv", str(path))
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["sweeps"] == farm_store["ids"] and doc["threshold"] == 0.05 and doc["window"] == 5
    assert doc["changes_flagged"] == 1 and doc["regressions"] == 1
    rows = pd.DataFrame(doc["rows"])
    assert list(rows.columns) == HISTORY_COLUMNS
    assert len(rows) == len(pd.read_csv(path)) == 2 * NIGHTS
    flagged = rows[rows["change"]]
    assert list(flagged["backend"]) == ["jax"] and list(flagged["changed"]) == ["keras 3.15.1 → 3.16.0"]
    assert flagged.iloc[0]["sweep_id"] == farm_store["ids"][-1]
    res = invoke("history", "nightly", "--broker", farm_store["url"], "--json", "--fail-on-regression")
    assert res.exit_code == 3
    assert json.loads(res.stdout)["regressions"] == 1
    # one sweep: each cell's baseline, nothing flagged
    res = invoke("history", "nightly-2026-11-01", "--broker", farm_store["url"], "--json")
    assert res.exit_code == 0, res.output
    one = json.loads(res.stdout)
    assert len(one["rows"]) == 2 and one["changes_flagged"] == 0 and one["regressions"] == 0


def test_every_sweep_by_default_and_other_hardware_apart(farm_store: dict[str, Any], invoke: Any) -> None:
    res = invoke("history", "--broker", farm_store["url"])
    assert res.exit_code == 0, res.output
    assert "cpu:y x16" in res.output and farm_store["adhoc"] in res.output
    assert "3 cell(s) over 9 sweep(s)" in flat(res.output)  # the ad-hoc sweep is its own cell, not a speedup
    by_id = invoke("history", farm_store["ids"][0], farm_store["adhoc"], "--broker", farm_store["url"])
    assert by_id.exit_code == 0 and "3 cell(s) over 2 sweep(s)" in flat(by_id.output)


def test_usage_errors_are_one_line_and_exit_2(farm_store: dict[str, Any], invoke: Any, tmp_path: Any) -> None:
    url = farm_store["url"]
    res = invoke("history", "nope", "--broker", url)
    assert res.exit_code == 2 and "no sweep matches 'nope'" in res.output
    res = invoke("history", "nightly", "--broker", url, "--workload", "cifar10_mlp")
    assert res.exit_code == 2 and "no job of workload 'cifar10_mlp'" in res.output
    res = invoke("history", "--broker", url, "--csv", str(tmp_path / "h.json"))
    assert res.exit_code == 2 and "--csv" in res.output
    res = invoke("history", "--broker", url, "--csv", str(tmp_path / "missing" / "h.csv"))
    assert res.exit_code == 1 and "does not exist" in res.output
    assert "Traceback" not in res.output


def test_unreachable_broker_is_one_line_exit_1(invoke: Any) -> None:
    res = invoke("history")  # the isolated default broker refuses at once
    assert res.exit_code == 1, res.output
    assert "cannot reach Redis" in res.output
    assert len([line for line in res.output.splitlines() if line.strip()]) == 1


def test_an_empty_store_and_the_helper_store(redis_url: str, invoke: Any) -> None:
    """No sweep yet: a usage error. Sweeps stored by the shared helper (no hardware key, finished now) line up
    on their device name; a 20 % drop with no software change says so."""
    res = invoke("history", "--broker", redis_url)
    assert res.exit_code == 2 and "no sweep has been submitted" in res.output
    store = Store(redis.Redis.from_url(redis_url, decode_responses=True))
    for k in range(4):
        store_finished_sweep(store, f"helper-{k}", {("cpu", "jax"): tight(1000.0, 5, seed=k)})
    store_finished_sweep(store, "helper-4", {("cpu", "jax"): tight(800.0, 5, seed=4)})
    res = invoke("history", "helper-*", "--broker", redis_url, "--fail-on-regression")
    assert res.exit_code == 3, res.output
    assert NO_SOFTWARE_CHANGE in res.output and "cpu-x" in res.output
    store.r.close()


def test_html_goes_to_the_html_report(farm_store: dict[str, Any], invoke: Any, tmp_path: Any) -> None:
    path = tmp_path / "history.html"
    res = invoke("history", "nightly", "--broker", farm_store["url"], "--html", str(path))
    assert res.exit_code == 0, res.output
    assert path.stat().st_size > 0
    assert f"wrote {path}" in flat(res.output)


def test_help_states_the_rule(invoke: Any) -> None:
    text = flat(invoke("history", "--help").output)
    for needle in ("Mann-Whitney", "--threshold", "DRIFT", "segment restarts", "Exit status", "3 with"):
        assert needle in text, needle


def test_off_a_terminal_the_table_is_never_cut(farm_store: dict[str, Any], monkeypatch: Any) -> None:
    """Piped to a file or a CI log (80 columns, no terminal), every table is printed as plain columns as wide as
    its content: whole sweep ids and fingerprints, no '…', no box drawing, each cell's title on one line."""
    import io

    import cli.history
    from cli.common import FarmConsole
    from cli.report_view import frames_for
    from farm.reports.history import history_frame

    out = io.StringIO()
    monkeypatch.setattr(cli.history, "console", FarmConsole(file=out, width=80))
    store = farm_store["store"]
    history = history_frame([(sid, frames_for(store, sid)) for sid in farm_store["ids"]])
    tables = cli.history.history_tables(history)
    for table in tables:
        cli.history.print_whole(table)
    text = out.getvalue()
    assert "…" not in text and not set("│┃━─┏┓┗┛┡┩╇┳┻┼└┘┌┐├┤╭╮╰╯") & set(text), text
    assert "nightly-2026-11-08-0123456789" in text and "keras 3.15.1 → 3.16.0" in text
    assert "▼ -1" in text and "slower" in text
    lines = text.splitlines()
    for table in tables:
        assert str(table.title) in lines  # never wrapped mid-word


def test_the_count_of_sweeps_is_the_count_shown(farm_store: dict[str, Any], invoke: Any) -> None:
    """A selected sweep with nothing to line up (cancelled before any repeat succeeded) is not counted as shown:
    the closing line names it instead."""
    from farm.sweep import load_sweep_data

    store = farm_store["store"]
    sweep = load_sweep_data({"name": "cancelled", "jobs": [{"workload": "fashion_mnist_mlp", "data": "synthetic"}]})
    store.save_sweep(sweep.sweep_id, {"sweep_id": sweep.sweep_id, "name": "cancelled"}, sweep.envelopes())
    try:
        result = invoke("history", *farm_store["ids"], sweep.sweep_id, "--broker", farm_store["url"])
    finally:
        store.delete_sweep(sweep.sweep_id)  # the module's other tests see the store as it was
    assert result.exit_code == 0, result.output
    assert f"over {len(farm_store['ids'])} sweep(s)" in result.output
    assert f"not shown: 1 selected sweep(s) with no succeeded, valid repeat ({sweep.sweep_id})" in flat(result.output)
