"""Invalid repeats (farm.validity: contended, throttled, a clock that changed, too short to time) in the report,
ratios, compare and history: left out by default, kept with ``include_invalid`` (``--include-invalid``, or its
older name ``--include-contended``), counted per cell (``n_invalid``) with why (``invalid_kinds``); and how many
valid repeats a side ``farm compare`` says an undecided cell would need.

Rows come from :class:`farm.result.JobResult` through :func:`farm.rows.result_row`, as the store writes them;
contended repeats alone are tests/farm/test_report_contended.py.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from farm.precision import MIN_COMPARABLE
from farm.reports.aggregate import REPORT_COLUMNS, aggregate, results_frame
from farm.reports.compare import MAX_NEEDED, compare, least_repeats, repeats_needed
from farm.reports.frames import invalid_kinds, invalid_mask, invalid_total, split_reasons
from farm.reports.history import history_frame
from farm.reports.markdown import summary_frame
from farm.reports.ratios import ratios
from farm.reports.tables import write_frame
from farm.result import JobResult
from farm.rows import result_row
from tests.farm.test_report_contended import job_result
from tests.helpers import only_row, save_finished_sweep, throwaway_redis, tight

N_BOOT = 300
SHORT = "steady window too short to time (0.50 s, under 1 s and 10 steps, under 20): run 5 epochs"
CLOCK = "the CPU clock changed by 30% within the steady window (more than 10%)"


def judged(sps: float, *, repeat: int, reasons: list[str] | None = None, **kw) -> JobResult:
    """A succeeded repeat the worker judged: valid without ``reasons``, else invalid for them."""
    result = job_result(sps, repeat=repeat, **kw)
    return result.model_copy(update={"valid": not reasons, "invalid_reasons": list(reasons or [])})


def cell_rows(clean: list[float], invalid: list[tuple[float, list[str]]] = (), **kw) -> list[dict]:
    """One cell: valid repeats at ``clean``, then invalid ones (value, reasons), numbered on."""
    out = [result_row(judged(v, repeat=i, **kw)) for i, v in enumerate(clean)]
    out += [result_row(judged(v, repeat=len(clean) + i, reasons=r, **kw)) for i, (v, r) in enumerate(invalid)]
    return out


# -- which rows, and why ----------------------------------------------------------------------------------------
def test_invalid_mask_reads_verdicts_and_falls_back_to_contended():
    df = pd.DataFrame(
        {
            "valid": pd.Series([False, "False", "false", "0", 0, True, "True", None, np.nan, None], dtype=object),
            "contended": [False, False, False, False, False, True, True, True, False, "true"],
        }
    )
    # a verdict wins over the contended flag; no verdict (None, NaN): the flag decides
    assert invalid_mask(df).tolist() == [True, True, True, True, True, False, False, True, False, True]
    assert invalid_mask(pd.DataFrame({"valid": [True, False]})).tolist() == [False, True]  # a bool column
    assert invalid_mask(df.drop(columns="valid")).tolist() == [False] * 5 + [True, True, True, False, True]
    assert invalid_mask(pd.DataFrame({"x": [1]})).tolist() == [False]


def test_reasons_split_at_the_top_level_and_are_counted_by_kind():
    assert split_reasons(f"{SHORT}; {CLOCK}") == [SHORT, CLOCK]
    df = pd.DataFrame(
        {
            "invalid_reason": [f"other processes used 60% of the job's 2 core(s); {SHORT}", None, None, None, CLOCK],
            "contended_reason": [None, "the hypervisor stole 30% of the job's cores", None, None, None],
            "contended": [True, True, True, False, False],
        }
    )
    kinds = invalid_kinds(df, np.array([True, True, True, True, True]))
    assert kinds == [("contended", "too short"), ("contended",), ("contended",), ("unstated",), ("clock changed",)]
    assert invalid_kinds(df, np.zeros(5, dtype=bool)) == [()] * 5


# -- the report -------------------------------------------------------------------------------------------------
def test_invalid_repeats_are_left_out_counted_and_explained():
    df = results_frame(
        cell_rows(
            [1000.0, 1010.0, 990.0],
            [(100.0, [SHORT]), (200.0, [SHORT, CLOCK]), (300.0, ["other processes used 60% of the job's 2 core(s)"])],
        )
    )
    rep = aggregate(df, n_boot=N_BOOT)
    assert list(rep.columns) == REPORT_COLUMNS
    assert REPORT_COLUMNS.index("n_invalid") == REPORT_COLUMNS.index("n_contended") + 1
    cell = rep.iloc[0]
    assert (cell["n"], cell["n_invalid"], cell["n_contended"]) == (3, 3, 0)  # the reasons alone: no contended flag
    assert cell["invalid_kinds"] == "1 contended, 1 clock changed, 2 too short"
    assert cell["steady_samples_per_s_median"] == 1000.0
    assert invalid_total(rep) == (3, "1 contended, 1 clock changed, 2 too short")
    assert summary_frame(rep)["flags"].tolist() == ["3 invalid (1 contended, 1 clock changed, 2 too short)"]

    kept = aggregate(df, n_boot=N_BOOT, include_invalid=True).iloc[0]
    assert (kept["n"], kept["n_invalid"]) == (6, 3) and kept["steady_samples_per_s_median"] == pytest.approx(645.0)

    clean = aggregate(results_frame(cell_rows([1000.0, 1000.0])), n_boot=N_BOOT).iloc[0]
    assert clean["n_invalid"] == 0 and clean["invalid_kinds"] == ""


def test_a_verdict_read_back_from_a_csv_file_still_counts(tmp_path):
    df = results_frame(cell_rows([1000.0, 1000.0, 1000.0], [(10.0, [SHORT])]))
    back = pd.read_csv(write_frame(df, tmp_path / "results.csv"))
    assert back["valid"].tolist() == [True, True, True, False]
    as_text = back.assign(valid=back["valid"].map({True: "True", False: "False"}).astype(object))
    for frame in (back, as_text):
        cell = aggregate(results_frame(frame.to_dict("records")), n_boot=N_BOOT).iloc[0]
        assert (cell["n"], cell["n_invalid"], cell["invalid_kinds"]) == (3, 1, "1 too short")
    rep = aggregate(df, n_boot=N_BOOT)
    again = pd.read_csv(write_frame(rep, tmp_path / "report.csv"))
    assert again["n_invalid"].tolist() == [1] and again["invalid_kinds"].tolist() == ["1 too short"]
    assert summary_frame(again)["flags"].tolist() == ["1 too short"]  # one kind: said once


def test_an_older_row_without_a_verdict_is_judged_by_its_contended_flag():
    rows = cell_rows([1000.0, 1000.0, 1000.0])
    old_busy = {
        **result_row(job_result(10.0, repeat=7, contended=True, cpu=0.6)),
        "valid": None,
        "invalid_reason": None,
    }
    old_quiet = {**result_row(job_result(1000.0, repeat=8)), "valid": None, "invalid_reason": None}
    cell = aggregate(results_frame([*rows, old_busy, old_quiet]), n_boot=N_BOOT).iloc[0]
    assert (cell["n"], cell["n_invalid"], cell["n_contended"], cell["invalid_kinds"]) == (4, 1, 1, "1 contended")
    dropped = results_frame([*rows, old_busy]).drop(columns=["valid", "invalid_reason"])
    assert aggregate(dropped, n_boot=N_BOOT).iloc[0]["n_invalid"] == 1


def test_ratios_and_history_leave_invalid_repeats_out():
    df = results_frame(
        [
            *cell_rows([1000.0, 1000.0, 1000.0], [(100.0, [SHORT])]),
            *cell_rows([1500.0, 1500.0, 1500.0], [(9000.0, [CLOCK]), (9000.0, [SHORT])], backend="jax"),
        ]
    )
    jax = only_row(ratios(df, "backend", "tensorflow", n_boot=N_BOOT), backend="jax")
    assert jax["ratio"] == pytest.approx(1.5) and (jax["n_invalid"], jax["n_invalid_baseline"]) == (2, 1)
    kept = only_row(ratios(df, "backend", "tensorflow", n_boot=N_BOOT, include_invalid=True), backend="jax")
    assert (kept["n"], kept["n_baseline"]) == (5, 4)
    history = history_frame([("s", df)], n_boot=N_BOOT)
    assert sorted(history["n"].tolist()) == [3, 3] and sorted(history["median"].tolist()) == [1000.0, 1500.0]


# -- compare ----------------------------------------------------------------------------------------------------
def test_compare_leaves_invalid_repeats_out_and_names_why():
    a = results_frame(cell_rows(tight(1000, 6, 1), [(500.0, [SHORT])], sweep="A"))
    b = results_frame(cell_rows(tight(1000, 6, 2), [(400.0, [CLOCK]), (400.0, [SHORT])], sweep="B"))
    r = compare(a, b, n_boot=N_BOOT).iloc[0]
    assert (r["n_a"], r["n_b"], r["n_invalid_a"], r["n_invalid_b"], r["n_contended_b"]) == (6, 6, 1, 2, 0)
    assert r["invalid_kinds_b"] == "1 clock changed, 1 too short"
    assert "invalid repeats left out: A 1 (1 too short), B 2 (1 clock changed, 1 too short)" in r["note"]
    kept = compare(a, b, n_boot=N_BOOT, include_invalid=True).iloc[0]
    assert (kept["n_a"], kept["n_b"]) == (7, 8) and "invalid repeats kept" in kept["note"]


def test_repeats_needed_arithmetic():
    assert least_repeats(0.05) == MIN_COMPARABLE == 4  # 3 v 3 never reaches p < 0.05
    assert least_repeats(0.01) == 5
    # 2 * ((1.96 + 0.8416) * 0.05 / 0.05)^2 = 15.7: 16 a side to tell a 5% change when repeats scatter by 5%
    assert repeats_needed(0.05, 0.05) == 16
    assert repeats_needed(0.10, 0.05) == 4  # 3.9, and never fewer than the test can use
    assert repeats_needed(0.5, 0.0) == 4  # no spread at all: the fewest the test can use
    assert repeats_needed(0.01, 0.1) is None  # 1,570 a side: more than MAX_NEEDED
    assert repeats_needed(0.0, 0.1) is None  # no change to tell
    assert MAX_NEEDED == 200


def test_compare_says_how_many_valid_repeats_a_side_would_decide():
    # too few: 3 v 3 can never reach p < 0.05
    small = compare(
        results_frame(cell_rows(tight(1000, 3, 1), sweep="A")), results_frame(cell_rows(tight(1300, 3, 2), sweep="B"))
    ).iloc[0]
    assert small["change"] == "inconclusive"
    assert "would need at least 4 valid repeats a side (3 v 3 now)" in small["note"]
    # a side left with one valid repeat: no spread to estimate from
    thin = compare(
        results_frame(cell_rows(tight(1000, 5, 1), sweep="A")),
        results_frame(cell_rows([1000.0], [(10.0, [SHORT])] * 4, sweep="B")),
        n_boot=N_BOOT,
    ).iloc[0]
    assert thin["change"] == "inconclusive" and "would need at least 4 valid repeats a side (5 v 1 now)" in thin["note"]
    # undecided: 5 v 5 of noisy repeats, B ~6% slower, p >= 0.05
    noisy_a = tight(1000, 5, 3, cv=0.08)
    undecided = compare(
        results_frame(cell_rows(noisy_a, sweep="A")),
        results_frame(cell_rows([v * 0.94 for v in tight(1000, 5, 4, cv=0.08)], sweep="B")),
        n_boot=N_BOOT,
    ).iloc[0]
    assert undecided["change"] == "no change" and undecided["p_value"] >= 0.05
    need = int(undecided["note"].split("would need about ")[1].split()[0])
    assert 5 < need <= MAX_NEEDED and "valid repeats a side to tell a change of" in undecided["note"]
    # decided: nothing to add
    clear = compare(
        results_frame(cell_rows(tight(1000, 6, 5), sweep="A")), results_frame(cell_rows(tight(1300, 6, 6), sweep="B"))
    ).iloc[0]
    assert clear["change"] == "faster" and "would need" not in clear["note"]
    # hopeless: a 0.2% difference (under the 5% threshold, so a 5% change is asked about) in 22% scatter
    wide = [1000.0, 1300.0, 700.0, 1100.0, 900.0]
    hopeless = compare(
        results_frame(cell_rows(wide, sweep="A")),
        results_frame(cell_rows([v + 2 for v in wide], sweep="B")),
        n_boot=N_BOOT,
    ).iloc[0]
    assert hopeless["change"] == "no change" and hopeless["p_value"] >= 0.05
    assert "would need more than 200 valid repeats a side to tell a change of 5%" in hopeless["note"]


# -- the commands -----------------------------------------------------------------------------------------------
def stored(store, name: str, results: list[JobResult]) -> str:
    """Record ``results`` as the sweep ``name``; its id."""
    from farm.job import JobEnvelope

    sweep_id = results[0].sweep_id
    save_finished_sweep(store, sweep_id, name, [JobEnvelope.for_job(r.job, sweep_id) for r in results], results)
    return sweep_id


@pytest.fixture(scope="module")
def invalid_store():
    """A throwaway redis-server with the sweeps "mixed" (4 valid repeats, 1 contended, 1 too short to time) and
    "few" (3 valid repeats of the same cell)."""
    import redis

    from farm.store import Store

    with throwaway_redis(appendonly=False) as server:
        store = Store(redis.Redis.from_url(server.url, decode_responses=True))
        results = [judged(v, repeat=i, sweep="mixed") for i, v in enumerate(tight(1000, 4, 1))]
        busy = job_result(300.0, repeat=4, sweep="mixed", cpu=0.5, contended=True)
        results.append(busy.model_copy(update={"valid": False, "invalid_reasons": busy.contended_reasons}))
        results.append(judged(200.0, repeat=5, sweep="mixed", reasons=[SHORT]))
        few = [judged(v, repeat=i, sweep="few") for i, v in enumerate(tight(1000, 3, 2))]
        yield {"url": server.url, "sweep": stored(store, "mixed", results), "few": stored(store, "few", few)}
        store.r.close()


def test_cli_report_leaves_invalid_repeats_out_and_either_flag_keeps_them(invalid_store, invoke, tmp_path):
    url, sid = invalid_store["url"], invalid_store["sweep"]
    res = invoke("report", sid, "--broker", url, "-o", str(tmp_path / "r.csv"))
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert (
        "2 invalid repeat(s) left out of the statistics (1 contended, 1 too short); --include-invalid keeps them; "
        f"`farm resume {sid} --contended` re-runs the contended ones"
    ) in text
    assert "2 left out (1 contended, 1 too short; cpu 50%)" in text
    back = pd.read_csv(tmp_path / "r.csv").iloc[0]
    assert (back["n"], back["n_invalid"], back["n_contended"]) == (4, 2, 1)
    assert invoke("report", sid, "--broker", url, "-o", str(tmp_path / "r.md")).exit_code == 0
    md = (tmp_path / "r.md").read_text()
    note = md.index(  # after the table, before the help, as farm run's report.md
        f"2 invalid repeat(s) left out of the statistics (1 contended, 1 too short); `farm report {sid} "
        "--include-invalid` keeps them"
    )
    assert md.index("| workload |") < note < md.index("## How to read this")
    assert "2 invalid (1 contended, 1 too short) |" in md
    for flag in ("--include-invalid", "--include-contended"):
        res = invoke("report", sid, "--broker", url, flag, "-o", str(tmp_path / "k.csv"))
        assert res.exit_code == 0, res.output
        assert "2 invalid repeat(s) kept in the statistics (--include-invalid; 1 contended, 1 too short)" in " ".join(
            res.output.split()
        )
        assert pd.read_csv(tmp_path / "k.csv").iloc[0]["n"] == 6


def test_cli_compare_says_what_a_side_would_need(invalid_store, invoke):
    url, sid = invalid_store["url"], invalid_store["sweep"]
    data = json.loads(invoke("compare", sid, sid, "--broker", url, "--json").stdout)
    cell = data["cells"][0]
    assert data["invalid"] == {"a": 2, "b": 2} and data["include_invalid"] is False
    assert (cell["n_a"], cell["n_invalid_a"], cell["invalid_kinds_a"]) == (4, 2, "1 contended, 1 too short")
    assert cell["change"] == "no change" and cell["p_value"] >= 0.05  # a sweep against itself
    for flag in ("--include-invalid", "--include-contended"):
        kept = json.loads(invoke("compare", sid, sid, "--broker", url, "--json", flag).stdout)
        assert kept["cells"][0]["n_a"] == 6 and kept["include_invalid"] is True
    res = invoke("compare", sid, sid, "--broker", url)
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "4 invalid repeat(s) left out of the statistics (2 contended, 2 too short)" in text
    assert "would need" not in cell["note"] and "without a verdict" not in text  # 4 tight v 4 suffice for 5%
    res = invoke("compare", sid, invalid_store["few"], "--broker", url, "--json")
    few = json.loads(res.stdout)["cells"][0]
    assert few["change"] == "inconclusive" and "would need at least 4 valid repeats a side (4 v 3 now)" in few["note"]
    text = " ".join(invoke("compare", sid, invalid_store["few"], "--broker", url).output.split())
    assert "1 cell(s) without a verdict: each note says how many valid repeats a side would settle it" in text
