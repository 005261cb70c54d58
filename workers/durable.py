"""Steps the farm must not lose through a Redis restart, a full Redis or a failover: what they wait out, and how
long (redis-py's Retry with exponential backoff). The executor runs each such step whole again until it goes
through (:meth:`workers.execute.JobExecutor._resilient`)."""

from __future__ import annotations

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry


class WrongTypeRepaired(redis.RedisError):
    """A step met a key of the wrong type, which was moved away: the step is tried again."""


RETRIED = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.BusyLoadingError,
    redis.OutOfMemoryError,
    redis.ReadOnlyError,
    WrongTypeRepaired,
    OSError,
)
"""What a step the farm must not lose waits out: Redis away, loading, full, read-only (a failover), or a key of
the wrong type that was just moved away."""


def durable_retry(seconds: float) -> Retry:
    """redis-py's Retry for steps that must outlast a Redis restart, a full Redis or a failover: about
    ``seconds`` of attempts."""
    backoff = ExponentialBackoff(cap=5.0, base=0.2)
    retries = max(1, int(seconds / 5.0) + 5)  # 0.2 + 0.4 + ... reaches the 5 s cap after five tries
    return Retry(backoff, retries, supported_errors=RETRIED)
