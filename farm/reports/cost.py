"""What a cell's throughput costs: a price per hour for the hardware that ran it, turned into US dollars per
million samples (with the CI of the throughput behind it) and, for a cell trained to a target accuracy, the
dollars it took to get there.

Prices are the lab's, not the farm's: given per hardware key (``gpu:NVIDIA H100 80GB HBM3``), device name,
host or device kind (``gpu``, ``cpu``), the most specific match winning — in the settings (``prices``, say in the
config file) or on ``farm report --price KEY=USD_PER_HOUR``. Results never store a price: a report prices the
hours it measured at today's rates, and a cell with no price has no cost (empty, never zero).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

MATCHED_BY = ("hardware_key", "device_name", "host", "device")
"""The cell columns a price's key is matched against, most specific first."""


def parse_prices(items: list[str]) -> dict[str, float]:
    """``KEY=USD_PER_HOUR`` items (``--price``) as a mapping; ValueError naming the item that is not one."""
    prices: dict[str, float] = {}
    for item in items:
        key, sep, value = item.rpartition("=")
        try:
            price = float(value)
        except ValueError:
            price = math.nan
        if not sep or not key.strip() or not math.isfinite(price) or price < 0:
            raise ValueError(f"--price {item!r}: expected KEY=USD_PER_HOUR, e.g. 'gpu:NVIDIA H100=2.49' or cpu=0.10")
        prices[key.strip()] = price
    return prices


def price_of(cell: Mapping[str, Any], prices: Mapping[str, float]) -> float | None:
    """The price per hour of the hardware that ran ``cell``: the first of its hardware key, device name, host
    and device kind that ``prices`` names; None when none does."""
    for column in MATCHED_BY:
        value = cell.get(column)
        if isinstance(value, str) and value in prices:
            return float(prices[value])
    return None


def with_costs(report: pd.DataFrame, prices: Mapping[str, float]) -> pd.DataFrame:
    """``report`` with ``usd_per_hour``, ``usd_per_million_samples`` (and its CI, from the throughput's: the
    cheaper bound is the faster one) and ``usd_to_target`` where a price matches; unchanged without prices."""
    if not prices or report.empty:
        return report
    out = report.copy()
    records = out.to_dict("records")
    hourly = [price_of({str(k): v for k, v in r.items()}, prices) for r in records]
    out["usd_per_hour"] = pd.array(hourly, dtype="Float64").astype(float)

    def per_million(rate_column: str) -> list[float]:
        rates = out[rate_column] if rate_column in out.columns else pd.Series(math.nan, index=out.index)
        return [
            price / 3600.0 / float(rate) * 1e6 if price is not None and _positive(rate) else math.nan
            for price, rate in zip(hourly, rates, strict=True)
        ]

    out["usd_per_million_samples"] = per_million("steady_samples_per_s_median")
    out["usd_per_million_samples_ci_low"] = per_million("steady_samples_per_s_ci_high")
    out["usd_per_million_samples_ci_high"] = per_million("steady_samples_per_s_ci_low")
    seconds = out["time_to_target_s_median"] if "time_to_target_s_median" in out.columns else None
    out["usd_to_target"] = [
        price / 3600.0 * float(s) if seconds is not None and price is not None and _positive(s) else math.nan
        for price, s in zip(hourly, seconds if seconds is not None else [math.nan] * len(out), strict=True)
    ]
    return out


def _positive(value: Any) -> bool:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return False
    return math.isfinite(v) and v > 0
