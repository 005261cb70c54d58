"""A step run every interval on a daemon thread of its own: the shape the lease's heartbeat and the child's
keep-alive share, so that how they start, wait and stop is written once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Self


class Ticker:
    """Calls ``step`` every ``interval_s`` on a daemon thread until stopped, or until ``step`` returns False.

    The wait comes before each step: the step's first run is one interval after ``start``, as a lease just taken
    or a child just started needs nothing sooner. A daemon thread, so that a step stuck on Redis never holds the
    worker's exit."""

    def __init__(self, step: Callable[[], bool], interval_s: float) -> None:
        self.step = step
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        """Step every interval until stopped or until a step says to end (the thread's body)."""
        while not self._stop.wait(self.interval_s):
            if not self.step():
                return

    def start(self) -> Self:
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()
        return self

    def stop(self, *, wait: bool = True) -> None:
        """Stop stepping; ``wait``: until the thread has ended (at most 5 s: a step may be waiting on Redis)."""
        self._stop.set()
        if wait and self._thread is not None:
            self._thread.join(timeout=5)
