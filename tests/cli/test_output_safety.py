"""Text from users, plugins and results is inert wherever the farm writes it.

Workload descriptions, units and parameters (plugins), device and host names, job errors (workers) reach the
terminal, Markdown files and CSV files. Each kind of output has one escaping function (farm.errors.escape for the
terminal, farm.safe_text.md_escape for Markdown, farm.safe_text.csv_safe for CSV), and every command goes through
it: no control character other than newline and tab on stdout/stderr, no rich markup read from a stranger's text,
no HTML or Markdown syntax in report.md, no formula in a CSV cell.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from farm.safe_text import csv_cell, csv_safe, md_escape

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
    from farm.summary_md import summary_markdown, write_summary_md

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
    """`-o x.md` of results, report and compare: farm.report.write_frame, with or without tabulate."""
    import importlib.util

    from farm.output import write_frame

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
    from farm.output import write_frame

    frame = pd.DataFrame({"error": ["=cmd()", "-x", "ok"], "delta": [-1.5, 2.0, -3.0], "=name": ["-1", "+2", "@x"]})
    back = pd.read_csv(write_frame(frame, tmp_path / "x.csv"), keep_default_na=False)
    assert list(back["error"]) == ["'=cmd()", "'-x", "ok"]
    assert list(back["delta"]) == [-1.5, 2.0, -3.0]  # negative numbers stay numbers
    assert list(back.columns) == ["error", "delta", "'=name"]
    assert list(back["'=name"]) == [-1, 2, "'@x"] or list(back["'=name"].astype(str)) == ["-1", "+2", "'@x"]
    assert csv_safe(frame) is not frame and list(frame["error"]) == ["=cmd()", "-x", "ok"]  # the input unchanged
