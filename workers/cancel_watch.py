"""Whether a running job's child should stop: its lease was lost, or its job (or sweep) was cancelled."""

from __future__ import annotations

import time
from collections.abc import Callable

from farm import defaults


class CancelWatch:
    """The supervisor's ``should_stop``, asked every 0.2 s while the child runs. A lost lease is answered at once;
    Redis is asked about a cancel at most every ``every_s`` (five times fewer commands per running job, which count
    on a farm of hundreds). A Redis that does not answer means not cancelled for now: it is asked again."""

    def __init__(
        self,
        cancelled: Callable[[], bool],
        lease_lost: Callable[[], bool],
        *,
        every_s: float = defaults.CANCEL_CHECK_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cancelled = cancelled
        self.lease_lost = lease_lost
        self.every_s = every_s
        self.clock = clock
        self.next_check = 0.0  # the clock's time before which Redis is not asked again

    def __call__(self) -> str | None:
        if self.lease_lost():
            return "lease_lost"
        now = self.clock()
        if now < self.next_check:
            return None
        self.next_check = now + self.every_s
        try:
            return "cancelled" if self.cancelled() else None
        except Exception:  # noqa: BLE001 - Redis restarting: not cancelled for now, asked again
            return None
