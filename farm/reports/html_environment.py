"""The "Environment" section of the sweep report (:mod:`farm.reports.html_sweep`): what the results ran on.

One table per hardware key (device name, device, hosts, and the GPU driver and CUDA versions where the rows carry
them), one per software key with the versions behind it, and a warning for the cells that pool repeats from
several software stacks, since their spread may be the software's rather than the machine's.
"""

from __future__ import annotations

import pandas as pd

from farm.reports.frames import succeeded
from farm.reports.html_page import esc, records, row_labels, table_html, varying_columns

_VERSION_COLUMNS = [
    ("keras_version", "Keras"),
    ("backend_version", "backend version"),
    ("python_version", "Python"),
    ("benchfarm_version", "benchfarm"),
    ("workload_version", "workload"),
]


def _distinct(values: pd.Series) -> str:
    """The distinct non-missing values, sorted, joined (vectorized: a 100,000-row sweep has few of them)."""
    return ", ".join(sorted(str(v) for v in pd.unique(values.dropna().astype(str))))


def environment_section(report: pd.DataFrame, results: pd.DataFrame) -> str:
    """Hardware and software tables over the succeeded results, then the cells that pool software."""
    parts = []
    ok = succeeded(results) if "status" in results.columns else results
    # Hardware: one row per hardware key.
    hw = (
        ok["hardware_key"].where(ok["hardware_key"].notna(), ok["device_name"])
        if "hardware_key" in ok
        else ok.get("device_name")
    )
    gpu_cols = [c for c in ok.columns if any(w in c.lower() for w in ("driver", "cuda"))]
    if hw is not None and len(ok):
        rows = []
        for key, grp in ok.groupby(hw.astype(str), sort=True):
            rows.append(
                [
                    key,
                    _distinct(grp["device_name"]),
                    _distinct(grp["device"]),
                    f"{len(grp):,}",
                    _distinct(grp["host"]) if "host" in grp else "",
                    *(_distinct(grp[c]) for c in gpu_cols),
                ]
            )
        parts.append("<h3>Hardware</h3>")
        parts.append(table_html(["hardware key", "device name", "device", "results", "hosts", *gpu_cols], rows))
        if not gpu_cols and (ok["device"].astype(str) == "gpu").any():  # a CPU-only page has none to lack
            parts.append(
                '<p class="muted">The result rows do not carry the GPU driver and CUDA versions; each job\'s full '
                "record in the store keeps its environment.</p>"
            )
    # Software: one row per software key, with the versions behind it.
    if len(ok):
        sw = ok["software_key"] if "software_key" in ok.columns else pd.Series("", index=ok.index)
        cols = [(c, t) for c, t in _VERSION_COLUMNS if c in ok.columns]
        rows = []
        for key, grp in ok.groupby(sw.fillna("").astype(str), sort=True):
            backend = []
            if "backend_version" in grp:
                pairs = grp[["backend", "backend_version"]].dropna().astype(str).drop_duplicates()
                backend = sorted(f"{b} {v}" for b, v in pairs.itertuples(index=False, name=None))
            rows.append(
                [
                    key or "(not recorded)",
                    f"{len(grp):,}",
                    *(", ".join(backend) if c == "backend_version" else _distinct(grp[c]) for c, _ in cols),
                ]
            )
        parts.append("<h3>Software</h3>")
        parts.append(table_html(["software key", "results", *(t for _, t in cols)], rows))
    # Cells that pool several software stacks.
    if "software_keys" in report.columns:
        pooled = report[report["software_keys"].fillna(0) > 1]
        if len(pooled):
            items = "".join(
                f"<li>{esc(lbl)} pools results from {int(rec['software_keys'])} software stacks: "
                f"<code>{esc(rec.get('software_key'))}</code></li>"
                for lbl, rec in zip(row_labels(pooled, varying_columns(report)), records(pooled), strict=True)
            )
            parts.append(
                '<p class="warn"><strong>Warning:</strong> these cells pool repeats that ran on different software; '
                f"their spread may be the software's, not the machine's:</p><ul class=\"warn\">{items}</ul>"
            )
    return "".join(parts) or '<p class="muted">No succeeded result: nothing is known about the environment.</p>'
