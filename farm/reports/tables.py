"""Writing a frame to a file's format: what ``-o`` and the report's CSVs go through.

* :func:`write_frame` — CSV / JSON / Markdown / Parquet by the path's suffix (the text cells a spreadsheet would
  run as a formula defused, Markdown escaped); :func:`farm.reports.files.write_frame` calls it to write atomically.
* :func:`markdown_table` — the plain pipe table used when ``tabulate`` is not installed.

Kept apart from the statistics so that rendering a frame loads pandas and :mod:`farm.safe_text` only.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def _cell_text(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return ""
    if isinstance(v, (float, np.floating)):
        return f"{v:.6g}"
    from farm.safe_text import md_escape  # workload names, params, units, errors: strangers' text

    return md_escape(v)


def markdown_table(df: pd.DataFrame) -> str:
    """A plain pipe table (what :func:`write_frame` uses when ``tabulate`` is not installed); every text cell and
    column name escaped (farm.safe_text.md_escape)."""
    from farm.safe_text import md_escape

    cols = [md_escape(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False, name=None):
        lines.append("| " + " | ".join(_cell_text(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def write_frame(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` by the path's suffix: ``.csv`` (also when there is no suffix), ``.json`` (a list of
    records, NaN → null), ``.md`` (markdown table), ``.parquet`` (needs pyarrow). Returns the path."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in ("", ".csv"):
        from farm.safe_text import csv_safe  # no text cell a spreadsheet would run as a formula

        csv_safe(df).to_csv(path, index=False)
    elif suffix == ".json":
        df.to_json(path, orient="records", indent=2)
    elif suffix == ".md":
        if importlib.util.find_spec("tabulate") is not None:
            from farm.safe_text import md_escape

            escaped = df.map(lambda v: md_escape(v) if isinstance(v, str) else v)
            text = escaped.rename(columns=md_escape).to_markdown(index=False) + "\n"
        else:
            text = markdown_table(df)
        path.write_text(text, encoding="utf-8")
    elif suffix == ".parquet":
        if importlib.util.find_spec("pyarrow") is None:
            raise RuntimeError(
                f"cannot write {path}: .parquet needs pyarrow (pip install pyarrow); "
                "or write .csv, .json or .md instead"
            )
        frame = df.copy()
        for col in frame.columns[frame.dtypes == np.dtype(object)]:  # e.g. jit_compile mixes True/False and 'auto'
            frame[col] = frame[col].map(lambda v: v if isinstance(v, str) or pd.isna(v) else str(v))
        frame.to_parquet(path, index=False)
    else:
        raise ValueError(f"cannot write {path}: unknown suffix {suffix!r} (use .csv, .json, .md or .parquet)")
    return path
