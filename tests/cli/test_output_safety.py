"""Text from users, plugins and results is inert wherever the farm writes it.

Workload descriptions, units and parameters (plugins), device and host names, job errors (workers) reach the
terminal, Markdown files and CSV files. Each kind of output has one escaping function (farm.errors.escape for the
terminal, farm.safe_text.md_escape for Markdown, farm.safe_text.csv_safe for CSV), and every command goes through
it: no control character other than newline and tab on stdout/stderr, no rich markup read from a stranger's text,
no HTML or Markdown syntax in report.md, no formula in a CSV cell.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import redis
from pydantic import BaseModel, ConfigDict, Field
from typer.testing import Result

from farm import workloads
from farm.job import JobEnvelope, JobSpec
from farm.result import EpochRecord, JobResult, JobStatus
from farm.safe_text import csv_cell, csv_safe, md_escape
from farm.store import Store
from tests.helpers import REPO, wait_for

#: What a hostile tester puts in a description, a unit, an error, a host name: each must reach no output raw.
HOSTILE = {
    "clear screen": "\x1b[2J\x1b[H",
    "osc 8 link": "\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\",
    "osc 52 clipboard": "\x1b]52;c;ZWNobyBwd25lZA==\x07",
    "bell": "ding\x07",
    "carriage return": "all fine\rPWNED!!!",
    "c1 csi": "\x9b31mred",
    "bidi override": "abc\u202edcba",
    "rich markup": "[red]x[/red][link=https://evil.example]y[/link]",
    "html": "<script>alert(1)</script><img src=x onerror=alert(2)>",
    "markdown": "a|b `c` [l](javascript:alert(3)) **d** # e",
    "formula": '=HYPERLINK("https://evil.example","x")',
}
ALL = " ".join(HOSTILE.values())
#: Control characters (C0 but newline and tab, DEL, C1) and bidi/format characters that must never be printed.
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def assert_inert_on_terminal(text: str, what: str) -> None:
    found = CONTROL.findall(text)
    assert not found, f"{what}: control characters {found!r} in {text!r}"


# -- Markdown --------------------------------------------------------------------------------------------------
def markdown_is_inert(md: str) -> None:
    """No HTML tag, no code span, link or table cell opened by a stranger's text; no control character."""
    assert_inert_on_terminal(md.replace("\n", ""), "markdown")
    assert "<" not in md and ">" not in md.replace("&gt;", "")
    assert not re.search(r"(?<!\\)\[[^\]]*(?<!\\)\]\(", md), md  # no [text](url) link


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_md_escape_leaves_no_markup(name: str) -> None:
    text = md_escape(HOSTILE[name])
    markdown_is_inert(text)
    assert "\n" not in text
    assert not re.search(r"(?<!\\)[|`*\[\]]", text), text  # each of Markdown's characters behind a backslash


def test_md_escape_keeps_ordinary_names_readable() -> None:
    assert md_escape("fashion_mnist_mlp") == "fashion_mnist_mlp"
    assert md_escape("NVIDIA H100 80GB HBM3") == "NVIDIA H100 80GB HBM3"
    assert md_escape("# title") == "\\# title" and md_escape("> quote") == "&gt; quote"
    assert md_escape("_em_") == "\\_em\\_" and md_escape("a & b") == "a &amp; b"


def hostile_report() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sweep_id": [f"s-{i}" for i in range(2)],
            "workload": ["hostile", "hostile"],
            "params": ['{"label": ' + repr(ALL).replace("'", '"') + "}", '{"label": "plain"}'],
            "device": ["cpu", "gpu"],
            "backend": ["jax", "jax"],
            "batch_size": [32, 32],
            "device_name": [HOSTILE["html"], HOSTILE["markdown"] + "\nsecond line"],
            "data": [HOSTILE["rich markup"], "synthetic"],
            "n": [3, 3],
            "steady_samples_per_s_median": [-1.5, 2.0],
            "unit": [HOSTILE["html"], "a|b"],
        }
    )


def test_report_md_escapes_every_value_from_a_result(tmp_path: Path) -> None:
    from farm.reports.markdown import summary_markdown, write_summary_md

    report = hostile_report()
    md = summary_markdown(report, title=f"Benchmark report: {ALL}")
    table = [line for line in md.splitlines() if line.startswith("|")]
    cells = {len(re.split(r"(?<!\\)\|", line)) for line in table}
    assert len(cells) == 1, table  # no row gained a cell from a stranger's pipe
    assert len(table) == 2 + len(report)  # nor a line from a newline
    markdown_is_inert(md.replace("&gt;", ""))
    written = write_summary_md(tmp_path / "report.md", report, title="t").read_text()
    assert "<script" not in written and "<img" not in written


@pytest.mark.parametrize("tabulate", [False, True])
def test_every_md_frame_written_escapes_its_cells_and_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tabulate: bool
) -> None:
    """`-o x.md` of results, report and compare: farm.reports.tables.write_frame, with or without tabulate."""
    import importlib.util

    from farm.reports.files import write_frame

    if tabulate and importlib.util.find_spec("tabulate") is None:
        pytest.skip("tabulate is not installed")
    if not tabulate:
        real = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "tabulate" else real(n, *a))
    frame = hostile_report().rename(columns={"unit": HOSTILE["html"]})
    md = write_frame(frame, tmp_path / "x.md").read_text()
    markdown_is_inert(md)
    assert len(md.strip().splitlines()) == 2 + len(frame)


# -- CSV -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["=1+1", "+cmd|' /C calc'!A0", "-2+3+cmd", "@SUM(A1)", "\t=1", "\r=1", "=x\n"])
def test_a_formula_in_a_csv_cell_is_text(text: str) -> None:
    assert csv_cell(text) == "'" + text


@pytest.mark.parametrize("value", ["-1.5", "+3", "-1e5", "plain", "a=b", "", -1.5, -3, None, "1"])
def test_numbers_and_ordinary_text_stay_as_they_are(value: Any) -> None:
    assert csv_cell(value) == value


def test_every_csv_frame_written_is_neutralised(tmp_path: Path) -> None:
    from farm.reports.files import write_frame

    frame = pd.DataFrame({"error": ["=cmd()", "-x", "ok"], "delta": [-1.5, 2.0, -3.0], "=name": ["-1", "+2", "@x"]})
    back = pd.read_csv(write_frame(frame, tmp_path / "x.csv"), keep_default_na=False)
    assert list(back["error"]) == ["'=cmd()", "'-x", "ok"]
    assert list(back["delta"]) == [-1.5, 2.0, -3.0]  # negative numbers stay numbers
    assert list(back.columns) == ["error", "delta", "'=name"]
    assert list(back["'=name"]) == [-1, 2, "'@x"] or list(back["'=name"].astype(str)) == ["-1", "+2", "'@x"]
    assert csv_safe(frame) is not frame and list(frame["error"]) == ["=cmd()", "-x", "ok"]  # the input unchanged


# -- the terminal, and every file, through the real commands ---------------------------------------------------
class HostileParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str = Field(default=ALL, description=f"what it is: {ALL}")


@pytest.fixture
def hostile_workload() -> Iterator[str]:
    """A plugin workload whose description, unit, parameter default and parameter description are hostile."""
    saved = (dict(workloads._REGISTRY), dict(workloads._PLUGIN_ERRORS), workloads._plugins_loaded)
    base = workloads.get("cifar10_mlp")
    workloads.register(
        workloads.Workload(
            name="hostile",
            dataset="cifar10",
            params_model=HostileParams,
            build_model=lambda *a: None,
            prepare=lambda x, y: (x, y),
            description=f"a plugin's description: {ALL}",
            unit=HOSTILE["html"] + HOSTILE["osc 8 link"],
            data=base.data,
            package=f"evil-pkg {HOSTILE['rich markup']}",
            package_version=HOSTILE["clear screen"],
        )
    )
    workloads._PLUGIN_ERRORS["broken " + HOSTILE["osc 52 clipboard"]] = f"ImportError: {ALL}"
    try:
        yield "hostile"
    finally:
        workloads._REGISTRY.clear()
        workloads._REGISTRY.update(saved[0])
        workloads._PLUGIN_ERRORS.clear()
        workloads._PLUGIN_ERRORS.update(saved[1])
        workloads._plugins_loaded = saved[2]


def hostile_sweep(store: Store, name: str) -> str:
    """A finished sweep of the hostile workload: three succeeded repeats per device whose unit, device name,
    worker and host are hostile, and one failed job whose error is."""
    sweep_id = f"{name}-0123456789"
    envelopes, results = [], []
    for device in ("cpu", "gpu"):
        for i in range(4):
            job = JobSpec(sweep=name, workload="hostile", device=device, epochs=2, repeat=i, data="synthetic")
            env = JobEnvelope.for_job(job, sweep_id)
            envelopes.append(env)
            failed = device == "gpu" and i == 3
            results.append(
                JobResult(
                    job_id=env.job_id,
                    sweep_id=sweep_id,
                    job=job,
                    status=JobStatus.failed if failed else JobStatus.succeeded,
                    error=f"RuntimeError: {ALL}" if failed else None,
                    worker=f"w {HOSTILE['rich markup']} {HOSTILE['bell']}",
                    host=HOSTILE["carriage return"],
                    device_name=f"{HOSTILE['c1 csi']} {HOSTILE['bidi override']} {HOSTILE['rich markup']} a|b",
                    train_samples_used=1000,
                    unit=HOSTILE["html"],
                    test_accuracy=0.1,
                    epochs=[] if failed else [EpochRecord(epoch=k, wall_s=1.0 + 0.01 * i + k) for k in range(2)],
                )
            )
    store.save_sweep(sweep_id, {"sweep_id": sweep_id, "name": name, "jobs": len(envelopes)}, envelopes)
    for r in results:
        assert store.record_result(r)
    return sweep_id


def test_no_command_prints_a_strangers_control_characters_or_obeys_its_markup(
    redis_url: str,
    invoke: Callable[..., Result],
    hostile_workload: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FARM_BROKER_URL", redis_url)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    store = Store(client)
    a, b = hostile_sweep(store, "hostile-a"), hostile_sweep(store, "hostile-b")
    store.register_worker(
        f"evil {HOSTILE['rich markup']}",
        {"name": "evil", "host": ALL, "tags": [HOSTILE["clear screen"]], "quarantined": f"reason: {ALL}"},
    )
    commands = [
        ["status", a],
        ["workers"],
        ["results", a],
        ["report", a],
        ["compare", a, b],
        ["history", a, b],
        ["workloads"],
        ["workloads", hostile_workload],
    ]
    for args in commands:
        out = invoke(*args)
        assert out.exit_code in (0, 3), (args, out.output, out.exception)
        assert_inert_on_terminal(out.output, " ".join(args))
        assert HOSTILE["rich markup"] in out.output, (args, out.output)  # shown as it is: not read as markup
    files = {
        "report.md": ["report", a, "-o"],
        "results.md": ["results", a, "-o"],
        "compare.md": ["compare", a, b, "-o"],
        "results.csv": ["results", a, "-o"],
        "report.csv": ["report", a, "-o"],
        "compare.csv": ["compare", a, b, "-o"],
        "history.csv": ["history", a, b, "--csv"],
    }
    for name, args in files.items():
        out = invoke(*args, str(tmp_path / name))
        assert out.exit_code in (0, 3), (name, out.output, out.exception)
        text = (tmp_path / name).read_text()
        if name.endswith(".md"):
            markdown_is_inert(text)
        else:
            frame = pd.read_csv(tmp_path / name, dtype=str, keep_default_na=False)
            for column in frame.columns:
                assert not column.startswith(("=", "+", "@")), (name, column)
                bad = [v for v in frame[column] if v.startswith(("=", "+", "-", "@", "\t", "\r")) and not _number(v)]
                assert not bad, (name, column, bad)
    client.close()


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@pytest.mark.slow  # a real `farm worker` process
def test_the_workers_log_prints_no_strangers_control_characters(
    redis_url: str, tmp_path: Path, start_worker: Callable[..., Any]
) -> None:
    """`farm worker`'s output (its console lines and its log): a plugin that fails to load with a hostile error,
    and hostile messages on its queue (refused, their reasons logged), reach it only escaped."""
    import base64
    import json

    from farm.queue import make_app, publish
    from farm.settings import FarmSettings

    site = tmp_path / "site"
    info = site / "evil_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: evil-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{workloads.ENTRY_POINT_GROUP}]\nevil = evil_plugin:WORKLOAD\n")
    (site / "evil_plugin.py").write_text(f"raise RuntimeError({ALL!r})\n")

    queue = "farm.cpu"
    client = redis.Redis.from_url(redis_url)
    spec = JobSpec(sweep="evil", workload="fashion_mnist_mlp", data="synthetic", train_samples=64, test_samples=16)
    publish(make_app(FarmSettings(broker_url=redis_url), [queue]), [JobEnvelope.for_job(spec, "evil-1")], {})
    template = json.loads(client.rpop(queue) or b"{}")  # the farm's own message, taken back: a shape to bend
    worker = start_worker("safe-log", PYTHONPATH=f"{site}{os.pathsep}{REPO}")
    embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    body = json.dumps([[{ALL: ALL, "job_id": ALL}], {}, embed]).encode()
    hostile_body = dict(template, body=base64.b64encode(body).decode())
    hostile_task = json.loads(json.dumps(template))
    hostile_task["headers"]["task"] = ALL
    entries = [json.dumps(hostile_body), json.dumps(hostile_task), ALL.encode(), b"\x1b[2J\x9b\xff" + ALL.encode()]
    for raw in entries:
        client.lpush(queue, raw)
    wait_for(lambda: int(client.get("farm:rejected:count") or 0) >= 2, 60, "the hostile messages refused")
    time.sleep(1.0)  # the refusals' log lines written
    worker.stop()
    text = worker.text()
    assert "not loaded" in text and "refused" in text, text[-3000:]
    assert text.count("\\x1b") >= 2, text[-3000:]  # the hostile text did reach the output, escaped
    assert_inert_on_terminal(text, "farm worker's output")
    client.close()


def test_the_worker_log_formatter_escapes_messages_and_tracebacks() -> None:
    """What the worker logs (a job's error, a refusal's reason, a traceback quoting them) is escaped by the one
    formatter its logging is configured with (farm.safe_text.log_handler, in workers.worker and workers.fleet)."""
    import logging
    import sys

    from farm.safe_text import LOG_FORMAT, SafeLogFormatter, log_handler

    try:
        raise RuntimeError(ALL)
    except RuntimeError:
        info = sys.exc_info()
    record = logging.LogRecord("farm.worker", logging.ERROR, __file__, 1, "job %s failed: %s", ("j1", ALL), info)
    text = SafeLogFormatter(LOG_FORMAT).format(record)
    assert_inert_on_terminal(text, "a log line")
    assert "job j1 failed: \\x1b[2J" in text and "RuntimeError: \\x1b[2J" in text
    assert isinstance(log_handler().formatter, SafeLogFormatter)
