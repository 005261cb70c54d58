"""How long does ``farm.reports.aggregate.aggregate`` take on a big results frame?

Builds a synthetic frame of 100,000 result rows (2,000 sweep cells × 50 repeats: half CPU, half GPU; the
repeats of every 10th CPU cell split over two device names; ~1 % failed rows; some cells without a
train_samples cap) and prints the time of ``results_frame`` on the same rows as dicts, of ``columns_frame`` on
them as columns, of ``aggregate`` (best of ``--runs``) and of ``speedups``. With ``--stored`` it also writes the
rows as the store keeps them (compact rows and their shared parts) into a throwaway redis-server and times
reading them back into the frame (``sweep_columns`` + ``columns_frame``), best of ``--runs``. Then it times
the HTML report of the same rows (``farm.reports.html_sweep.write_report_html``: matplotlib imported, charts drawn,
the page written; the first run pays the import), best of ``--runs``, and prints the page's size; without the
plot extra (matplotlib) that line says it was skipped.

    .venv/bin/python -m benchmarks.report_speed [--cells 2000] [--repeats 50] [--runs 3] [--stored] [--no-html]
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
import pandas as pd

from farm.columns import RESULT_COLUMNS
from farm.reports.aggregate import aggregate, columns_frame, results_frame, speedups
from farm.rowstore import compact_row


def synthetic_frame(cells: int = 2000, repeats: int = 50, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    grid = itertools.product(
        ["fashion_mnist_mlp", "cifar10_mlp"],
        ["tensorflow", "jax", "torch"],
        [32, 64, 128, 256, 512],
        [1, 8, 32, 128],
        [True, False, "auto"],
        [None, 1000, 5000, 10000, 60000],
        ["cpu", "gpu"],
    )
    specs = list(itertools.islice(grid, cells))
    if len(specs) < cells:
        raise SystemExit(f"the grid has only {len(specs)} cells")
    n = cells * repeats
    cell = np.repeat(np.arange(cells), repeats)
    rep = np.tile(np.arange(repeats), cells)
    cols = list(zip(*specs, strict=True))

    def take(i: int) -> np.ndarray:
        return np.asarray(cols[i], dtype=object)[cell]

    workload, backend, batch_size, spe, jit, train, device = (take(i) for i in range(7))
    is_gpu = device == "gpu"
    base_rate = np.where(is_gpu, 20_000.0, 4_000.0) * (1 + (cell % 7))
    noise = np.where(cell % 50 == 0, 0.3, 0.03)  # a few noisy cells
    sps = base_rate * rng.lognormal(0.0, noise)
    train_used = np.where(pd.isna(train), 60_000, train).astype(float)
    # The repeats of every 10th CPU cell ran on two different machines: the speedup pools them.
    cpu_name = np.where((cell % 20 < 2) & (rep % 2 == 1), "cpu-b", "cpu-a")
    status = np.where(rng.random(n) < 0.01, "failed", "succeeded").astype(object)
    steady_s = train_used / sps
    df = pd.DataFrame(
        {
            "job_id": [f"{i:020x}" for i in range(n)],
            "sweep_id": "bench",
            "workload": workload,
            "params": '{"hidden":256}',
            "device": device,
            "backend": backend,
            "epochs": 5,
            "batch_size": batch_size,
            "data": "synthetic",
            "train_samples": train,
            "test_samples": None,
            "steps_per_execution": spe,
            "jit_compile": jit,
            "mixed_precision": False,
            "input_pipeline": "farm",
            "repeat": rep,
            "seed": rep,
            "status": status,
            "device_name": np.where(is_gpu, "NVIDIA H100", cpu_name),
            "train_samples_used": train_used,
            "first_epoch_s": steady_s * 3,
            "steady_epoch_s": np.where(status == "succeeded", steady_s, np.nan),
            "steady_samples_per_s": np.where(status == "succeeded", sps, np.nan),
            "test_accuracy": rng.uniform(0.8, 0.9, n),
        }
    )
    for col in RESULT_COLUMNS:
        if col not in df:
            df[col] = None
    return df[RESULT_COLUMNS]


def stored_read(rows: list[dict], expected: pd.DataFrame, runs: int) -> list[float]:
    """Seconds to read ``rows`` back from Redis into the tidy frame, as ``farm report`` does, ``runs`` times."""
    import tempfile

    import redis

    from farm.embedded import EmbeddedRedis
    from farm.rowstore import sweep_columns
    from farm.store import Store

    with tempfile.TemporaryDirectory(prefix="rs-") as d, EmbeddedRedis(Path(d) / "r", appendonly=False) as srv:
        store = Store(redis.Redis.from_url(srv.url, decode_responses=True))
        pipe = store.r.pipeline(transaction=False)
        for row in rows:
            text, ref, part = compact_row(row)
            pipe.set(store.k("row", row["job_id"]), text)
            pipe.hsetnx(store.k("rowparts"), ref, part)
            if len(pipe) >= 5000:
                pipe.execute()
        pipe.execute()
        ids = [row["job_id"] for row in rows]
        for i in range(0, len(ids), 10_000):
            store.r.rpush(store.k("sweep", "bench", "jobs"), *ids[i : i + 10_000])
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            frame = columns_frame(sweep_columns(store, "bench"))
            times.append(time.perf_counter() - t0)
        pd.testing.assert_frame_equal(frame, expected)
        return times


def html_build(report: pd.DataFrame, df: pd.DataFrame, runs: int) -> tuple[list[float], list[float], int] | None:
    """Wall and CPU seconds to write the HTML report of ``df``, ``runs`` times, and the page's size in bytes;
    None without matplotlib. (CPU time says what the build costs when other work shares the machine.)"""
    import tempfile

    from farm.reports.html_sweep import PlotExtraMissing, write_report_html

    times, cpu = [], []
    with tempfile.TemporaryDirectory(prefix="rs-html-") as d:
        path = Path(d) / "report.html"
        for _ in range(runs):
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                write_report_html(report, df, path, title="report_speed")
            except PlotExtraMissing:
                return None
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        return times, cpu, path.stat().st_size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--stored", action="store_true", help="also time reading the rows back from Redis")
    ap.add_argument("--no-html", action="store_true", help="do not time the HTML report")
    args = ap.parse_args()
    df = synthetic_frame(args.cells, args.repeats)
    columns = list(df.columns)
    values = {c: df[c].tolist() for c in columns}
    rows = [dict(zip(columns, row, strict=True)) for row in zip(*values.values(), strict=True)]
    for row in rows:  # as a stored row has them: no NaN (JSON null)
        for c, v in row.items():
            if isinstance(v, float) and v != v:
                row[c] = None
    t0 = time.perf_counter()
    from_dicts = results_frame(rows)
    t_frame = time.perf_counter() - t0
    as_columns = {c: np.array([row[c] for row in rows], dtype=object) for c in columns}  # as sweep_columns
    t0 = time.perf_counter()
    columns_frame(as_columns)
    t_columns = time.perf_counter() - t0
    t_stored = stored_read(rows, from_dicts, args.runs) if args.stored else None
    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        report = aggregate(df)
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    head = speedups(report)
    t_speedups = time.perf_counter() - t0
    print(
        f"rows: {len(df):,}  report rows (cell x device name): {len(report):,}  "
        f"gpu cells with a cpu counterpart: {len(head):,}"
    )
    print(f"results_frame (from dicts): {t_frame:.2f} s  columns_frame (from columns): {t_columns:.2f} s")
    if t_stored:
        print(f"read back from Redis (sweep_columns + columns_frame): best {min(t_stored):.2f} s of {args.runs}")
    print(f"aggregate: best {min(times):.2f} s of {args.runs} (all: {', '.join(f'{t:.2f}' for t in times)})")
    print(f"speedups: {t_speedups * 1000:.1f} ms")
    print(
        f"unstable cells: {int(report['unstable'].sum())}  median speedup: "
        f"{float(np.nanmedian(report['speedup_vs_cpu'])):.2f}"
    )
    if not args.no_html:
        built = html_build(report, df, args.runs)
        if built is None:
            print("html report: skipped (no matplotlib: pip install 'benchfarm[plot]')")
        else:
            t_html, c_html, size = built
            print(
                f"html report (write_report_html): best {min(t_html):.2f} s of {args.runs} "
                f"(all: {', '.join(f'{t:.2f}' for t in t_html)}; the first imports matplotlib; "
                f"CPU best {min(c_html):.2f} s), {size / 1e6:.2f} MB"
            )
            print(f"aggregate + html report: {min(times) + min(t_html):.2f} s")


if __name__ == "__main__":
    main()
