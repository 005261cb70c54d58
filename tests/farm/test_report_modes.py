"""Reports of inference and of the standard workloads: a train and an inference cell of one workload are two
cells, each with its unit, latency, tokens/s and achieved TFLOP/s, in the CSV, the summary and the terminal."""

from __future__ import annotations

import pandas as pd
import pytest
from rich.console import Console

from cli.report_view import report_table
from farm.reports.aggregate import aggregate, results_frame
from farm.reports.markdown import summary_markdown
from tests.helpers import tidy_row, tight


def rows() -> list[dict]:
    out = []
    for mode, rate, latency in (("train", 1000.0, None), ("inference", 4000.0, 0.002)):
        for i, sps in enumerate(tight(rate, 5, seed=3)):
            out.append(
                tidy_row(
                    i,
                    job_id=f"{mode}{i}",
                    sweep_id="s-1",
                    workload="text_transformer",
                    device="cpu",
                    backend="jax",
                    epochs=3,
                    batch_size=32,
                    mode=mode,
                    status="succeeded",
                    device_name="cpu-x",
                    hardware_key="cpu:x x2",
                    steady_epoch_s=1024 / sps,
                    steady_samples_per_s=sps,
                    first_epoch_s=2.0,
                    unit="sequences",
                    steady_tokens_per_s=sps * 64,
                    param_count=420_098,
                    flops_per_sample=5.0e7,
                    steady_tflops=5.0e7 * (3 if mode == "train" else 1) * sps / 1e12,
                    latency_p50_s=latency if latency is None else latency * (1 + 0.01 * i),
                    latency_p90_s=None if latency is None else latency * 1.5,
                    latency_p99_s=None if latency is None else latency * 2,
                    test_accuracy=0.5,
                )
            )
    return out


def test_train_and_inference_are_separate_cells_with_their_figures() -> None:
    report = aggregate(results_frame(rows()))
    assert sorted(report["mode"]) == ["inference", "train"]
    by_mode = report.set_index("mode")
    assert (by_mode["unit"] == "sequences").all() and (by_mode["param_count"] == 420_098).all()
    assert by_mode.loc["inference", "latency_p50_s_median"] == pytest.approx(0.002 * 1.02)
    assert pd.isna(by_mode.loc["train", "latency_p50_s_median"])
    assert by_mode.loc["train", "steady_tokens_per_s_median"] == pytest.approx(
        by_mode.loc["train", "steady_samples_per_s_median"] * 64
    )
    train_tflops = 3 * 5.0e7 * by_mode.loc["train", "steady_samples_per_s_median"] / 1e12
    assert by_mode.loc["train", "steady_tflops_median"] == pytest.approx(train_tflops)


def test_summary_and_terminal_show_mode_latency_and_rates() -> None:
    frame = results_frame(rows())
    report = aggregate(frame)
    md = summary_markdown(report, frame, title="t")
    header = next(line for line in md.splitlines() if line.startswith("| workload"))
    for title in ("mode", "sequences/s (median)", "latency p50 ms", "latency p99 ms", "tokens/s", "TFLOP/s"):
        assert f"| {title} |" in header, header
    inference = next(line for line in md.splitlines() if "| inference |" in line)
    assert "| 2.04 |" in inference  # p50 in ms
    console = Console(width=300, record=True, color_system=None)
    console.print(report_table(report, results=frame))
    text = console.export_text()
    assert "mode" in text and "latency p50 ms" in text and "TFLOP/s" in text
    assert "inference" in text and "train" in text
