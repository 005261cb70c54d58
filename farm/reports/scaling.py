"""The scaling table: how a data-parallel cell's throughput grows with the devices it spans.

For each cell run on N devices (``devices_per_job``), its median throughput over the same cell on one device (the
same workload, settings and global batch, on the same hardware; for a cell that stated ``batch_per_device``, the
same batch per device), with the bootstrap CI of that ratio
(:func:`farm.reports.ratios.ratios`), and the efficiency: the speedup over N, 1 for perfect scaling. Cells from
before jobs could span devices read as one device.
"""

from __future__ import annotations

import pandas as pd

from farm.reports.ratios import ratios

SCALING_COLUMNS = [
    "workload",
    "params",
    "device",
    "backend",
    "batch_size",
    "batch_scope",
    "hardware",
    "devices",
    "n",
    "n_baseline",
    "samples_per_s",
    "samples_per_s_1",
    "speedup",
    "speedup_ci_low",
    "speedup_ci_high",
    "efficiency",
    "efficiency_ci_low",
    "efficiency_ci_high",
]


def scaling(results: pd.DataFrame, *, include_invalid: bool = False, n_boot: int = 2000) -> pd.DataFrame:
    """One row per cell on more than one device with a one-device counterpart (empty when there is none)."""
    if "devices_per_job" not in results.columns or not results["devices_per_job"].notna().any():
        return pd.DataFrame(columns=SCALING_COLUMNS)
    one = results.assign(devices_per_job=results["devices_per_job"].fillna(1).astype(int))
    if "batch_scope" in one.columns and "per_device_batch" in one.columns:
        # A cell that stated its batch per device scales against one device at that batch (weak scaling): its
        # global batch grows with the devices, so it is matched on the per-device batch instead.
        weak = one["batch_scope"].eq("device")
        one["batch_size"] = one["batch_size"].where(~weak, one["per_device_batch"])
    try:
        out = ratios(one, "devices_per_job", 1, include_invalid=include_invalid, n_boot=n_boot)
    except ValueError:  # no succeeded one-device cell to scale from
        return pd.DataFrame(columns=SCALING_COLUMNS)
    if out.empty:
        return pd.DataFrame(columns=SCALING_COLUMNS)
    out = out.rename(
        columns={
            "devices_per_job": "devices",
            "median": "samples_per_s",
            "baseline_median": "samples_per_s_1",
            "ratio": "speedup",
            "ratio_ci_low": "speedup_ci_low",
            "ratio_ci_high": "speedup_ci_high",
        }
    )
    n = out["devices"].astype(float)
    for suffix in ("", "_ci_low", "_ci_high"):
        out[f"efficiency{suffix}"] = out[f"speedup{suffix}"].astype(float) / n
    out["devices"] = out["devices"].astype(int)
    return (
        out[[c for c in SCALING_COLUMNS if c in out.columns]]
        .sort_values(["workload", "device", "backend", "batch_size", "devices"], kind="stable")
        .reset_index(drop=True)
    )
