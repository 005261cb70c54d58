"""Text from strangers made safe for where it is written: Markdown files, CSV files (the terminal: ``errors.escape``).

Workload names, parameters, units, descriptions, errors, host and device names, sweep names come from users,
plugins and results. Written raw, they are markup: ``<img onerror=…>`` in a unit runs as HTML in a Markdown
viewer, a ``|`` splits a table cell, ``[x](javascript:…)`` forges a link; ``=HYPERLINK(…)`` in a CSV cell runs
as a formula when a spreadsheet opens the file; an ESC in a logged error drives the terminal that shows the log.
Each writer passes every such value through one function here: :func:`md_escape` for Markdown, :func:`csv_safe`
for CSV, :class:`SafeLogFormatter` for the worker's log. Light: no pandas at import.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from farm.errors import escape

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["LOG_FORMAT", "SafeLogFormatter", "csv_cell", "csv_safe", "log_handler", "md_escape"]

_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
# Backslash first (so the escapes added are not escaped again), then what makes code spans, emphasis,
# strikethrough, links and images, table cells; `_` only where it could open or close emphasis (not inside
# a word such as fashion_mnist_mlp).
_MD_PUNCT = re.compile(r"[\\`*~\[\]|]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")


def md_escape(value: Any) -> str:
    """``value`` as inert Markdown text on one line: non-printable characters (newlines, ESC, bidi overrides)
    written as their escapes (:func:`farm.errors.escape`), ``& < >`` as HTML entities, Markdown's own
    punctuation (`` ` * ~ [ ] | \\``, ``_`` at a word's edge, a leading ``#``) behind a backslash.

    Safe in a table cell, a heading and a paragraph alike; a viewer shows the text as it was given."""
    text = escape(str(value))
    text = _MD_PUNCT.sub(lambda m: "\\" + m.group(0), text)
    text = "".join(_HTML.get(ch, ch) for ch in text)
    return "\\" + text if text.startswith("#") else text


#: What a spreadsheet reads as the start of a formula (or DDE command) in a cell.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def csv_cell(value: Any) -> Any:
    """``value`` unless it is text a spreadsheet would run as a formula (it starts with ``= + - @``, a tab or a
    carriage return and is not a number): then ``'`` before it, which spreadsheets show as text. Numbers, and
    strings that are numbers (``-1.5``), pass unchanged."""
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _numeric(value):
        return "'" + value
    return value


def csv_safe(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with :func:`csv_cell` applied to every text cell and column name (numeric columns are left as they
    are); every CSV the farm writes goes through it. The frame given is not changed."""
    text_columns = [c for c in df.columns if df[c].dtype == object or str(df[c].dtype) in ("string", "str")]
    renamed = {c: csv_cell(c) for c in df.columns if isinstance(c, str) and csv_cell(c) != c}
    if not text_columns and not renamed:
        return df
    out = df.copy()
    for c in text_columns:
        out[c] = df[c].map(csv_cell)
    return out.rename(columns=renamed) if renamed else out


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""The worker's log line: when, how grave, which logger, what."""


class SafeLogFormatter(logging.Formatter):
    """A log formatter that writes no stranger's control characters: a job's error, a refused message's reason,
    a plugin's failure are logged by the worker, and its log is read on a terminal (``farm worker``, ``tail -f``).
    Every non-printable character but newline and tab is written as its escape (:func:`farm.errors.escape`), in
    the message and in a traceback alike."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape(super().formatMessage(record), keep="\n\t")

    def formatException(self, ei: Any) -> str:
        return escape(super().formatException(ei), keep="\n\t")

    def formatStack(self, stack_info: str) -> str:
        return escape(super().formatStack(stack_info), keep="\n\t")


def log_handler() -> logging.Handler:
    """A stderr handler with :class:`SafeLogFormatter` and :data:`LOG_FORMAT`, for ``logging.basicConfig``."""
    handler = logging.StreamHandler()
    handler.setFormatter(SafeLogFormatter(LOG_FORMAT))
    return handler
