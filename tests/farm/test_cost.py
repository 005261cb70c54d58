"""What a cell's samples cost at the lab's prices (farm.reports.cost): matched to the most specific hardware
name, with the throughput's CI behind it, shown by `farm report` (from --price or the settings), report.md
and the CSV; empty, never zero, where no price names the hardware; a malformed price is one line, exit 2."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import redis

from farm.reports.cost import parse_prices, price_of, with_costs
from farm.reports.markdown import summary_markdown
from farm.store import Store
from tests.helpers import store_finished_sweep, throwaway_redis, tight


def test_a_price_matches_the_most_specific_name_of_the_hardware() -> None:
    cell = {"hardware_key": "gpu:NVIDIA H100", "device_name": "NVIDIA H100", "host": "lab1", "device": "gpu"}
    assert price_of(cell, {"gpu": 2.0}) == 2.0
    assert price_of(cell, {"gpu": 2.0, "lab1": 3.0}) == 3.0
    assert price_of(cell, {"gpu": 2.0, "lab1": 3.0, "gpu:NVIDIA H100": 4.0}) == 4.0
    assert price_of(cell, {"cpu": 0.1}) is None


def test_prices_on_the_command_line_are_key_equals_dollars_per_hour() -> None:
    assert parse_prices(["gpu:NVIDIA H100=2.49", "cpu=0.1"]) == {"gpu:NVIDIA H100": 2.49, "cpu": 0.1}
    for bad in ("gpu", "=2", "gpu=two", "gpu=-1", "gpu=nan", "gpu=inf"):
        with pytest.raises(ValueError, match="KEY=USD_PER_HOUR"):
            parse_prices([bad])


def test_a_million_samples_cost_the_price_over_the_throughput() -> None:
    report = pd.DataFrame(
        {
            "device": ["cpu", "gpu"],
            "hardware_key": ["cpu:x", "gpu:H100"],
            "steady_samples_per_s_median": [1000.0, 10_000.0],
            "steady_samples_per_s_ci_low": [900.0, 9000.0],
            "steady_samples_per_s_ci_high": [1100.0, 11_000.0],
            "time_to_target_s_median": [math.nan, 360.0],
        }
    )
    priced = with_costs(report, {"gpu": 3.6})
    cpu, gpu = priced.to_dict("records")
    assert gpu["usd_per_million_samples"] == pytest.approx(3.6 / 3600 / 10_000 * 1e6)  # $0.10
    assert (
        gpu["usd_per_million_samples_ci_low"] < gpu["usd_per_million_samples"] < gpu["usd_per_million_samples_ci_high"]
    )
    assert gpu["usd_to_target"] == pytest.approx(0.36)
    assert math.isnan(cpu["usd_per_million_samples"]) and math.isnan(cpu["usd_to_target"])  # no price: no cost
    assert with_costs(report, {}) is report


@pytest.fixture(scope="module")
def priced_store() -> Iterator[dict[str, Any]]:
    with throwaway_redis(appendonly=False) as server:
        store = Store(redis.Redis.from_url(server.url, decode_responses=True))
        sid = store_finished_sweep(
            store, "priced", {("cpu", "jax"): tight(1000.0, 5), ("gpu", "jax"): tight(9000.0, 5)}
        )
        yield {"url": server.url, "sid": sid}
        store.r.close()


def test_farm_report_prices_from_the_flag_and_the_settings(
    priced_store: dict[str, Any], invoke: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url, sid = priced_store["url"], priced_store["sid"]
    out = tmp_path / "report.csv"
    flagged = invoke("report", sid, "--broker", url, "--price", "gpu=3.6", "-o", str(out))
    assert flagged.exit_code == 0, flagged.output
    assert "$/M samples" in flagged.output
    rows = pd.read_csv(out).set_index("device")
    assert rows.loc["gpu", "usd_per_million_samples"] == pytest.approx(3.6 / 3600 / 9000 * 1e6, rel=0.02)
    assert math.isnan(rows.loc["cpu", "usd_per_million_samples"])
    monkeypatch.setenv("FARM_PRICES", '{"cpu": 0.36}')
    both = invoke("report", sid, "--broker", url, "--price", "gpu=3.6", "-o", str(out))
    assert both.exit_code == 0, both.output
    rows = pd.read_csv(out).set_index("device")
    assert rows.loc["cpu", "usd_per_million_samples"] == pytest.approx(0.36 / 3600 / 1000 * 1e6, rel=0.02)
    bad = invoke("report", sid, "--broker", url, "--price", "gpu")
    assert bad.exit_code == 2 and "KEY=USD_PER_HOUR" in bad.output


def test_report_md_explains_the_cost_only_where_it_has_one() -> None:
    report = pd.DataFrame(
        {"workload": ["w"], "device": ["gpu"], "n": [5], "steady_samples_per_s_median": [100.0], "data": ["real"]}
    )
    assert "$/M samples" not in summary_markdown(report)
    md = summary_markdown(with_costs(report, {"gpu": 3.6}))
    assert " $/M samples |" in md and "**$/M samples**" in md
