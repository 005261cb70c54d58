"""What a person sees, on a terminal and off one (a file, a pipe, a CI log).

Piped, output is plain and complete: no value cut to ``…``, no squeezing to 80 columns, no box drawing, error
lines unwrapped. On a pseudo-terminal, rich draws its tables, folding a long value rather than cutting it. The
printed report shows each cell's median throughput (its unit in the header), the median's 95% CI and flags
(unstable, outliers, stalls); progress counts only the jobs that can run, with the time actually elapsed.
"""

from __future__ import annotations

import io
import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from rich.console import Group
from rich.table import Table

from cli.common import FarmConsole
from cli.progress_view import progress_line, render
from farm.job import JobSpec
from farm.progress import JobProgress, SweepProgress
from farm.store import Store
from tests.helpers import REPO, farm_env, run_farm, save_finished_sweep, succeeded_job, throwaway_redis

BOX = set("│┃━─┏┓┗┛┡┩╇┳┻┼└┘┌┐├┤╭╮╰╯")
TRAIN = 4000


# -- a finished sweep in a real Redis --------------------------------------------------------------------------
def stored_sweep(store: Store) -> str:
    """A finished sweep whose CPU cell scatters (unstable) and stalled, and whose GPU cell has one outlier."""
    name = "looks"
    sweep_id = f"{name}-0123456789"
    cells = {"cpu": [700.0, 800.0, 900.0, 650.0, 1000.0], "gpu": [9000.0, 9010.0, 8990.0, 9005.0, 8995.0, 4000.0]}
    envelopes, results = [], []
    for device, values in cells.items():
        for i, v in enumerate(values):
            job = JobSpec(sweep=name, workload="fashion_mnist_mlp", device=device, epochs=3, repeat=i, data="synthetic")
            env, result = succeeded_job(
                job,
                sweep_id,
                TRAIN / v,
                device_name="NVIDIA H100 80GB HBM3 (a long device name)" if device == "gpu" else "cpu-x",
                train_samples_used=TRAIN,
                unit="images",
                test_accuracy=0.1,
                stalls=[{"epoch": 1, "duration_s": 3.0}] if device == "cpu" and i < 2 else [],
                versions={"python": "3.11.7", "keras": "3.15.1", "tensorflow": "2.21.0"},
            )
            envelopes.append(env)
            results.append(result)
    save_finished_sweep(store, sweep_id, name, envelopes, results)
    return sweep_id


@pytest.fixture(scope="module")
def finished() -> Iterator[tuple[str, str]]:
    with throwaway_redis(appendonly=False) as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        sid = stored_sweep(Store(client))
        yield server.url, sid
        client.close()


def on_a_pty(args: list[str], env: dict[str, str], timeout: float = 60) -> str:
    """The real ``farm`` command with its stdout and stderr on a pseudo-terminal; what it printed."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", *args], env=env, cwd=REPO, stdout=follower, stderr=follower, close_fds=True
    )
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the other side closed
                break
            if not data:
                break
            chunks.append(data)
        assert proc.wait(timeout=max(1.0, deadline - time.monotonic())) == 0, b"".join(chunks).decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(leader)
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode("utf-8", "replace"))


# -- farm report ------------------------------------------------------------------------------------------------
def test_the_report_piped_is_plain_and_complete(finished: tuple[str, str], tmp_path: Path) -> None:
    url, sid = finished
    out = run_farm(["report", sid], farm_env(url, tmp_path / "cache"), timeout=60)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "…" not in text and not BOX & set(text), text
    lines = text.splitlines()
    assert lines[0].startswith("report: one row per sweep cell")
    header = lines[1]
    for title in ("workload", "device name", " n ", "images/s (median)", "95% CI", "test acc", "GPU/CPU", "flags"):
        assert title in header, header
    assert max(len(line) for line in lines) > 80  # not squeezed to 80 columns
    cpu = next(line for line in lines if " cpu " in line and "fashion_mnist_mlp" in line)
    gpu = next(line for line in lines if " gpu " in line and "fashion_mnist_mlp" in line)
    assert "unstable" in cpu and "2 stalls" in cpu and "650–1,000" in cpu  # the CI of the median, whole
    assert "1 outlier" in gpu and "NVIDIA H100 80GB HBM3 (a long device name)" in gpu
    assert any(line.startswith("GPU over CPU") for line in lines)
    assert "10.0%" in cpu and any("chance level" in line for line in lines)  # synthetic data: not a failed training
    assert any(line.startswith("unstable: ") for line in lines)  # what the flag means


def test_the_report_on_a_narrow_pseudo_terminal_folds_instead_of_cutting(
    finished: tuple[str, str], tmp_path: Path
) -> None:
    url, sid = finished
    for columns in ("130", "70"):
        env = farm_env(url, tmp_path / "cache", COLUMNS=columns, LINES="50")
        env.pop("NO_COLOR", None)
        text = on_a_pty(["report", sid], env)
        assert BOX & set(text), text  # a terminal gets rich's tables
        assert "…" not in text, text  # a long value folds onto more lines, never cut
        assert max(len(line) for line in text.splitlines()) <= int(columns)
        if columns == "130":  # room enough: the numbers stay whole, the text columns fold
            assert "650–1,000" in text and "images/s (median)" in text and "95% CI" in text


def test_report_md_is_a_summary_a_person_reads(finished: tuple[str, str], tmp_path: Path) -> None:
    url, sid = finished
    target = tmp_path / "report.md"
    out = run_farm(["report", sid, "-o", str(target)], farm_env(url, tmp_path / "cache"), timeout=60)
    assert out.returncode == 0, out.stderr
    md = target.read_text()
    assert md.startswith(f"# Benchmark report: {sid}")
    header = next(line for line in md.splitlines() if line.startswith("| workload"))
    titles = [t.strip() for t in header.strip("|").split("|")]
    assert titles == [
        "workload",
        "device",
        "backend",
        "batch",
        "device name",
        "n",
        "images/s (median)",
        "95% CI",
        "first epoch s",
        "test accuracy",
        "GPU/CPU",
        "flags",
    ]
    row = next(line for line in md.splitlines() if "| cpu |" in line)
    assert "| 32 |" in row and "| 5 |" in row and ".0 |" not in row  # integers as integers
    assert "10.0%" in row and "unstable, 2 stalls" in row
    assert "## How to read this" in md and "chance level" in md and "1/classes" in md


def test_report_csv_keeps_every_column(finished: tuple[str, str], tmp_path: Path) -> None:
    import pandas as pd

    url, sid = finished
    target = tmp_path / "report.csv"
    assert run_farm(["report", sid, "-o", str(target)], farm_env(url, tmp_path / "cache"), timeout=60).returncode == 0
    cells = pd.read_csv(target)
    assert {"steady_samples_per_s_iqr", "steady_samples_per_s_ci_low", "outliers", "unstable"} <= set(cells.columns)
    assert "n,n_failed,n_contended" in target.read_text().splitlines()[0]


# -- the console ------------------------------------------------------------------------------------------------
def long_table() -> Table:
    table = Table(title="a table")
    table.add_column("name")
    table.add_column("value", justify="right")
    table.add_row("[green]" + "x" * 150 + "[/]", "1,234")
    table.add_row("short", "5")
    return table


def test_off_a_terminal_tables_are_plain_columns_and_lines_unwrapped() -> None:
    buf = io.StringIO()
    console = FarmConsole(file=buf, width=80)
    assert not console.is_terminal
    console.print(long_table())
    console.print("a long line " * 20)
    console.print(Group("[yellow]a marked up line[/]", long_table()))
    text = buf.getvalue()
    assert "…" not in text and not BOX & set(text), text
    lines = text.splitlines()
    assert lines[0] == "a table"
    assert lines[1].split() == ["name", "value"]
    assert lines[2] == "x" * 150 + "  1,234"  # whole, markup resolved, numbers aligned right
    assert lines[3] == "short".ljust(150) + "      5"
    assert lines[4].rstrip() == ("a long line " * 20).rstrip()  # one line, however long
    assert lines[5] == "a marked up line"


def test_on_a_terminal_a_narrow_table_folds_long_values() -> None:
    buf = io.StringIO()
    console = FarmConsole(file=buf, width=40, force_terminal=True, color_system=None)
    console.print(long_table())
    text = buf.getvalue()
    assert "…" not in text and BOX & set(text)
    assert sum(line.count("x") for line in text.splitlines()) == 150  # every x is there, over several lines


# -- progress ---------------------------------------------------------------------------------------------------
def sweep_progress(succeeded: int, running: int, queued: int, skipped: int) -> SweepProgress:
    jobs = []
    for state, k in (("succeeded", succeeded), ("running", running), ("queued", queued), ("not_enqueued", skipped)):
        for i in range(k):
            device = "gpu" if state == "not_enqueued" else "cpu"
            jobs.append(JobProgress(f"{state}{i}", "cifar10_mlp", device, "tensorflow", i, f"farm.{device}", state))
    counts = {s: k for s, k in (("succeeded", succeeded), ("running", running), ("queued", queued)) if k}
    if skipped:
        counts["not_enqueued"] = skipped
    return SweepProgress("quick-1234", "quick", jobs, counts=counts, live_workers=1)


def test_progress_counts_only_the_jobs_that_can_run() -> None:
    """6 CPU jobs done and 6 GPU jobs skipped on a CPU machine: 6/6, not 6/12."""
    done = sweep_progress(succeeded=6, running=0, queued=0, skipped=6)
    line = progress_line(done, 87.0)
    assert line.startswith("quick-1234: 6/6 jobs done, 0 running, 0 queued; elapsed 0:01:27")
    assert "ETA" not in line and "6 not sent" in line
    buf = io.StringIO()
    FarmConsole(file=buf).print(render(done, 87.0))
    text = buf.getvalue()
    assert "sweep 6/6 elapsed 0:01:27" in text and "6/12" not in text
    assert "quick-1234 — 6/6 finished" in text


def test_the_eta_goes_by_the_jobs_finished() -> None:
    half = sweep_progress(succeeded=2, running=1, queued=3, skipped=0)
    assert half.eta_s(60.0) == pytest.approx(120.0)
    assert progress_line(half, 60.0) == "quick-1234: 2/6 jobs done, 1 running, 3 queued; elapsed 0:01:00, ETA 0:02:00"
    first = sweep_progress(succeeded=0, running=1, queued=5, skipped=0)
    assert first.eta_s(30.0) is None and progress_line(first, 30.0).endswith("ETA ?")


# -- report.md ---------------------------------------------------------------------------------------------------
def test_the_summary_prints_integers_as_integers_and_units_per_cell_when_they_differ() -> None:
    import pandas as pd

    from farm.reports.markdown import summary_frame, summary_markdown

    report = pd.DataFrame(
        {
            "workload": ["resnet50", "text_transformer"],
            "params": ['{"image_size":224}', '{"seq_len":128}'],
            "device": ["gpu", "gpu"],
            "backend": ["jax", "jax"],
            "batch_size": [32.0, 64.0],  # floats, as a frame with gaps holds them
            "device_name": ["NVIDIA H200", "NVIDIA H200"],
            "n": [3.0, 3.0],
            "steady_samples_per_s_median": [1234.5, 987.65],
            "steady_samples_per_s_ci_low": [1200.0, 950.0],
            "steady_samples_per_s_ci_high": [1300.0, 1000.0],
            "first_epoch_s_median": [6.1234, 2.0],
            "test_accuracy_median": [0.1, 0.5],
            "unit": ["images", "sequences"],
            "outliers": [0, 2],
            "unstable": [False, True],
            "n_contended": [0, 1],
        }
    )
    table = summary_frame(report)
    assert list(table["batch"]) == ["32", "64"] and list(table["n"]) == ["3", "3"]
    assert list(table["throughput (median)"]) == ["1,234 images/s", "987.6 sequences/s"]
    assert list(table["95% CI"]) == ["1,200–1,300", "950–1,000"]
    assert list(table["test accuracy"]) == ["10.0%", "50.0%"]
    assert list(table["flags"]) == ["", "unstable, 2 outliers, 1 contended"]
    assert "params" not in table.columns  # one set of parameters per workload: the CSV has them
    one_unit = summary_frame(report.assign(unit="images"))
    assert "images/s (median)" in one_unit.columns
    md = summary_markdown(report, title="Benchmark report: s-1")
    assert ".0 |" not in md and "| 32 |" in md
    assert "nothing to report" in summary_markdown(report.iloc[0:0])


def test_the_summary_module_is_light() -> None:
    code = (
        "import sys, farm.reports.markdown; "
        "heavy = [m for m in ('rich', 'redis', 'celery', 'keras', 'tensorflow', 'jax', 'torch') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
