"""farm.reports.aggregate over hand-built result rows."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from farm.columns import CELL_COLUMNS, RESULT_COLUMNS
from farm.reports.aggregate import REPORT_COLUMNS, aggregate, results_frame, speedups
from farm.reports.stats import ratio_ci, summarize_groups
from farm.reports.tables import markdown_table, write_frame
from tests.helpers import TRAIN, tidy_row


def row(
    workload: str,
    device: str,
    sps: float | None,
    *,
    repeat: int = 0,
    status: str = "succeeded",
    batch_size: int = 128,
    device_name: str | None = None,
    epochs: int = 3,
    **extra,
) -> dict:
    steady = TRAIN / sps if sps else None
    ok = status == "succeeded"
    r = tidy_row(
        repeat,
        job_id=f"{workload}-{device}-{batch_size}-{epochs}-{repeat}-{status}",
        sweep_id="s1",
        workload=workload,
        device=device,
        backend="tensorflow",
        epochs=epochs,
        batch_size=batch_size,
        status=status,
        device_name=device_name or ("NVIDIA H100" if device == "gpu" else "cpu-x"),
        train_samples_used=TRAIN if ok else None,
        first_epoch_s=(3 * steady if steady else None) if ok else None,
        steady_epoch_s=steady if ok else None,
        steady_samples_per_s=sps if ok else None,
        test_accuracy=0.85 if ok else None,
    )
    r.update(extra)
    return r


def cell(workload: str, device: str, values, **kw) -> list[dict]:
    return [row(workload, device, v, repeat=i, **kw) for i, v in enumerate(values)]


@pytest.fixture
def rows() -> list[dict]:
    return [
        *cell("fashion_mnist_mlp", "cpu", [1000, 1010, 990]),
        *cell("fashion_mnist_mlp", "gpu", [3000, 3030, 2970]),
        row("fashion_mnist_mlp", "gpu", None, repeat=3, status="failed", error="boom", device_name=None),
        *cell("cifar10_mlp", "cpu", [500, 505, 495]),
        *cell("cifar10_mlp", "gpu", [500, 2000, 1000]),  # very noisy
        *cell("cifar10_mlp", "gpu", [4000, 4040, 3960], batch_size=256),  # no CPU counterpart
        row("cifar10_mlp", "cpu", None, epochs=1),  # a 1-epoch job: no steady epoch
        row("cifar10_mlp", "cpu", None, repeat=1, epochs=1, status="lost"),  # not terminal: not counted
    ]


@pytest.fixture
def report(rows) -> pd.DataFrame:
    return aggregate(results_frame(rows))


def pick(report: pd.DataFrame, workload: str, device: str, batch_size: int = 128, epochs: int = 3) -> pd.Series:
    m = (
        (report["workload"] == workload)
        & (report["device"] == device)
        & (report["batch_size"] == batch_size)
        & (report["epochs"] == epochs)
    )
    assert m.sum() == 1
    return report.loc[m].iloc[0]


def test_results_frame_has_exactly_the_result_columns(rows):
    df = results_frame([*rows, {"workload": "x", "status": "queued", "params": {"b": 1, "a": 2}, "junk": 1}])
    assert list(df.columns) == RESULT_COLUMNS
    assert len(df) == len(rows) + 1
    last = df.iloc[-1]
    assert last["params"] == '{"a":2,"b":1}'
    assert pd.isna(last["steady_samples_per_s"]) and pd.isna(last["device"])
    assert df["steady_samples_per_s"].dtype == float
    assert list(results_frame([]).columns) == RESULT_COLUMNS


def test_report_columns_and_order(report):
    assert list(report.columns) == REPORT_COLUMNS
    assert REPORT_COLUMNS[: len(CELL_COLUMNS) + 6] == [
        *CELL_COLUMNS,
        "hardware_key",
        "device_name",
        "software_key",
        "software_keys",
        "n",
        "n_failed",
    ]
    for name in (
        "steady_samples_per_s_median",
        "steady_epoch_s_ci_low",
        "steady_epoch_s_iqr",
        "steady_samples_per_s_cv",
        "first_epoch_s_median",
        "test_accuracy_median",
        "outliers",
        "unstable",
        "speedup_vs_cpu",
        "speedup_vs_cpu_ci_low",
        "speedup_vs_cpu_ci_high",
    ):
        assert name in report.columns
    assert REPORT_COLUMNS[-3:] == ["speedup_vs_cpu", "speedup_vs_cpu_ci_low", "speedup_vs_cpu_ci_high"]
    # sorted by workload, device, backend, batch size, then the other cell columns (epochs 1 before 3)
    assert list(zip(report["workload"], report["device"], report["batch_size"], report["epochs"], strict=True)) == [
        ("cifar10_mlp", "cpu", 128, 1),
        ("cifar10_mlp", "cpu", 128, 3),
        ("cifar10_mlp", "gpu", 128, 3),
        ("cifar10_mlp", "gpu", 256, 3),
        ("fashion_mnist_mlp", "cpu", 128, 3),
        ("fashion_mnist_mlp", "gpu", 128, 3),
    ]
    assert report["n"].dtype.kind == "i" and report["unstable"].dtype == bool


def test_counts_and_medians(report):
    gpu = pick(report, "fashion_mnist_mlp", "gpu")
    assert gpu["n"] == 3 and gpu["n_failed"] == 1
    assert gpu["steady_samples_per_s_median"] == 3000
    assert gpu["steady_samples_per_s_q1"] == 2985 and gpu["steady_samples_per_s_q3"] == 3015
    assert gpu["steady_epoch_s_median"] == pytest.approx(TRAIN / 3000)
    assert gpu["first_epoch_s_median"] == pytest.approx(3 * TRAIN / 3000)
    assert gpu["test_accuracy_median"] == 0.85
    assert gpu["steady_samples_per_s_ci_low"] <= 3000 <= gpu["steady_samples_per_s_ci_high"]
    assert gpu["outliers"] == 0
    cpu = pick(report, "fashion_mnist_mlp", "cpu")
    assert cpu["n"] == 3 and cpu["n_failed"] == 0
    assert cpu["steady_samples_per_s_median"] == 1000
    assert cpu["steady_samples_per_s_std"] == pytest.approx(10.0)
    one_epoch = pick(report, "cifar10_mlp", "cpu", epochs=1)
    assert one_epoch["n"] == 1 and one_epoch["n_failed"] == 0  # 'lost' is not terminal
    assert math.isnan(one_epoch["steady_samples_per_s_median"]) and not one_epoch["unstable"]


def test_speedup(report):
    gpu = pick(report, "fashion_mnist_mlp", "gpu")
    assert gpu["speedup_vs_cpu"] == pytest.approx(3.0)
    assert gpu["speedup_vs_cpu_ci_low"] <= 3.0 <= gpu["speedup_vs_cpu_ci_high"]
    assert pick(report, "cifar10_mlp", "gpu")["speedup_vs_cpu"] == pytest.approx(2.0)
    assert math.isnan(pick(report, "cifar10_mlp", "gpu", batch_size=256)["speedup_vs_cpu"])  # no CPU cell
    cpu_rows = report[report["device"] == "cpu"]
    assert cpu_rows[["speedup_vs_cpu", "speedup_vs_cpu_ci_low", "speedup_vs_cpu_ci_high"]].isna().all().all()


def test_unstable_only_for_the_noisy_cell(report):
    flagged = report.loc[report["unstable"], ["workload", "device", "batch_size"]]
    assert list(map(tuple, flagged.to_numpy())) == [("cifar10_mlp", "gpu", 128)]


def test_stats_match_summarize_groups_and_ratio_ci(report):
    gpu = pick(report, "fashion_mnist_mlp", "gpu")
    s = summarize_groups([3000, 3030, 2970])
    assert (gpu["steady_samples_per_s_ci_low"], gpu["steady_samples_per_s_ci_high"]) == (s.ci_low[0], s.ci_high[0])
    r, lo, hi = ratio_ci([3000, 3030, 2970], [1000, 1010, 990])
    assert (gpu["speedup_vs_cpu"], gpu["speedup_vs_cpu_ci_low"], gpu["speedup_vs_cpu_ci_high"]) == (r, lo, hi)


def test_cpu_device_names_are_pooled_for_the_speedup():
    rows = [
        *cell("fashion_mnist_mlp", "cpu", [1000, 1200], device_name="cpu-x"),
        *[row("fashion_mnist_mlp", "cpu", v, repeat=2 + i, device_name="cpu-y") for i, v in enumerate([800, 900])],
        *cell("fashion_mnist_mlp", "gpu", [4000, 4000, 4000]),
    ]
    rep = aggregate(results_frame(rows))
    assert list(rep["device_name"]) == ["cpu-x", "cpu-y", "NVIDIA H100"]
    gpu = rep.iloc[-1]
    assert gpu["speedup_vs_cpu"] == pytest.approx(4000 / np.median([1000, 1200, 800, 900]))
    head = speedups(rep)
    assert head["cpu_samples_per_s_median"].iloc[0] == pytest.approx(950.0)


def test_speedups_headline(report):
    head = speedups(report)
    assert list(head.columns) == [
        "workload",
        "params",
        "backend",
        "batch_size",
        "device_name",
        "cpu_samples_per_s_median",
        "gpu_samples_per_s_median",
        "speedup_vs_cpu",
        "speedup_vs_cpu_ci_low",
        "speedup_vs_cpu_ci_high",
    ]
    assert list(head["workload"]) == ["cifar10_mlp", "fashion_mnist_mlp"]
    fm = head.iloc[1]
    assert fm["cpu_samples_per_s_median"] == pytest.approx(1000)
    assert fm["gpu_samples_per_s_median"] == 3000
    assert fm["speedup_vs_cpu"] == pytest.approx(3.0)


def test_empty_and_all_failed():
    assert list(aggregate(results_frame([])).columns) == REPORT_COLUMNS
    df = results_frame([row("fashion_mnist_mlp", "cpu", None, status="timed_out")])
    assert aggregate(df).empty


def test_write_frame_csv_round_trip(report, tmp_path):
    path = write_frame(report, tmp_path / "report.csv")
    back = pd.read_csv(path)
    assert list(back.columns) == REPORT_COLUMNS
    assert len(back) == len(report)
    for col in ("n", "n_failed", "steady_samples_per_s_median", "steady_epoch_s_ci_low", "speedup_vs_cpu"):
        np.testing.assert_allclose(back[col].to_numpy(float), report[col].to_numpy(float), rtol=1e-12)
    assert list(back["workload"]) == list(report["workload"])
    assert list(back["params"]) == list(report["params"])
    assert list(back["unstable"]) == list(report["unstable"])
    assert back["train_samples"].isna().all()


def test_write_frame_other_formats(report, tmp_path):
    records = json.loads(write_frame(report, tmp_path / "r.json").read_text())
    assert len(records) == len(report) and list(records[0]) == REPORT_COLUMNS
    md = write_frame(report, tmp_path / "r.md").read_text()
    assert "workload" in md.splitlines()[0] and "speedup_vs_cpu" in md.splitlines()[0]
    assert len(md.strip().splitlines()) == len(report) + 2
    assert markdown_table(pd.DataFrame({"a": [1.5, np.nan], "b": ["x|y", None]})).splitlines() == [
        "| a | b |",
        "|---|---|",
        "| 1.5 | x\\|y |",
        "|  |  |",
    ]
    with pytest.raises(ValueError, match="unknown suffix"):
        write_frame(report, tmp_path / "r.xlsx")
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match="pyarrow"):
            write_frame(report, tmp_path / "r.parquet")
    else:
        write_frame(report, tmp_path / "r.parquet")
        assert len(pd.read_parquet(tmp_path / "r.parquet")) == len(report)


def test_cells_group_by_hardware_key_and_flag_pooled_software():
    rows = []
    for i, (hw, sw) in enumerate(
        [
            ("cpu:X x2", "py3.11 keras3.1 tensorflow2.20"),
            ("cpu:X x2", "py3.11 keras3.1 tensorflow2.21"),
            ("cpu:X x8", "py3.11 keras3.1 tensorflow2.21"),
        ]
    ):
        rows.append(
            {
                "job_id": f"j{i}",
                "sweep_id": "s",
                "workload": "cifar10_mlp",
                "params": "{}",
                "device": "cpu",
                "backend": "tensorflow",
                "epochs": 2,
                "batch_size": 32,
                "data": "synthetic",
                "repeat": i,
                "status": "succeeded",
                "device_name": "X",
                "hardware_key": hw,
                "software_key": sw,
                "steady_epoch_s": 1.0,
                "steady_samples_per_s": 100.0,
                "first_epoch_s": 2.0,
                "test_accuracy": 0.5,
            }
        )
    rep = aggregate(results_frame(rows))
    assert sorted(rep.hardware_key) == ["cpu:X x2", "cpu:X x8"]
    pooled = rep[rep.hardware_key == "cpu:X x2"].iloc[0]
    assert pooled.software_keys == 2 and " | " in pooled.software_key and pooled.n == 2


def test_columns_frame_is_results_frame_built_column_wise(rows):
    from farm.reports.aggregate import columns_frame

    rows = [
        *rows,
        row("cifar10_mlp", "gpu", 700, jit_compile=True, train_samples=5000),
        {
            **dict.fromkeys(RESULT_COLUMNS),
            "job_id": "q",
            "workload": "x",
            "status": "queued",
            "params": {"b": 1, "a": 2},
        },
    ]
    as_lists = [[r.get(c) for c in RESULT_COLUMNS] for r in rows]
    expected = results_frame(as_lists)
    columns = {c: [r[i] for r in as_lists] for i, c in enumerate(RESULT_COLUMNS)}
    pd.testing.assert_frame_equal(columns_frame(columns), expected)
    assert expected["params"].iloc[-1] == '{"a":2,"b":1}'
    assert list(columns_frame({}).columns) == RESULT_COLUMNS


def test_group_ids_are_groupby_ngroup():
    from farm.reports.aggregate import _distinct_per_group, _group_ids

    df = pd.DataFrame(
        {
            "a": pd.Series(["x", None, "x", np.nan, "y", None, "x"], dtype=object),
            "b": pd.Series([True, "auto", True, "auto", False, "auto", 1], dtype=object),
            "c": [1.0, np.nan, 1.0, np.nan, 2.0, np.nan, 3.0],
        }
    )
    for cols in (["a"], ["a", "b"], ["b", "c"], ["a", "b", "c"]):
        expected = df.groupby(cols, dropna=False, sort=False).ngroup().to_numpy()
        np.testing.assert_array_equal(_group_ids(df, cols, {}), expected)
    keys = pd.Series(["k2", None, "k1", "k2", np.nan, "k1", "k3"], dtype=object)
    groups = np.array([0, 0, 0, 1, 2, 2, 0])
    expected = keys.groupby(groups).agg(lambda v: sorted(set(v.dropna()))).reindex(range(4))
    assert _distinct_per_group(keys, groups, 4)[:3] == list(expected[:3])
    assert _distinct_per_group(keys, groups, 4)[3] == []
