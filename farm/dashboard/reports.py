"""The report, compare and history pages as the dashboard serves them: the very HTML that ``farm report --html``,
``farm compare --html`` and ``farm history --html`` write, from the same frames (a sweep's stored rows,
``farm.rowstore.sweep_columns`` → ``farm.reports.aggregate.columns_frame``), returned as strings
(``report_html``, ``compare_html``, ``history_html``), never written to a file.

Drawing a page costs seconds for a big sweep (statistics, bootstrap intervals, matplotlib), so a drawn page is
kept with the signature of the data it was drawn from (its sweeps' per-state counts): a settled sweep's page is
drawn once and served until its counts move; a live sweep's page is drawn again at most every
``REDRAW_S`` seconds, however often its page refreshes. One page is drawn at a time: the dashboard never takes
more than one core for drawing, and browsers that ask meanwhile wait for that drawing rather than start their
own. pandas and matplotlib are imported on the first page drawn, not when the dashboard starts.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

from farm.dashboard.counts import Counts
from farm.store import Store

if TYPE_CHECKING:
    import pandas as pd

#: A live sweep's report (or a comparison or history that includes one) is drawn again at most this often.
REDRAW_S = 30.0
#: Drawn pages kept (a report of 5,000 jobs is about a megabyte).
KEPT_PAGES = 16
#: Sweeps a history page lines up at most (the newest of that name).
MAX_HISTORY_SWEEPS = 50
#: The defaults of ``farm compare`` and ``farm history``.
COMPARE_METRIC = "steady_samples_per_s"
THRESHOLD = 0.05
WINDOW = 5


class BadRequest(ValueError):
    """A page asked for with parameters it cannot be drawn from (an unknown metric, a column a sweep lacks)."""


def signature(counts: Counts) -> tuple[int, tuple[tuple[str, int], ...]]:
    """What a drawn page depends on: the sweep's jobs by state (a new result moves them)."""
    return counts.total, tuple(sorted(counts.by_state.items()))


class DrawnPages:
    """Pages by key, each with the signature it was drawn for and when it was drawn."""

    def __init__(self, size: int = KEPT_PAGES, clock: Callable[[], float] = time.monotonic) -> None:
        self.size, self.clock = size, clock
        self._kept: OrderedDict[Hashable, tuple[Hashable, str, float]] = OrderedDict()
        self._lock = threading.Lock()  # the cache's own bookkeeping
        self._drawing = threading.Lock()  # one page drawn at a time

    def get(self, key: Hashable, sig: Hashable, draw: Callable[[], str], *, live: bool) -> tuple[str, float]:
        """The page for ``key`` and when it was drawn (``time.time()``): the kept one if it was drawn for
        ``sig``, or if it is live and younger than ``REDRAW_S``; else drawn now (a kept page is served while
        another is being drawn)."""
        kept = self._kept_page(key, sig, live)
        if kept is not None:
            return kept
        with self._drawing:
            kept = self._kept_page(key, sig, live)  # drawn meanwhile, for a request that came first
            if kept is not None:
                return kept
            page = draw()
            with self._lock:
                self._kept[key] = (sig, page, self.clock())
                self._kept.move_to_end(key)
                while len(self._kept) > self.size:
                    self._kept.popitem(last=False)
            return page, time.time()

    def _kept_page(self, key: Hashable, sig: Hashable, live: bool) -> tuple[str, float] | None:
        with self._lock:
            kept = self._kept.get(key)
            if kept is None:
                return None
            old_sig, page, at = kept
            age = self.clock() - at
            if old_sig != sig and not (live and age < REDRAW_S):
                return None
            self._kept.move_to_end(key)
            return page, time.time() - age


class ReportPages:
    """The drawn pages of one store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.pages = DrawnPages()

    def frame(self, sweep_id: str) -> pd.DataFrame:
        """The sweep's tidy results frame, read as ``farm report`` reads it."""
        from farm.reports.aggregate import columns_frame
        from farm.rowstore import sweep_columns

        return columns_frame(sweep_columns(self.store, sweep_id))

    def sweep_report(self, sweep_id: str, counts: Counts) -> tuple[str, float]:
        """The sweep's HTML report (``farm report SWEEP --html``'s page) and when it was drawn. Raises
        :class:`farm.reports.html_page.PlotExtraMissing` without matplotlib."""

        def draw() -> str:
            from farm.reports.aggregate import aggregate
            from farm.reports.html_sweep import report_html
            from farm.reports.markdown import report_title

            frame = self.frame(sweep_id)
            return report_html(aggregate(frame), frame, title=report_title(frame))

        _require_plotting()
        return self.pages.get(("report", sweep_id), signature(counts), draw, live=not counts.settled)

    def compare(self, a: str, b: str, counts: tuple[Counts, Counts], metric: str = COMPARE_METRIC) -> str:
        """``farm compare A B --html``'s page (its defaults: threshold 0.05, invalid repeats left out)."""
        from farm.reports.compare import higher_is_better

        try:
            higher_is_better(metric)
        except ValueError as e:
            raise BadRequest(str(e)) from None

        def draw() -> str:
            from farm.reports.compare import compare
            from farm.reports.html_compare import compare_html

            df_a, df_b = self.frame(a), self.frame(b)
            for label, df in (("A", df_a), ("B", df_b)):
                if metric not in df.columns:
                    raise BadRequest(f"sweep {label} has no column {metric!r}")
            try:
                cmp = compare(df_a, df_b, metric=metric, threshold=THRESHOLD)
            except ValueError as e:
                raise BadRequest(str(e)) from None
            return compare_html(cmp, title=f"farm compare: {a} (A) → {b} (B), {metric}")

        _require_plotting()
        sig = (signature(counts[0]), signature(counts[1]))
        live = not (counts[0].settled and counts[1].settled)
        return self.pages.get(("compare", a, b, metric), sig, draw, live=live)[0]

    def history(self, name: str, sweep_ids: list[str], counts: list[Counts]) -> str:
        """``farm history NAME --html``'s page for these sweeps (in time order; its defaults: threshold 0.05,
        window 5)."""

        def draw() -> str:
            from farm.reports.history import history_frame
            from farm.reports.html_history import history_html

            frames = [(sid, self.frame(sid)) for sid in sweep_ids]
            try:
                history = history_frame(frames, threshold=THRESHOLD, window=WINDOW)
            except ValueError as e:
                raise BadRequest(str(e)) from None
            many = f"benchfarm history: {len(sweep_ids)} sweep(s), {sweep_ids[0]} … {sweep_ids[-1]}"
            return history_html(history, title=many if len(sweep_ids) > 1 else sweep_ids[0])

        _require_plotting()
        sig: Any = tuple(signature(c) for c in counts)
        live = not all(c.settled for c in counts)
        return self.pages.get(("history", name, tuple(sweep_ids)), sig, draw, live=live)[0]


def _require_plotting() -> None:
    from farm.reports.html_page import require_plotting

    require_plotting()
