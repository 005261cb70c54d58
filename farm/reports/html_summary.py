"""The plain-language paragraph at the top of the sweep report (:mod:`farm.reports.html_sweep`).

:func:`report_summary` says the GPU-over-CPU headline per cell when the sweep has one, else the fastest and
slowest cell of each workload, and then how far the figures can be trusted (unstable, invalid, failed, pooled
cells), so a reader who stops after one paragraph still knows what the sweep found and how firmly.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from farm.columns import CELL_COLUMNS
from farm.reports.frames import invalid_total
from farm.reports.html_page import (
    CONFIDENCE,
    blank,
    ci_text,
    common_unit,
    num,
    ratio_text,
    records,
    row_labels,
    varying_columns,
)
from farm.reports.html_speedup import speedup_rows
from farm.reports.stats import MAX_CV


def _cpu_names(report: pd.DataFrame) -> dict[tuple[str, ...], list[str]]:
    """Per cell without its device: the CPU device names that ran it (what a speedup is over)."""
    base = [c for c in CELL_COLUMNS if c != "device" and c in report.columns]
    out: dict[tuple[str, ...], list[str]] = {}
    cpu = report[report["device"].eq("cpu").fillna(False).to_numpy(dtype=bool)]
    for rec in records(cpu):
        names = out.setdefault(tuple(str(rec.get(c)) for c in base), [])
        name = str(rec.get("device_name") if not blank(rec.get("device_name")) else rec.get("hardware_key"))
        if name not in names:
            names.append(name)
    return out


def report_summary(report: pd.DataFrame, results: pd.DataFrame | None = None) -> str:
    """The plain-language paragraph at the top of the page (plain text, not yet escaped): the GPU-over-CPU
    headline per cell when there is one ("on this hardware, the GPU trains cifar10_mlp 9.8× faster than the CPU
    (95% CI 9.1–10.4)"), else the fastest and slowest cell of each workload; then how far to trust them."""
    pct = f"{CONFIDENCE:.0%}"
    if report.empty:
        return "No job of this sweep succeeded yet: there is nothing to report."
    sentences: list[str] = []
    varying = varying_columns(report)
    speed = speedup_rows(report)
    base = [c for c in CELL_COLUMNS if c != "device" and c in report.columns]
    cpus = _cpu_names(report)
    shown = 6
    pairs: dict[tuple[str, str], list[str]] = {}  # (GPU, CPUs) -> what the GPU does how much faster
    for rec, label in zip(records(speed)[:shown], row_labels(speed, varying, device=False)[:shown], strict=True):
        r, lo, hi = (float(rec[c]) for c in ("speedup_vs_cpu", "speedup_vs_cpu_ci_low", "speedup_vs_cpu_ci_high"))
        verb = "runs inference on" if rec.get("mode") == "inference" else "trains"
        gpu = str(rec.get("device_name") if not blank(rec.get("device_name")) else rec.get("hardware_key"))
        cpu = " and ".join(cpus.get(tuple(str(rec.get(c)) for c in base), [])) or "the CPU"
        items = pairs.setdefault((gpu, cpu), [])
        how = f"{ratio_text(r)}× faster" if r >= 1 else f"{ratio_text(1 / r)}× slower"
        if not items:
            how += " than the CPU"
        ci = (
            f"{pct} CI {ratio_text(lo)}–{ratio_text(hi)}"
            if math.isfinite(lo) and math.isfinite(hi)
            else "no CI: too few repeats"
        )
        if math.isfinite(lo) and math.isfinite(hi) and lo <= 1 <= hi:
            ci += ", which includes no difference"
        items.append(f"{verb} {label} {how} ({ci})")
    for (gpu, cpu), items in pairs.items():
        listed = items[0] if len(items) == 1 else "; ".join(items[:-1]) + "; and " + items[-1]
        sentences.append(f"On this hardware ({gpu} against {cpu}), the GPU {listed}.")
    if len(speed) > shown:
        sentences.append(f"{len(speed) - shown} more GPU cell(s) have a speedup: see the speedup chart.")
    if not len(speed):
        sentences += _extremes(report, varying, pct)
    sentences.append(_trust(report, results))
    return " ".join(s for s in sentences if s)


def _extremes(report: pd.DataFrame, varying: list[str], pct: str) -> list[str]:
    """Per workload (the first three): its fastest and slowest cell, with CIs."""
    out = []
    med = report["steady_samples_per_s_median"].to_numpy(dtype=float)
    labels = row_labels(report, varying)
    workloads = list(dict.fromkeys(report["workload"].astype(str)))
    for w in workloads[:3]:
        idx = [int(i) for i in np.flatnonzero(report["workload"].astype(str).to_numpy() == w) if math.isfinite(med[i])]
        if not idx:
            continue
        unit = common_unit(report.iloc[idx]) or "samples"

        def say(i: int, unit: str = unit) -> str:
            lo, hi = report["steady_samples_per_s_ci_low"].iloc[i], report["steady_samples_per_s_ci_high"].iloc[i]
            ci = f" ({pct} CI {ci_text(lo, hi)})" if ci_text(lo, hi) else ""
            return f"{labels[i]} at {num(med[i])} {unit}/s{ci}"

        fast, slow = max(idx, key=lambda i: med[i]), min(idx, key=lambda i: med[i])
        if fast == slow:  # the label's workload is the sentence's subject already: said once
            rest = labels[fast].removeprefix(w).lstrip(" ·—")
            figure = say(fast).removeprefix(labels[fast]).removeprefix(" at ")
            out.append(f"{w} ran one cell{f' ({rest})' if rest else ''}, at {figure}.")
        else:
            apart = ratio_text(med[fast] / med[slow])
            out.append(f"{w}: the fastest cell is {say(fast)}; the slowest is {say(slow)} ({apart}× apart).")
    if len(workloads) > 3:
        out.append(f"{len(workloads) - 3} more workload(s) are in the charts below.")
    return out


def _trust(report: pd.DataFrame, results: pd.DataFrame | None) -> str:
    """How far the figures can be trusted: unstable, invalid (contended, too short, ...), failed, pooled."""
    n = len(report)
    unstable = int(report["unstable"].fillna(False).astype(bool).sum()) if "unstable" in report else 0
    parts = []
    if unstable:
        parts.append(
            f"{unstable} of {n} cell(s) are unstable (their repeats scatter by more than {MAX_CV:.0%}, or the CI "
            f"of the median is wider than ±{MAX_CV:.0%}): read their medians as rough"
        )
    n_used = report["n"].fillna(0) if "n" in report else pd.Series(2, index=report.index)
    counted = "n_invalid" if "n_invalid" in report else "n_contended"  # a report from before n_invalid existed
    busy_cells = report[counted].fillna(0) > 0 if counted in report else n_used < 0
    left_out = int(((n_used == 0) & busy_cells).sum())
    few = int(((n_used < 2) & ~((n_used == 0) & busy_cells)).sum())
    if left_out:
        sweeps = sorted({str(s) for s in results["sweep_id"].dropna()}) if results is not None else []
        sid = sweeps[0] if len(sweeps) == 1 else "SWEEP"
        parts.append(
            f"{left_out} of {n} cell(s) have no figure to trust: every repeat was invalid (contended, throttled or "
            f"too short to time) and left out; `farm report {sid} --include-invalid` keeps them, `farm resume {sid} "
            "--contended` re-runs the contended ones"
        )
    if few:
        parts.append(f"{few} of {n} cell(s) have fewer than 2 repeats: their spread cannot be judged")
    elif not unstable and not left_out:
        parts.append(f"all {n} cell(s) are stable (repeats within {MAX_CV:.0%} of each other)")
    busy, why = invalid_total(report)
    if busy:
        parts.append(f"{busy} invalid repeat(s) ({why}) are marked" if why else f"{busy} invalid repeat(s) are marked")
    failed = int(report["n_failed"].fillna(0).sum()) if "n_failed" in report else 0
    if results is not None and "status" in results.columns:
        failed = int(results["status"].isin(["failed", "timed_out", "cancelled"]).sum())
    if failed:
        parts.append(f"{failed} job(s) failed")
    pooled = int((report["software_keys"].fillna(0) > 1).sum()) if "software_keys" in report else 0
    if pooled:
        parts.append(f"{pooled} cell(s) pool results from several software stacks")
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "."
