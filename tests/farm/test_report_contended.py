"""Contended repeats in the report, ratios and compare: left out of every statistic by default (they are invalid,
farm.validity), kept with ``include_invalid``, always counted; and how ``farm report`` / ``farm compare`` /
``farm run`` say so. Invalid repeats of the other kinds: tests/farm/test_report_invalid.py.

Rows come from real :class:`farm.result.JobResult` objects through :func:`farm.rows.result_row` (the path the
store takes), so the ``contended`` / ``contention_cpu`` columns are exactly what a worker's result gives.
"""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from farm.job import JobEnvelope, JobSpec
from farm.reports.aggregate import REPORT_COLUMNS, aggregate, results_frame, speedups
from farm.reports.compare import COMPARE_COLUMNS, compare
from farm.reports.frames import contended_mask
from farm.reports.ratios import ratios
from farm.reports.tables import markdown_table, write_frame
from farm.result import EpochRecord, JobResult, JobStatus
from farm.rows import result_row
from tests.helpers import only_row, throwaway_redis, tight

TRAIN = 6_000
N_BOOT = 300  # enough for these assertions, and fast
NEW_COLUMNS = [
    "contended",
    "contention_cpu",
    "contended_reason",
    "throttled",
    "valid",
    "invalid_reason",
    "benchfarm_version",
    "workload_version",
]


def job_result(
    sps: float,
    *,
    repeat: int,
    sweep: str = "s",
    device: str = "cpu",
    backend: str = "tensorflow",
    batch_size: int = 128,
    cpu: float | None = 0.01,
    contended: bool = False,
    status: JobStatus = JobStatus.succeeded,
) -> JobResult:
    """A finished job whose steady epochs ran at ``sps`` samples/s; ``cpu`` is the share of its cores other
    processes used, ``contended`` the worker's verdict."""
    job = JobSpec(
        sweep=sweep,
        workload="fashion_mnist_mlp",
        device=device,
        backend=backend,
        epochs=3,
        batch_size=batch_size,
        repeat=repeat,
    )
    env = JobEnvelope.for_job(job, f"{sweep}-0123456789")
    wall = TRAIN / sps
    ok = status == JobStatus.succeeded
    return JobResult(
        job_id=env.job_id,
        sweep_id=env.sweep_id,
        job=job,
        status=status,
        worker="w1",
        device_name="NVIDIA H100" if device == "gpu" else "cpu-x",
        train_samples_used=TRAIN if ok else None,
        versions={"python": "3.11.7", "keras": "3.15.1", backend: "2.21.0"},
        epochs=[EpochRecord(epoch=e, wall_s=(3 if e == 0 else 1) * wall) for e in range(3)] if ok else [],
        error=None if ok else "boom",
        contention={"cpu_others": cpu, "cores": 2, "window_s": 2 * wall} if cpu is not None else {},
        contended=contended,
        contended_reasons=[f"other processes used {cpu:.0%} of the job's 2 core(s)"] if contended else [],
    )


def rows(clean: list[float], busy: list[float] = (), *, busy_cpu: float = 0.6, **kw) -> list[dict]:
    """One cell: ``clean`` repeats, then ``busy`` (contended) ones, numbered on."""
    out = [result_row(job_result(v, repeat=i, **kw)) for i, v in enumerate(clean)]
    out += [
        result_row(job_result(v, repeat=len(clean) + i, cpu=busy_cpu + 0.1 * i, contended=True, **kw))
        for i, v in enumerate(busy)
    ]
    return out


# -- the report ----------------------------------------------------------------------------------------------
def test_result_rows_carry_the_verdict():
    row = rows([1000.0], [500.0])[1]
    assert row["contended"] is True and row["contention_cpu"] == pytest.approx(0.6)
    assert "other processes used 60%" in row["contended_reason"]
    assert row["steady_samples_per_s"] == pytest.approx(500.0)


def test_contended_repeats_left_out_by_default_and_kept_on_request():
    df = results_frame(rows([1000.0, 1010.0, 990.0], [500.0, 400.0]))
    rep = aggregate(df, n_boot=N_BOOT)
    assert list(rep.columns) == REPORT_COLUMNS
    assert REPORT_COLUMNS.index("n_contended") == REPORT_COLUMNS.index("n_failed") + 1
    cell = rep.iloc[0]
    assert len(rep) == 1
    assert cell["n"] == 3 and cell["n_contended"] == 2 and cell["n_failed"] == 0
    assert cell["steady_samples_per_s_median"] == 1000.0
    assert cell["steady_samples_per_s_ci_low"] >= 990.0  # the slow repeats are not in the interval
    assert cell["steady_epoch_s_median"] == pytest.approx(TRAIN / 1000.0)
    assert cell["contended_cpu_max"] == pytest.approx(0.7)
    assert not cell["unstable"]

    kept = aggregate(df, n_boot=N_BOOT, include_invalid=True).iloc[0]
    assert kept["n"] == 5 and kept["n_contended"] == 2 and kept["contended_cpu_max"] == pytest.approx(0.7)
    assert kept["steady_samples_per_s_median"] == 990.0  # median of 400, 500, 990, 1000, 1010
    assert kept["unstable"]  # and the spread says why it cannot be trusted


def test_a_cell_whose_repeats_all_contended_still_appears():
    busy_gpu = [
        {**r, "software_key": "py3.11.7 keras3.15.1 jax0.10.2"}
        for r in rows([], [2000.0, 2100.0, 2200.0], device="gpu")
    ]
    df = results_frame(
        [
            *rows([1000.0, 1000.0, 1000.0]),
            *busy_gpu,
            *rows([4000.0, 4000.0], device="gpu", batch_size=256),
            result_row(job_result(1.0, repeat=3, device="gpu", status=JobStatus.failed)),
        ]
    )
    rep = aggregate(df, n_boot=N_BOOT)
    assert list(zip(rep["device"], rep["batch_size"], strict=True)) == [
        ("cpu", 128),
        ("gpu", 128),
        ("gpu", 256),
    ]  # sorted
    gpu = only_row(rep, device="gpu", batch_size=128)
    assert gpu["n"] == 0 and gpu["n_contended"] == 3 and gpu["n_failed"] == 1
    assert gpu["contended_cpu_max"] == pytest.approx(0.8)
    for col in (
        "steady_samples_per_s_median",
        "steady_epoch_s_ci_low",
        "first_epoch_s_median",
        "test_accuracy_median",
        "speedup_vs_cpu",
    ):
        assert math.isnan(gpu[col]), col
    assert gpu["outliers"] == 0 and not gpu["unstable"]
    assert gpu["software_key"] == "py3.11.7 keras3.15.1 jax0.10.2"  # what its left-out repeats ran on
    cpu = only_row(rep, device="cpu")
    assert cpu["n_contended"] == 0 and cpu["contended_cpu_max"] == pytest.approx(0.01)  # a quiet machine's share
    assert speedups(rep).empty  # no figure to headline, and no error
    md = markdown_table(rep)
    assert len(md.strip().splitlines()) == len(rep) + 2 and "n_contended" in md.splitlines()[0]

    kept = only_row(aggregate(df, n_boot=N_BOOT, include_invalid=True), device="gpu", batch_size=128)
    assert kept["n"] == 3 and kept["speedup_vs_cpu"] == pytest.approx(2.1)


def test_contended_cpu_repeats_leave_the_speedup():
    df = results_frame(
        [*rows([1000.0, 1000.0, 1000.0], [200.0, 200.0, 200.0, 200.0]), *rows([3000.0, 3000.0, 3000.0], device="gpu")]
    )
    gpu = only_row(aggregate(df, n_boot=N_BOOT), device="gpu")
    assert gpu["speedup_vs_cpu"] == pytest.approx(3.0) and gpu["n_contended"] == 0
    assert speedups(aggregate(df, n_boot=N_BOOT))["cpu_samples_per_s_median"].iloc[0] == pytest.approx(1000.0)
    kept = only_row(aggregate(df, n_boot=N_BOOT, include_invalid=True), device="gpu")
    assert kept["speedup_vs_cpu"] == pytest.approx(15.0)  # 3000 over the median of 3 x 1000, 4 x 200


def test_only_succeeded_repeats_count_as_contended():
    failed = result_row(job_result(100.0, repeat=5, status=JobStatus.failed))
    failed.update(contended=True, contention_cpu=0.9)
    cell = aggregate(results_frame([*rows([1000.0, 1000.0], [10.0]), failed]), n_boot=N_BOOT).iloc[0]
    assert (cell["n"], cell["n_failed"], cell["n_contended"]) == (2, 1, 1)
    assert cell["contended_cpu_max"] == pytest.approx(0.6)


def test_older_rows_without_the_new_columns_still_aggregate():
    new = results_frame(rows([1000.0, 1010.0, 990.0]))
    old = new.drop(columns=NEW_COLUMNS)  # a frame read from an older results.csv
    nones = new.assign(**{c: None for c in NEW_COLUMNS})  # rows stored before the worker measured it
    expected = aggregate(new, n_boot=N_BOOT)
    for df in (
        old,
        nones,
        results_frame([{k: v for k, v in r.items() if k not in NEW_COLUMNS} for r in rows([1000.0, 1010.0, 990.0])]),
    ):
        rep = aggregate(df, n_boot=N_BOOT)
        assert list(rep.columns) == REPORT_COLUMNS
        cell = rep.iloc[0]
        assert cell["n"] == 3 and cell["n_contended"] == 0 and math.isnan(cell["contended_cpu_max"])
        assert cell["steady_samples_per_s_median"] == expected.iloc[0]["steady_samples_per_s_median"]
    assert compare(old, old, n_boot=N_BOOT)["n_contended_a"].tolist() == [0]
    assert ratios(old.assign(backend="jax"), "device", "cpu").empty  # nothing to divide, and no error


def test_contended_mask_reads_stored_and_file_values(tmp_path):
    df = pd.DataFrame({"contended": pd.Series([True, False, None, np.nan, "True", "false", 1, 0, "1"], dtype=object)})
    assert contended_mask(df).tolist() == [True, False, False, False, True, False, True, False, True]
    assert contended_mask(pd.DataFrame({"x": [1, 2]})).tolist() == [False, False]
    # through a CSV file and back (bools with gaps come back as objects)
    frame = results_frame(
        [
            *rows([1000.0, 1000.0], [10.0]),
            *results_frame(rows([1000.0])).assign(contended=None, job_id="old", repeat=9).to_dict("records"),
        ]
    )
    path = write_frame(frame, tmp_path / "results.csv")
    back = aggregate(results_frame(pd.read_csv(path).to_dict("records")), n_boot=N_BOOT).iloc[0]
    assert (back["n"], back["n_contended"]) == (3, 1)


def test_report_md_and_csv_carry_the_marks(tmp_path):
    rep = aggregate(results_frame(rows([1000.0, 1000.0], [10.0])), n_boot=N_BOOT)
    back = pd.read_csv(write_frame(rep, tmp_path / "report.csv"))
    assert back["n_contended"].tolist() == [1] and back["contended_cpu_max"].tolist() == [pytest.approx(0.6)]
    header = write_frame(rep, tmp_path / "report.md").read_text().splitlines()[0]
    assert "n_contended" in header and "contended_cpu_max" in header


# -- ratios --------------------------------------------------------------------------------------------------
def test_ratios_leave_contended_repeats_out_of_both_sides():
    df = results_frame(
        [
            *rows([1000.0, 1000.0, 1000.0], [100.0, 100.0, 100.0, 100.0]),
            *rows([1500.0, 1500.0, 1500.0], [3000.0], backend="jax"),
            *rows([], [700.0, 700.0], backend="jax", batch_size=256),
            *rows([900.0, 900.0], batch_size=256),
        ]
    )
    out = ratios(df, "backend", "tensorflow", n_boot=N_BOOT)
    jax = only_row(out, batch_size=128)
    assert jax["ratio"] == pytest.approx(1.5) and (jax["n"], jax["n_baseline"]) == (3, 3)
    assert (jax["n_contended"], jax["n_contended_baseline"]) == (1, 4)
    gone = only_row(out, batch_size=256)  # every jax repeat contended: kept, no ratio
    assert gone["n"] == 0 and gone["n_contended"] == 2 and math.isnan(gone["ratio"])
    kept = only_row(ratios(df, "backend", "tensorflow", n_boot=N_BOOT, include_invalid=True), batch_size=128)
    assert (kept["n"], kept["n_baseline"]) == (4, 7)
    assert kept["ratio"] == pytest.approx(1500.0 / 100.0)  # the baseline's median is now a contended 100


# -- compare -------------------------------------------------------------------------------------------------
def test_compare_leaves_contended_repeats_out_on_both_sides():
    a = results_frame(rows(tight(1000, 6, 1), tight(990, 2, 2), sweep="A"))
    b = results_frame(rows(tight(1000, 6, 3), tight(600, 12, 4), sweep="B"))  # B's busy repeats are slow
    cmp = compare(a, b, n_boot=N_BOOT)
    assert list(cmp.columns) == COMPARE_COLUMNS
    assert COMPARE_COLUMNS.index("n_contended_a") == COMPARE_COLUMNS.index("n_b") + 1
    r = cmp.iloc[0]
    assert (r["n_a"], r["n_b"], r["n_contended_a"], r["n_contended_b"]) == (6, 6, 2, 12)
    assert r["change"] == "no change" and r["ratio"] == pytest.approx(1.0, abs=0.02)
    assert "invalid repeats left out: A 2 (2 contended), B 12 (12 contended)" in r["note"]
    assert (r["n_invalid_a"], r["n_invalid_b"], r["invalid_kinds_b"]) == (2, 12, "12 contended")

    kept = compare(a, b, n_boot=N_BOOT, include_invalid=True).iloc[0]
    assert (kept["n_a"], kept["n_b"], kept["n_contended_a"], kept["n_contended_b"]) == (8, 18, 2, 12)
    assert kept["change"] == "slower" and "invalid repeats kept: A 2 (2 contended), B 12 (12 contended)" in kept["note"]


def test_compare_a_side_with_only_contended_repeats_is_inconclusive_not_missing():
    a = results_frame(rows(tight(1000, 5, 1), sweep="A"))
    b = results_frame(rows([], tight(400, 5, 2), sweep="B"))
    r = compare(a, b, n_boot=N_BOOT).iloc[0]
    assert r["change"] == "inconclusive" and (r["n_a"], r["n_b"], r["n_contended_b"]) == (5, 0, 5)
    assert math.isnan(r["median_b"]) and math.isnan(r["ratio"]) and math.isnan(r["p_value"])
    assert "invalid repeats left out: B 5 (5 contended)" in r["note"]


# -- what the commands print ----------------------------------------------------------------------------------
def test_the_exclusion_line_and_the_table_mark():
    from cli.report_view import invalid_line, report_table

    assert invalid_line(0, "", included=False, keep="--include-invalid") is None
    line = invalid_line(
        3, "2 contended, 1 too short", included=False, keep="--include-invalid", contended=2, sweeps=["s1"]
    )
    assert line == (
        "3 invalid repeat(s) left out of the statistics (2 contended, 1 too short); --include-invalid keeps them; "
        "`farm resume s1 --contended` re-runs the contended ones"
    )
    kept = invalid_line(1, "1 too short", included=True, keep="--include-invalid", sweeps=["s1"])
    assert kept == "1 invalid repeat(s) kept in the statistics (--include-invalid; 1 too short)"  # nothing to resume

    def rendered(rep: pd.DataFrame, included: bool = False) -> str:
        console = Console(width=250, record=True, file=io.StringIO())
        console.print(report_table(rep, included))
        return console.export_text()

    df = results_frame(
        [
            *rows([1000.0, 1000.0], [10.0]),
            *rows([], [20.0, 30.0], device="gpu"),
            *rows([3000.0], device="gpu", batch_size=256),
        ]
    )
    text = rendered(aggregate(df, n_boot=N_BOOT))
    header = next(line for line in text.splitlines() if "workload" in line)
    assert header.index(" n ") < header.index("invalid") < header.index("epoch s")  # right after n
    assert "1 left out (1 contended; cpu 60%)" in text and "2 left out (2 contended; cpu 70%)" in text
    assert "2 kept (2 contended; cpu 70%)" in rendered(aggregate(df, n_boot=N_BOOT, include_invalid=True), True)
    quiet = rendered(aggregate(results_frame(rows([1000.0, 1000.0])), n_boot=N_BOOT))
    assert "contended" not in quiet and "invalid" not in quiet  # a quiet sweep's table is as before


def test_farm_run_report_md_ends_with_the_note(tmp_path):
    from cli.run import OUTPUT_FILES, write_outputs

    df = results_frame(rows([1000.0, 1000.0], [10.0]))
    rep = aggregate(df, n_boot=N_BOOT)
    write_outputs(df, rep, tmp_path, note="1 contended repeat(s) left out of the statistics")
    md = (tmp_path / "report.md").read_text()
    note = md.index("1 contended repeat(s) left out of the statistics")  # after the summary table, before the help
    assert md.index("| workload |") < note < md.index("## How to read this")
    assert pd.read_csv(tmp_path / "report.csv")["n_contended"].tolist() == [1]  # the CSV stays a plain table
    write_outputs(df, rep, tmp_path)
    assert "left out" not in (tmp_path / "report.md").read_text()
    assert all((tmp_path / name).exists() for name in OUTPUT_FILES)


@pytest.fixture(scope="module")
def contended_store():
    """A throwaway redis-server with sweeps A (2 of 6 CPU repeats contended) and B (3 of 7 contended)."""
    import redis

    from farm.store import Store

    def store_sweep(store: Store, name: str, clean: list[float], busy: list[float]) -> str:
        results = [job_result(v, repeat=i, sweep=name) for i, v in enumerate(clean)]
        results += [
            job_result(v, repeat=len(clean) + i, sweep=name, cpu=0.5, contended=True) for i, v in enumerate(busy)
        ]
        sweep_id = results[0].sweep_id
        envelopes = [JobEnvelope.for_job(r.job, sweep_id) for r in results]
        store.save_sweep(sweep_id, {"sweep_id": sweep_id, "name": name, "jobs": len(envelopes)}, envelopes)
        for r in results:
            assert store.record_result(r)
        return sweep_id

    with throwaway_redis(appendonly=False) as server:
        store = Store(redis.Redis.from_url(server.url, decode_responses=True))
        a = store_sweep(store, "base", tight(1000, 4, 1), [300.0, 310.0])
        b = store_sweep(store, "cand", tight(1000, 4, 2), [200.0, 210.0, 220.0])
        yield {"url": server.url, "a": a, "b": b}
        store.r.close()


def test_cli_report_says_what_it_left_out(contended_store, invoke, tmp_path):
    url, a = contended_store["url"], contended_store["a"]
    res = invoke("report", a, "--broker", url)
    assert res.exit_code == 0, res.output
    assert (
        "2 invalid repeat(s) left out of the statistics (2 contended); --include-invalid keeps them; "
        f"`farm resume {a} --contended` re-runs the contended ones"
    ) in res.output
    assert "2 left out (2 contended; cpu 50%)" in res.output
    for flag in ("--include-invalid", "--include-contended"):  # the older name still works, hidden
        res = invoke("report", a, "--broker", url, flag, "-o", str(tmp_path / "r.csv"))
        assert res.exit_code == 0, res.output
        assert "2 invalid repeat(s) kept in the statistics" in res.output and "left out" not in res.output
        back = pd.read_csv(tmp_path / "r.csv").iloc[0]
        assert (back["n"], back["n_contended"], back["n_invalid"]) == (6, 2, 2)
    help_text = invoke("report", "--help").output
    assert "--include-invalid" in help_text and "--include-contended" not in help_text
    res = invoke("report", a, "--broker", url, "--ratio-by", "batch_size", "--baseline", "128")
    assert res.exit_code == 0 and "(0 cells with a baseline counterpart)" in res.output


def test_cli_compare_says_what_it_left_out(contended_store, invoke):
    url, a, b = contended_store["url"], contended_store["a"], contended_store["b"]
    res = invoke("compare", a, b, "--broker", url)
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "5 invalid repeat(s) left out of the statistics (5 contended); --include-invalid keeps them" in text
    assert f"`farm resume {a} --contended` / `farm resume {b} --contended` re-runs the contended ones" in text
    assert "invalid repeats left out: A 2 (2 contended), B 3 (3 contended)" in text
    data = json.loads(invoke("compare", a, b, "--broker", url, "--json").stdout)
    assert data["contended"] == {"a": 2, "b": 3} and data["include_contended"] is False
    assert data["invalid"] == {"a": 2, "b": 3} and data["include_invalid"] is False
    assert data["cells"][0]["n_a"] == 4 and data["cells"][0]["n_contended_b"] == 3
    assert data["cells"][0]["n_invalid_b"] == 3 and data["cells"][0]["invalid_kinds_b"] == "3 contended"
    for flag in ("--include-invalid", "--include-contended"):
        kept = json.loads(invoke("compare", a, b, "--broker", url, "--json", flag).stdout)
        assert kept["cells"][0]["n_a"] == 6 and kept["cells"][0]["n_b"] == 7 and kept["include_invalid"] is True
