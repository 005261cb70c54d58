"""Keeping a job's lease while its run goes on: the heartbeat that renews it, the keep-alive that tells the child.

The heartbeat renews the lease every ``heartbeat_s`` on a thread of its own and notes when it last did; a
renewal refused (another holder took the job over) stops it and names the new holder. The keep-alive pings the
child on a thread of its own too, so that a slow Redis reply never delays a ping, and only while the lease was
renewed within a lease: a worker cut off from Redis stops pinging, and its child stops itself a keep-alive
timeout later. Each takes its interval and clock, so that a test can drive one tick at a time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from farm.ledger import Lease, Ledger
from workers.ticker import Ticker

log = logging.getLogger("farm.worker")


class Heartbeat(Ticker):
    """Renews ``lease`` every ``interval_s`` until stopped or until the job was taken over.

    ``on_renewed`` runs after each renewal (the job's progress heartbeat); an error from Redis is logged at
    ``log_level`` and the next beat tries again: a Redis restart shorter than a lease costs nothing, the renewal
    that then succeeds takes the lease back if nobody took the job meanwhile."""

    def __init__(
        self,
        ledger: Ledger,
        lease: Lease,
        ttl_s: float,
        interval_s: float,
        *,
        on_renewed: Callable[[], object] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        log_level: int = logging.WARNING,
    ) -> None:
        super().__init__(self.beat, interval_s)
        self.ledger = ledger
        self.lease = lease
        self.ttl_s = ttl_s
        self.on_renewed = on_renewed
        self.clock = clock
        self.log_level = log_level
        self.renewed_at = clock()  # taking the lease counts as its first renewal
        self.lost_to: str | None = None  # who holds the job now, once a renewal was refused

    @property
    def lost(self) -> bool:
        return self.lost_to is not None

    def beat(self) -> bool:
        """One renewal; returns whether to go on beating (False once the lease is lost)."""
        try:
            if not self.ledger.renew(self.lease, self.ttl_s):
                self.lost_to = self.ledger.holder(self.lease.job_id) or "the reaper"
                return False  # taken over: stop, record nothing
            self.renewed_at = self.clock()
            self.on_renewed()
        except Exception as e:  # noqa: BLE001 - Redis restarting: keep training, keep trying
            log.log(self.log_level, "heartbeat for job %s failed: %s", self.lease.job_id, e)
        return True


class KeepAlive(Ticker):
    """Pings the child (every callable in ``pings``, which the supervisor fills once the child is up) every
    ``interval_s`` while ``heartbeat`` renewed the lease within ``ttl_s``; ends when the lease is lost.

    If the worker is paused or hung, or the lease has not been renewed for a whole lease (the worker is cut off
    from Redis, or Redis is down), the pings stop and the child stops itself a keep-alive timeout later: a
    cut-off run is over within about two leases, not whenever the link comes back."""

    def __init__(
        self,
        heartbeat: Heartbeat,
        pings: list[Callable[[], None]],
        ttl_s: float,
        interval_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(self.tick, interval_s)
        self.heartbeat = heartbeat
        self.pings = pings
        self.ttl_s = ttl_s
        self.clock = clock

    def tick(self) -> bool:
        """Ping the child if the lease is fresh; returns whether to go on (False once the lease is lost)."""
        if self.heartbeat.lost:
            return False
        if self.clock() - self.heartbeat.renewed_at < self.ttl_s:
            for ping in self.pings:
                ping()
        return True
