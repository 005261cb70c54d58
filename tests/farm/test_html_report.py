"""The HTML pages (farm.reports.html_sweep, farm.reports.html_history, farm.reports.html_compare) built from
hand-made results frames: what they say, what they mark, that they escape what comes from the data, never refer to
anything outside themselves, and are the same bytes for the same input. Nothing trains; matplotlib draws real charts."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from farm.reports.aggregate import aggregate, results_frame
from farm.reports.compare import compare
from farm.reports.files import OutputError
from farm.reports.history import history_frame
from farm.reports.html_compare import write_compare_html
from farm.reports.html_history import write_history_html
from farm.reports.html_summary import report_summary
from farm.reports.html_sweep import (
    MAX_CELLS,
    MAX_DOTS,
    PLOT_EXTRA_MISSING,
    PlotExtraMissing,
    write_report_html,
)
from farm.reports.ratios import ratios
from tests.helpers import REPO, cell_row, tight

HOSTILE = "<script>alert(1)</script>"


def seed_like(
    *,
    gpu: bool = True,
    sweep: str = "seed-cpu-vs-gpu",
    gpu_name: str = "NVIDIA H100",
    repeats: int = 5,
    backends: tuple[str, ...] = ("tensorflow",),
) -> pd.DataFrame:
    """A finished seed-like sweep: cifar10_mlp (CPU ~1,000/s, GPU ~9,800/s) and fashion_mnist_mlp, with one
    unstable cell (fashion_mnist_mlp on the CPU), one contended repeat and one stalled repeat (cifar10_mlp on the
    CPU), and one failed job."""
    rows = []
    k = 0
    devices = [("cpu", "cpu-x", 1.0), *([("gpu", gpu_name, 9.8)] if gpu else [])]
    for workload, base in (("cifar10_mlp", 1000.0), ("fashion_mnist_mlp", 3000.0)):
        for device, name, factor in devices:
            for backend in backends:
                k += 1
                noisy = workload == "fashion_mnist_mlp" and device == "cpu"
                values = tight(base * factor, repeats, seed=k, cv=0.25 if noisy else 0.004)
                for i, v in enumerate(values):
                    contended = workload == "cifar10_mlp" and device == "cpu" and i == 0
                    rows.append(
                        cell_row(
                            i,
                            f"{sweep}-{k}-{i}",
                            sweep,
                            (workload, device, backend),
                            host="lab1",
                            device_name=name,
                            hardware_key=f"{device}:{name}",
                            software_key="py3.11.7 keras3.15.1 tensorflow2.21.0",
                            keras_version="3.15.1",
                            backend_version="2.21.0",
                            python_version="3.11.7",
                            steady_samples_per_s=v * (0.4 if contended else 1.0),
                            steady_epoch_s=60_000 / v,
                            first_epoch_s=3 * 60_000 / v,
                            import_s=3.0,
                            data_s=1.0,
                            build_s=0.5,
                            train_s=5 * 60_000 / v,
                            eval_s=0.3,
                            total_s=5 * 60_000 / v + 5.5,
                            step_p50_s=32 / v,
                            step_p90_s=1.2 * 32 / v,
                            step_p99_s=3 * 32 / v,
                            stalls=1 if (workload == "cifar10_mlp" and device == "cpu" and i == 1) else 0,
                            contended=contended,
                            test_accuracy=0.1,
                            finished_at=f"2026-11-01T03:{k:02d}:{i:02d}+00:00",
                        )
                    )
    rows.append(
        cell_row(
            0, f"{sweep}-failed", sweep, ("cifar10_mlp", "cpu", backends[0]), status="failed", error=f"boom {HOSTILE}"
        )
    )
    return results_frame(rows)


def build(tmp_path: Path, df: pd.DataFrame, name: str = "report.html", **kw: Any) -> str:
    path = tmp_path / name
    write_report_html(aggregate(df), df, path, title=kw.pop("title", "seed sweep"), **kw)
    return path.read_text(encoding="utf-8")


def svgs(doc: str) -> list[str]:
    return re.findall(r"<svg\b.*?</svg>", doc, flags=re.S)


def test_summary_states_the_speedup_with_its_ci(tmp_path: Path) -> None:
    df = seed_like()
    report = aggregate(df)
    row = report[(report["workload"] == "cifar10_mlp") & (report["device"] == "gpu")].iloc[0]
    assert 9 < row["speedup_vs_cpu"] < 11
    want = (
        f"the GPU trains cifar10_mlp {row['speedup_vs_cpu']:.1f}× faster than the CPU "
        f"(95% CI {row['speedup_vs_cpu_ci_low']:.1f}–{row['speedup_vs_cpu_ci_high']:.1f})"
    )
    doc = build(tmp_path, df)
    summary = re.search(r'<p class="summary" id="summary">(.*?)</p>', doc, flags=re.S)
    assert summary is not None
    assert want in summary.group(1)
    assert "On this hardware (NVIDIA H100 against cpu-x)" in summary.group(1)
    assert "1 of 4 cell(s) are unstable" in summary.group(1)


def test_one_svg_per_chart_each_in_a_figure_with_a_caption(tmp_path: Path) -> None:
    df = seed_like(backends=("tensorflow", "jax"))
    doc = build(tmp_path, df, ratios=ratios(df, "backend", "tensorflow"))
    figures = re.findall(r"<figure>(.*?)</figure>", doc, flags=re.S)
    # throughput, speedup, ratios, phases, step times
    assert len(figures) == 5 == len(svgs(doc))
    for fig in figures:
        assert fig.count("<svg") == 1 and "<figcaption>" in fig
    for anchor in ("throughput", "speedup", "phases", "steps", "environment"):
        assert f'<section id="{anchor}"' in doc
    assert "Ratios over backend = tensorflow" in doc
    assert doc.count("<table>") >= 4  # cells, ratios, hardware, software


def test_unstable_contended_stalled_and_outliers_are_marked(tmp_path: Path) -> None:
    doc = build(tmp_path, seed_like())
    chart = svgs(doc)[0]
    # The flagged cells' labels say why, in the chart and in the table; the legend names each mark.
    assert re.search(r"fashion_mnist_mlp — cpu: cpu-x\s+\[unstable\]", chart)
    assert re.search(r"cifar10_mlp — cpu: cpu-x\s+\[[^\]]*1 contended[^\]]*1 stalled", chart)
    for legend in ("unstable cell", "invalid repeat (left out)", "repeat whose fit stalled"):
        assert legend in chart
    assert '<span class="flag">unstable</span>' in doc
    assert re.search(r'<span class="flag">[^<]*1 contended[^<]*1 failed[^<]*1 stalled</span>', doc)


def test_cpu_only_summary_names_fastest_and_slowest(tmp_path: Path) -> None:
    df = seed_like(gpu=False, backends=("tensorflow", "jax"))
    text = report_summary(aggregate(df), df)
    assert "the GPU" not in text
    assert "cifar10_mlp: the fastest cell is cifar10_mlp" in text and "the slowest is" in text
    doc = build(tmp_path, df)
    assert "No GPU cell has a CPU counterpart" in doc


def test_a_cpu_only_page_neither_repeats_itself_nor_misses_gpu_versions(tmp_path: Path) -> None:
    """One cell of a workload is said once (not "w ran one cell: w — cpu…"); a page without GPU rows does not
    say that its rows lack GPU driver versions; a cell whose every repeat was left out says so where it is drawn."""
    df = seed_like(gpu=False)
    df = df[(df["workload"] == "fashion_mnist_mlp") | (df["status"] != "succeeded")]
    text = report_summary(aggregate(df), df)
    assert "fashion_mnist_mlp ran one cell (cpu: cpu-x), at " in text, text
    doc = build(tmp_path, df)
    assert "GPU driver" not in doc
    gpu = seed_like()
    gpu = gpu.drop(columns=[c for c in gpu.columns if "driver" in c or "cuda" in c])
    assert "do not carry the GPU driver" in build(tmp_path, gpu, name="gpu.html")
    every = seed_like(gpu=False).assign(contended=lambda d: d["workload"] == "cifar10_mlp")
    chart = svgs(build(tmp_path, every, name="every.html"))[0]
    assert re.search(r"cifar10_mlp — cpu: cpu-x\s+\[[^\]]*no valid repeat", chart), chart[:3000]


def test_text_from_the_data_is_escaped(tmp_path: Path) -> None:
    df = seed_like(sweep=HOSTILE, gpu_name=HOSTILE)
    doc = build(tmp_path, df, title=f"sweep {HOSTILE}")
    assert "<script" not in doc
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in doc
    assert "&lt;script&gt;" in svgs(doc)[0]  # the device name in a chart label, escaped by matplotlib
    # A name with $ is not read as mathtext (an unbalanced one would make matplotlib raise).
    build(tmp_path, seed_like(gpu_name="GPU $x"), name="dollar.html")


def test_nothing_is_fetched_and_nothing_runs(tmp_path: Path) -> None:
    df = seed_like(backends=("tensorflow", "jax"))
    doc = build(tmp_path, df, ratios=ratios(df, "backend", "tensorflow"))
    assert "http://" not in doc and "https://" not in doc
    assert "<script" not in doc.lower() and "@import" not in doc
    for attr in re.findall(r'\b(?:href|src|xlink:href)="([^"]*)"', doc):
        assert attr.startswith("#"), attr
    assert "url(" not in doc.replace("url(#", "")
    assert "default-src 'none'" in doc  # and the page's CSP forbids any fetch anyway


def test_equal_inputs_give_equal_bytes(tmp_path: Path) -> None:
    df = seed_like()
    first = build(tmp_path, df, name="a.html")
    second = build(tmp_path, df.copy(), name="b.html")
    assert first == second


def test_seed_sweep_page_is_small(tmp_path: Path) -> None:
    doc = build(tmp_path, seed_like(repeats=3))
    assert len(doc.encode()) < 500_000


def test_big_sweep_is_capped_and_says_so(tmp_path: Path) -> None:
    rows = []
    for c in range(MAX_CELLS + 5):
        for i, v in enumerate(tight(1000.0 + c, MAX_DOTS + 20, seed=c)):
            rows.append(
                cell_row(
                    i, f"j{c}-{i}", "big", ("cifar10_mlp", "cpu", "jax"), batch_size=c + 1, device_name="cpu-x",
                    steady_samples_per_s=v, steady_epoch_s=60_000 / v,
                )
            )  # fmt: skip
    doc = build(tmp_path, results_frame(rows))
    assert f"Showing the first {MAX_CELLS} of {MAX_CELLS + 5} cells" in doc
    assert f"show {MAX_DOTS}: every flagged one" in doc
    assert len(doc.encode()) < 2_000_000


def test_history_section_marks_the_change_and_names_it(tmp_path: Path) -> None:
    frames = []
    for night in range(7):
        df = seed_like(sweep=f"nightly-{night}", gpu=False)
        df["keras_version"] = "3.15.1" if night < 4 else "3.16.0"
        if night >= 4:
            df["steady_samples_per_s"] *= 0.8
        df["finished_at"] = f"2026-11-{night + 1:02d}T03:00:00+00:00"
        frames.append((f"nightly-{night}", df))
    history = history_frame(frames)
    assert history["change"].any()
    path = tmp_path / "history.html"
    write_history_html(history, path, title="nightly")
    doc = path.read_text(encoding="utf-8")
    assert "keras 3.15.1 → 3.16.0" in doc
    assert "change flagged here" in doc  # the marker's legend entry
    assert len(svgs(doc)) == history.groupby(["workload", "device", "hardware_key"]).ngroups
    # ... and as a section of the sweep's report.
    report_doc = build(tmp_path, frames[-1][1], history=history)
    assert '<section id="history"' in report_doc and "keras 3.15.1 → 3.16.0" in report_doc


def test_compare_page_colours_verdicts(tmp_path: Path) -> None:
    a = seed_like(sweep="a", repeats=6)
    b = seed_like(sweep="b", repeats=6)
    b.loc[b["workload"] == "cifar10_mlp", "steady_samples_per_s"] *= 0.7
    cmp = compare(a, b)
    assert "slower" in set(cmp["change"])
    path = tmp_path / "compare.html"
    write_compare_html(cmp, path, title=f"a → {HOSTILE}")
    doc = path.read_text(encoding="utf-8")
    assert len(svgs(doc)) == 1
    assert '<span class="v-slower">slower</span>' in doc
    assert "#c0392b" in svgs(doc)[0].lower()  # the slower colour in the chart
    assert "<script" not in doc


def test_unwritable_path_is_an_output_error(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="does not exist"):
        build(tmp_path, seed_like(), name="missing/report.html")


def test_without_matplotlib_the_message_says_what_to_install() -> None:
    """The module imports without matplotlib; writing a page raises PlotExtraMissing (an OutputError: one line,
    exit 1 in the CLI) with the install command."""
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from pathlib import Path\n"
        "import farm.reports.html_compare as h\n"
        "from farm.reports.files import OutputError\n"
        "import pandas as pd\n"
        "try:\n"
        "    h.write_compare_html(pd.DataFrame(), Path('x.html'), title='t')\n"
        "except OutputError as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{PlotExtraMissing.__name__} {PLOT_EXTRA_MISSING}"
