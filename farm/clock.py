"""The farm's one clock for moments that other hosts compare: the Redis server's.

Hosts' clocks disagree (a lab box without NTP, a laptop a minute off, a VM after a suspend). A moment one host
writes to Redis and another compares with its own "now" — a worker's registry expiry, a running job's
``heartbeat_at``, an outbox debt's or an in-flight message's age, a sweep's submission — is therefore stamped
and read on the Redis server's clock, the one clock every host shares. Leases and the reaper's lock need no
clock at all: they are server-side TTLs.

Reading ``TIME`` before every stamp would double the farm's round trips, so a :class:`ServerClock` keeps the
offset between the server's clock and this host's (measured with one ``TIME``, to within half a round trip)
and adds it to the local clock; it measures again once the offset is :data:`farm.defaults.CLOCK_REFRESH_S`
old (a worker's heartbeat reads it far more often, so a long-lived process follows a stepped host clock within
that). A short command reads ``TIME`` once. Durations measured inside one process (``time.monotonic``) and
moments recorded only for people inside a result (its timeline) stay on the local clock.

The local clock is injectable (``local=``) so that tests can run a store whose host is minutes or hours off.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from farm import defaults


class ServerClock:
    """The Redis server's time, as this host's clock plus a measured offset."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        local: Callable[[], float] = time.time,
        refresh_s: float = defaults.CLOCK_REFRESH_S,
    ) -> None:
        self.client = client
        self.local = local
        self.refresh_s = refresh_s
        self._offset: float | None = None
        self._measured_at = 0.0  # time.monotonic() of the last measurement

    def measure(self) -> float:
        """Read the server's ``TIME`` once and keep ``server - local`` (taken at the middle of the round trip)."""
        before = self.local()
        seconds, micros = self.client.time()
        after = self.local()
        self._offset = seconds + micros / 1e6 - (before + after) / 2
        self._measured_at = time.monotonic()
        return self._offset

    @property
    def offset(self) -> float:
        """Seconds to add to this host's clock to read the server's (measured again when it is old). Once known,
        an offset that cannot be measured again (Redis restarting) is kept and tried again ``refresh_s`` later:
        stamping a heartbeat or a progress event must not fail for it."""
        if self._offset is None:
            return self.measure()
        if time.monotonic() - self._measured_at > self.refresh_s:
            try:
                return self.measure()
            except redis.RedisError:
                self._measured_at = time.monotonic()
        return self._offset

    def now(self) -> float:
        """The server's time now, in epoch seconds."""
        return self.local() + self.offset
