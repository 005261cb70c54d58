"""farm.reports.compare and farm.reports.ratios over constructed result rows, and ``farm compare`` /
``farm report --ratio-by`` through typer's CliRunner against a real throwaway redis-server (nothing trains)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from farm.reports.aggregate import aggregate, results_frame
from farm.reports.compare import (
    COMPARE_COLUMNS,
    compare,
    higher_is_better,
    min_p_value,
    regressions,
    software_keys,
)
from farm.reports.frames import hardware_keys
from farm.reports.ratios import ratios
from tests.helpers import TRAIN, cell_row, only_row, store_finished_sweep, throwaway_redis, tight

VERSIONS = dict(python_version="3.11.7", keras_version="3.15.1", backend_version="2.21.0")
N_BOOT = 500  # enough for the assertions, and fast


def row(
    sps: float | None,
    *,
    repeat: int = 0,
    sweep: str = "A",
    workload: str = "fashion_mnist_mlp",
    device: str = "cpu",
    backend: str = "tensorflow",
    batch_size: int = 128,
    status: str = "succeeded",
    device_name: str = "cpu-x",
    **extra,
) -> dict:
    """One tidy result row with the given throughput (steady epoch time follows from it)."""
    ok = status == "succeeded"
    r = cell_row(
        repeat,
        f"{sweep}-{workload}-{device}-{backend}-{batch_size}-{repeat}-{status}",
        sweep,
        (workload, device, backend),
        batch_size=batch_size,
        status=status,
        device_name=device_name if ok else None,
        train_samples_used=TRAIN if ok else None,
        steady_epoch_s=TRAIN / sps if ok and sps else None,
        steady_samples_per_s=sps if ok else None,
        **VERSIONS,
    )
    r.update(extra)
    return r


def cell(values, **kw) -> list[dict]:
    return [row(float(v), repeat=i, **kw) for i, v in enumerate(values)]


def frame(rows: list[dict]) -> pd.DataFrame:
    """results_frame, keeping hardware_key / software_key even where RESULT_COLUMNS does not have them yet."""
    df = results_frame(rows)
    for col in ("hardware_key", "software_key"):
        if col not in df.columns and any(col in r for r in rows):
            df[col] = [r.get(col) for r in rows]
    return df


def cmp_of(a_rows, b_rows, **kw) -> pd.DataFrame:
    return compare(frame(a_rows), frame(b_rows), **{"n_boot": N_BOOT, **kw})


# -- the decision rule ---------------------------------------------------------------------------------------
def test_clear_regression_is_slower():
    a = cell(tight(1000, 8, seed=1), sweep="A")
    b = cell(tight(800, 8, seed=2), sweep="B")
    cmp = cmp_of(a, b)
    assert list(cmp.columns) == COMPARE_COLUMNS
    r = cmp.iloc[0]
    assert len(cmp) == 1
    assert r["change"] == "slower"
    assert r["n_a"] == 8 and r["n_b"] == 8
    assert r["ratio"] == pytest.approx(0.8, rel=0.02)
    assert r["ratio"] == pytest.approx(r["median_b"] / r["median_a"])
    assert r["p_value"] < 0.05
    assert r["ratio_ci_low"] <= r["ratio"] <= r["ratio_ci_high"] < 1  # the CI excludes 1
    assert bool(r["higher_is_better"]) and r["metric"] == "steady_samples_per_s"
    assert r["hardware"] == "cpu-x"
    assert r["note"] == ""
    reg = regressions(cmp)
    assert len(reg) == 1 and list(reg.columns) == COMPARE_COLUMNS
    # and the other way round it is faster, not a regression
    back = cmp_of(b, a).iloc[0]
    assert back["change"] == "faster" and back["ratio"] == pytest.approx(1 / r["ratio"])
    assert regressions(cmp_of(b, a)).empty


def test_noise_is_no_change():
    rng = np.random.default_rng(7)
    a = cell(1000 * (1 + 0.10 * rng.standard_normal(5)), sweep="A")
    b = cell(1000 * (1 + 0.10 * rng.standard_normal(5)), sweep="B")
    r = cmp_of(a, b).iloc[0]
    assert r["change"] == "no change"
    assert r["p_value"] >= 0.05
    assert r["ratio_ci_low"] < 1 < r["ratio_ci_high"]
    # Over many draws of the same distribution a change is declared rarely (p < 0.05 AND > 5 %).
    declared = 0
    for seed in range(20):
        rng = np.random.default_rng(100 + seed)
        a = cell(1000 * (1 + 0.10 * rng.standard_normal(5)), sweep="A")
        b = cell(1000 * (1 + 0.10 * rng.standard_normal(5)), sweep="B")
        declared += cmp_of(a, b, n_boot=50).iloc[0]["change"] != "no change"
    assert declared <= 3


def test_identical_values_are_no_change():
    a = cell([1000.0] * 5, sweep="A")
    b = cell([1000.0] * 5, sweep="B")
    r = cmp_of(a, b).iloc[0]
    assert r["change"] == "no change"
    assert r["ratio"] == 1.0 and r["ratio_ci_low"] == 1.0 and r["ratio_ci_high"] == 1.0
    assert r["p_value"] == 1.0


def test_significant_change_below_the_threshold_is_no_change():
    a = cell(tight(1000, 8, cv=0.002, seed=3), sweep="A")
    b = cell(tight(1020, 8, cv=0.002, seed=4), sweep="B")
    r = cmp_of(a, b).iloc[0]
    assert r["p_value"] < 0.05  # real ...
    assert r["ratio"] == pytest.approx(1.02, abs=0.005)
    assert r["change"] == "no change"  # ... but under the 5 % threshold
    assert cmp_of(a, b, threshold=0.01).iloc[0]["change"] == "faster"


def test_unmatched_cells_are_only_in_a_or_b():
    a = [*cell(tight(1000, 4), sweep="A"), *cell(tight(500, 4), sweep="A", workload="cifar10_mlp")]
    b = [
        *cell(tight(1000, 4), sweep="B"),
        *cell(tight(3000, 4), sweep="B", device="gpu", device_name="H100"),
        row(None, sweep="B", workload="cifar10_mlp", status="failed", error="boom"),
        row(None, sweep="B", workload="cifar10_mlp", status="timed_out", repeat=1),
    ]
    cmp = cmp_of(a, b)
    assert len(cmp) == 3
    assert only_row(cmp, workload="fashion_mnist_mlp", device="cpu")["change"] == "no change"
    gone = only_row(cmp, workload="cifar10_mlp")
    assert gone["change"] == "only in A"
    assert gone["n_a"] == 4 and gone["n_b"] == 0 and math.isnan(gone["ratio"]) and math.isnan(gone["p_value"])
    assert "B: no succeeded repeat, 2 failed" in gone["note"]
    assert gone["software_b"] == ""
    new = only_row(cmp, device="gpu")
    assert new["change"] == "only in B" and new["hardware"] == "H100" and new["n_a"] == 0
    assert regressions(cmp).empty


def test_other_hardware_is_not_matched():
    a = cell(tight(1000, 4), sweep="A", device_name="cpu-x")
    b = cell(tight(2000, 4), sweep="B", device_name="cpu-y")
    assert sorted(cmp_of(a, b)["change"]) == ["only in A", "only in B"]


def test_software_difference_is_noted():
    a = cell(tight(1000, 5), sweep="A")
    b = cell(tight(1000, 5, seed=9), sweep="B", keras_version="3.16.0")
    r = cmp_of(a, b).iloc[0]
    assert r["software_a"] == "py3.11.7 keras3.15.1 tensorflow2.21.0"  # built from the version columns
    assert r["software_b"] == "py3.11.7 keras3.16.0 tensorflow2.21.0"
    assert r["note"].startswith("software differs: A py3.11.7 keras3.15.1")
    assert "→ B py3.11.7 keras3.16.0" in r["note"]
    same = cmp_of(a, cell(tight(1000, 5, seed=9), sweep="B")).iloc[0]
    assert same["note"] == "" and same["software_a"] == same["software_b"]


def test_software_key_column_is_used_and_pooling_noted():
    a = [{**r, "software_key": "py3.11 keras3.15 tensorflow2.21"} for r in cell(tight(1000, 4), sweep="A")]
    b = cell(tight(1000, 4, seed=5), sweep="B")
    b = [{**r, "software_key": f"py3.11 keras3.{15 + i % 2} tensorflow2.21"} for i, r in enumerate(b)]
    r = cmp_of(a, b).iloc[0]
    assert r["software_a"] == "py3.11 keras3.15 tensorflow2.21"
    assert r["software_b"] == "py3.11 keras3.15 tensorflow2.21|py3.11 keras3.16 tensorflow2.21"
    assert "software differs" in r["note"] and "pooled several software keys on B" in r["note"]
    assert "pooled several software keys on A" not in r["note"]


def test_time_metric_lower_is_faster():
    a = cell(tight(1000, 6, seed=1), sweep="A")
    b = cell(tight(1300, 6, seed=2), sweep="B")  # more samples/s → shorter epochs
    r = cmp_of(a, b, metric="steady_epoch_s").iloc[0]
    assert not r["higher_is_better"] and r["metric"] == "steady_epoch_s"
    assert r["ratio"] == pytest.approx(1 / 1.3, rel=0.02)  # B takes less time: ratio < 1 ...
    assert r["change"] == "faster"  # ... which is faster
    assert cmp_of(b, a, metric="steady_epoch_s").iloc[0]["change"] == "slower"


def test_too_few_repeats_are_inconclusive():
    one = cmp_of([row(1000.0, sweep="A")], cell([500.0, 510, 505, 495], sweep="B")).iloc[0]
    assert one["change"] == "inconclusive" and "no test possible" in one["note"]
    assert math.isnan(one["ratio_ci_low"])
    assert one["ratio"] == pytest.approx(0.5025)
    # 3 v 3 cannot reach p < 0.05 even with a 50 % drop and no overlap: not "no change", "inconclusive".
    three = cmp_of(cell([1000.0, 1001, 999], sweep="A"), cell([500.0, 501, 499], sweep="B")).iloc[0]
    assert three["change"] == "inconclusive" and "cannot reach p < 0.05" in three["note"]
    assert three["p_value"] >= 0.05
    # 4 v 4 can
    four = cmp_of(cell([1000.0, 1001, 999, 1002], sweep="A"), cell([500.0, 501, 499, 502], sweep="B")).iloc[0]
    assert four["change"] == "slower"
    # a metric with no values (1-epoch jobs) on one side
    a = cell([1000.0] * 4, sweep="A")
    b = [{**r, "steady_samples_per_s": None} for r in cell([1000.0] * 4, sweep="B")]
    none = cmp_of(a, b).iloc[0]
    assert none["change"] == "inconclusive" and none["n_b"] == 0 and math.isnan(none["p_value"])


def test_min_p_value():
    assert min_p_value(3, 3) == pytest.approx(0.1)
    assert min_p_value(4, 4) == pytest.approx(2 / 70)
    assert min_p_value(1, 9) == pytest.approx(0.2) and min_p_value(1, 1) == 1.0 and min_p_value(0, 3) == 1.0


def test_higher_is_better():
    assert higher_is_better("steady_samples_per_s") is True
    assert higher_is_better("steady_epoch_s") is False and higher_is_better("train_s") is False
    with pytest.raises(ValueError, match="direction"):
        higher_is_better("test_accuracy")
    with pytest.raises(ValueError):
        compare(frame(cell([1.0, 2.0])), frame(cell([1.0, 2.0])), metric="test_accuracy")


def test_hardware_key_is_used_when_both_sides_have_it():
    a = [{**r, "hardware_key": "cpu:AMD EPYC x2"} for r in cell(tight(1000, 4), sweep="A", device_name="n1")]
    b = [{**r, "hardware_key": "cpu:AMD EPYC x2"} for r in cell(tight(1000, 4), sweep="B", device_name="n2")]
    cmp = cmp_of(a, b)
    assert len(cmp) == 1 and cmp.iloc[0]["hardware"] == "cpu:AMD EPYC x2"
    # one side from before hardware_key existed: both fall back to device_name
    old = cell(tight(1000, 4), sweep="B", device_name="n1")
    cmp = cmp_of(a, old)
    assert len(cmp) == 1 and cmp.iloc[0]["hardware"] == "n1" and cmp.iloc[0]["change"] == "no change"
    ha, hb = hardware_keys(frame(a), frame(old))
    assert set(ha) == {"n1"} and set(hb) == {"n1"}


def test_software_keys_fallback_spelling():
    df = frame(
        [
            row(1.0),
            row(1.0, backend="jax", backend_version="0.4.30", keras_version=None),
            row(1.0, python_version=None, keras_version=None, backend_version=None),
        ]
    )
    assert list(software_keys(df)) == ["py3.11.7 keras3.15.1 tensorflow2.21.0", "py3.11.7 jax0.4.30", "unknown"]


def test_failed_rows_and_empty_frames():
    a = cell(tight(1000, 4), sweep="A")
    b = [*cell(tight(1000, 4, seed=3), sweep="B"), row(None, sweep="B", status="failed", repeat=9)]
    r = cmp_of(a, b).iloc[0]
    assert r["n_b"] == 4 and r["change"] == "no change"
    empty = compare(frame([]), frame([]))
    assert empty.empty and list(empty.columns) == COMPARE_COLUMNS
    assert compare(frame(a), frame([]), n_boot=N_BOOT)["change"].tolist() == ["only in A"]


def test_cells_sorted_and_matched_on_every_cell_column():
    a = [*cell(tight(1000, 4), sweep="A", batch_size=256), *cell(tight(900, 4), sweep="A", batch_size=64)]
    b = [*cell(tight(900, 4), sweep="B", batch_size=64), *cell(tight(1000, 4), sweep="B", batch_size=256)]
    cmp = cmp_of(a, b)
    assert cmp["batch_size"].tolist() == [64, 256]
    assert cmp["change"].tolist() == ["no change", "no change"]
    assert cmp["median_a"].round(-2).tolist() == [900, 1000]


# -- ratios ----------------------------------------------------------------------------------------------------
def test_ratios_backend_over_baseline():
    rows = [
        *cell(tight(1000, 5, seed=1), backend="tensorflow"),
        *cell(tight(1500, 5, seed=2), backend="jax"),
        *cell(tight(800, 5, seed=3), backend="torch"),
        *cell(tight(4000, 5, seed=4), backend="jax", batch_size=256),
    ]  # no tensorflow counterpart
    out = ratios(frame(rows), "backend", "tensorflow", n_boot=N_BOOT)
    assert out["backend"].tolist() == ["jax", "torch"]
    jax = out.iloc[0]
    assert jax["ratio"] == pytest.approx(1.5, rel=0.02)
    assert jax["ratio_ci_low"] < 1.5 < jax["ratio_ci_high"] and jax["ratio_ci_low"] > 1.4
    assert jax["baseline"] == "tensorflow" and jax["n"] == 5 and jax["n_baseline"] == 5
    assert jax["ratio"] == pytest.approx(jax["median"] / jax["baseline_median"])
    assert jax["hardware"] == "cpu-x"
    assert out.iloc[1]["ratio"] == pytest.approx(0.8, rel=0.02)
    # exact: identical repeats
    exact = ratios(
        frame([*cell([1000.0] * 3, backend="tensorflow"), *cell([1500.0] * 3, backend="jax")]),
        "backend",
        "tensorflow",
        n_boot=N_BOOT,
    ).iloc[0]
    assert (exact["ratio"], exact["ratio_ci_low"], exact["ratio_ci_high"]) == (1.5, 1.5, 1.5)


def test_ratios_match_hardware_and_text_values():
    rows = [
        *cell([1000.0] * 3, backend="tensorflow", device_name="a"),
        *cell([1500.0] * 3, backend="jax", device_name="a"),
        *cell([3000.0] * 3, backend="jax", device_name="b"),
    ]  # no tensorflow on "b"
    out = ratios(frame(rows), "backend", "tensorflow", n_boot=N_BOOT)
    assert len(out) == 1 and out.iloc[0]["hardware"] == "a"
    by_batch = ratios(
        frame([*cell([1000.0] * 3), *cell([1800.0] * 3, batch_size=256)]), "batch_size", "128", n_boot=N_BOOT
    )
    assert by_batch["batch_size"].tolist() == [256] and by_batch.iloc[0]["ratio"] == pytest.approx(1.8)
    with pytest.raises(ValueError, match="no succeeded row has backend = 'mxnet'"):
        ratios(frame(rows), "backend", "mxnet")
    with pytest.raises(ValueError, match="cannot take ratios by"):
        ratios(frame(rows), "worker", "w1")


def test_ratios_by_device_equals_the_report_speedup():
    rows = [
        *cell(tight(1000, 4, seed=1), device_name="cpu-a"),
        *cell(tight(1100, 3, seed=2), device_name="cpu-b"),
        *cell(tight(5000, 4, seed=3), device="gpu", device_name="H100"),
    ]
    df = frame(rows)
    out = ratios(df, "device", "cpu", n_boot=N_BOOT)
    assert len(out) == 1 and out.iloc[0]["device"] == "gpu" and out.iloc[0]["n_baseline"] == 7
    rep = aggregate(df, n_boot=N_BOOT)
    gpu = rep.loc[rep["device"] == "gpu"].iloc[0]
    assert out.iloc[0]["ratio"] == pytest.approx(gpu["speedup_vs_cpu"])
    assert out.iloc[0]["ratio_ci_low"] == pytest.approx(gpu["speedup_vs_cpu_ci_low"])
    assert out.iloc[0]["ratio_ci_high"] == pytest.approx(gpu["speedup_vs_cpu_ci_high"])


# -- the CLI against a real redis-server -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def farm_store():
    """A throwaway redis-server holding two finished sweeps A (base) and B (B's CPU cell 20 % slower)."""
    import redis

    from farm.store import Store

    base = {
        ("cpu", "tensorflow"): tight(1000, 6, seed=1),
        ("cpu", "jax"): tight(1500, 6, seed=2),
        ("gpu", "tensorflow"): tight(5000, 6, seed=3),
    }
    cand = {
        ("cpu", "tensorflow"): tight(800, 6, seed=4),
        ("cpu", "jax"): tight(1500, 6, seed=5),
        ("gpu", "tensorflow"): tight(5000, 6, seed=6),
    }
    with throwaway_redis(appendonly=False) as server:
        store = Store(redis.Redis.from_url(server.url, decode_responses=True))
        a = store_finished_sweep(store, "base", base)
        b = store_finished_sweep(store, "cand", cand)
        same = store_finished_sweep(store, "same", base)
        assert store.sweep_job_ids(a) != store.sweep_job_ids(b)  # the sweep name is part of a job's identity
        yield {"url": server.url, "a": a, "b": b, "same": same}
        store.r.close()


def test_cli_compare_table_and_exit_codes(farm_store, invoke, tmp_path):
    url = farm_store["url"]
    res = invoke("compare", farm_store["a"], farm_store["b"], "--broker", url)
    assert res.exit_code == 0, res.output
    assert "slower" in res.output and "no change" in res.output
    assert "ratio = B/A median (>1 is faster)" in " ".join(res.output.split())

    res = invoke("compare", "base", "cand", "--broker", url, "--fail-on-regression")  # names resolve too
    assert res.exit_code == 3, res.output
    assert "1 regression(s)" in res.output

    res = invoke("compare", farm_store["a"], farm_store["same"], "--broker", url, "--fail-on-regression")
    assert res.exit_code == 0, res.output
    assert "slower" not in res.output

    out = tmp_path / "out.csv"
    res = invoke("compare", farm_store["a"], farm_store["b"], "--broker", url, "-o", str(out))
    assert res.exit_code == 0, res.output
    df = pd.read_csv(out)
    assert list(df.columns) == COMPARE_COLUMNS and len(df) == 3
    slow = df.loc[df["change"] == "slower"]
    assert len(slow) == 1 and slow.iloc[0]["backend"] == "tensorflow" and slow.iloc[0]["device"] == "cpu"
    assert slow.iloc[0]["ratio"] == pytest.approx(0.8, rel=0.02) and slow.iloc[0]["p_value"] < 0.05
    assert slow.iloc[0]["software_a"] == "py3.11.7 keras3.15.1 tensorflow2.21.0"


def test_cli_compare_json_and_errors(farm_store, invoke, tmp_path):
    url = farm_store["url"]
    res = invoke(
        "compare",
        farm_store["a"],
        farm_store["b"],
        "--broker",
        url,
        "--json",
        "--metric",
        "steady_epoch_s",
        "--fail-on-regression",
    )
    assert res.exit_code == 3, res.output
    data = json.loads(res.stdout)
    assert data["regressions"] == 1 and data["higher_is_better"] is False
    slow = [c for c in data["cells"] if c["change"] == "slower"]
    assert len(slow) == 1 and slow[0]["ratio"] == pytest.approx(1.25, rel=0.02)
    md = tmp_path / "cmp.md"
    assert invoke("compare", farm_store["a"], farm_store["b"], "--broker", url, "-o", str(md)).exit_code == 0
    assert md.read_text().startswith("|")
    bad = invoke("compare", farm_store["a"], "nope", "--broker", url)
    assert bad.exit_code == 2 and "no sweep matches" in bad.output
    bad = invoke("compare", farm_store["a"], farm_store["b"], "--broker", url, "--metric", "test_accuracy")
    assert bad.exit_code == 2 and "direction" in bad.output
    assert "Exit status" in " ".join(invoke("compare", "--help").output.split())


def test_cli_report_ratio_by(farm_store, invoke):
    url = farm_store["url"]
    res = invoke("report", farm_store["a"], "--broker", url, "--ratio-by", "backend", "--baseline", "tensorflow")
    assert res.exit_code == 0, res.output
    assert "over backend = tensorflow (1 cells with a baseline counterpart)" in res.output
    line = [ln for ln in res.output.splitlines() if ln.strip().startswith("jax")]
    assert len(line) == 1
    numbers = [float(t) for t in line[0].split()[1:] if t.replace(".", "", 1).isdigit()]
    assert any(x == pytest.approx(1.5, rel=0.02) for x in numbers), line[0]
    bad = invoke("report", farm_store["a"], "--broker", url, "--ratio-by", "backend")
    assert bad.exit_code == 2 and "go together" in bad.output
    bad = invoke("report", farm_store["a"], "--broker", url, "--ratio-by", "backend", "--baseline", "mxnet")
    assert bad.exit_code == 2 and "mxnet" in bad.output


def test_cli_compare_broker_down(invoke):
    res = invoke("compare", "a", "b", "--broker", "redis://127.0.0.1:1/0")
    assert res.exit_code == 1, res.output
    assert "cannot reach Redis" in " ".join(res.output.split()) and "Traceback" not in res.output


def test_the_table_shows_only_the_parameters_that_tell_cells_apart():
    """Two cells of one workload that differ in one parameter: the table's cell column names that parameter and
    its value, not the cell's whole parameter JSON."""
    import io

    from cli.common import FarmConsole
    from cli.compare import compare_table

    def wide(units: int, sweep: str) -> list[dict]:
        params = json.dumps({"hidden_layers": 5, "units": units, "optimizer": "adam"}, sort_keys=True)
        return cell([1000.0, 1001, 999, 1002], sweep=sweep, workload="fashion_mnist_mlp", params=params)

    cmp = cmp_of(wide(8, "A") + wide(16, "A"), wide(8, "B") + wide(16, "B"))
    out = io.StringIO()
    FarmConsole(file=out, width=80).print(compare_table(cmp, "A", "B", "steady_samples_per_s", True))
    text = out.getvalue()
    assert "units=8" in text and "units=16" in text, text
    assert "hidden_layers" not in text and "optimizer" not in text and "{" not in text, text
