"""Connecting to the farm's Redis, and saying in one line why it failed: not there, not answering, not Redis,
wrong credentials, TLS on one side only. Nothing here knows the farm's keys."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import redis

from farm import defaults
from farm.errors import FarmUnavailable
from farm.settings import FarmSettings, mask_url, tls_files_missing


def connect(settings: FarmSettings, *, timeout: float = defaults.BROKER_CONNECT_TIMEOUT_S) -> redis.Redis:
    """A client for the farm's Redis that fails fast and clearly when the server is not there.

    Every reply is awaited at most ``settings.redis_timeout_s``: a stopped or wedged server accepts connections
    and never answers, and would otherwise hang every command. The first ping is tried once, without the
    client's retries (which would multiply the wait), and a server that does not answer is told apart from one
    that cannot be reached.
    """
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    where = mask_url(settings.broker_url)
    missing = tls_files_missing(settings.broker_url)
    if missing:
        raise FarmUnavailable(f"cannot connect to Redis at {where}: {missing}")
    retry = Retry(NoBackoff(), 1)  # what redis-py's from_url gives with retry_on_timeout: one more try
    client = redis.Redis.from_url(
        settings.broker_url,
        socket_connect_timeout=timeout,
        socket_timeout=settings.redis_timeout_s,
        decode_responses=True,
        health_check_interval=30,
        retry_on_timeout=True,
        retry=retry,
    )
    client.set_retry(Retry(NoBackoff(), 0))
    try:
        client.ping()
    except redis.AuthenticationError as e:
        hint = "" if "@" in where else "; it wants a password: give it in the broker URL, as :PASSWORD@ before the host"
        raise FarmUnavailable(f"Redis at {where} refused the credentials: {str(e).rstrip('.')}{hint}") from None
    except (redis.InvalidResponse, redis.ResponseError) as e:  # a reply that is not Redis' (HTTP, SSH, …)
        raise FarmUnavailable(not_redis(where, e)) from None
    except redis.TimeoutError as e:
        if "connecting" not in str(e):  # connected, then no reply: redis-py says "Timeout reading from ..."
            raise FarmUnavailable(
                f"Redis at {where} did not answer within {settings.redis_timeout_s:g} s: it "
                "accepts connections but does not reply (stopped, overloaded or hung?)"
            ) from None
        if settings.broker_url.startswith("rediss://") and tcp_reachable(settings.broker_url, timeout):
            raise FarmUnavailable(
                f"cannot reach Redis at {where}: the TLS handshake did not complete within {timeout:g} s: does the "
                "server speak TLS on that port? Use redis:// for a server without TLS"
            ) from None
        raise FarmUnavailable(
            f"cannot reach Redis at {where}: no connection within {timeout:g} s. Start a Redis "
            "server, set FARM_BROKER_URL or pass --broker, or use `farm run` for the embedded "
            "default."
        ) from None
    except (redis.ConnectionError, OSError) as e:
        tls = tls_trouble(settings.broker_url, e)
        if tls:
            raise FarmUnavailable(f"cannot reach Redis at {where}: {tls}") from None
        raise FarmUnavailable(
            f"cannot reach Redis at {where}: {str(e).rstrip('.')}. Start a Redis server, "
            "set FARM_BROKER_URL or pass --broker, or use `farm run` for the embedded "
            "default."
        ) from None
    client.set_retry(retry)  # from here on, commands ride out a blip as before
    return client


def tcp_reachable(url: str, timeout: float) -> bool:
    """Whether a plain TCP connection to the URL's host and port opens within ``timeout``. A ``rediss://``
    connection that timed out may have stalled in the TLS handshake (the server does not speak TLS) or never
    reached the host at all (down, cut off, firewalled): only the second fails this."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "localhost", parts.port or 6379), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def not_redis(where: str, e: BaseException) -> str:
    """One line for a service on the broker's port that does not speak Redis (or refuses the farm's commands)."""
    if isinstance(e, redis.ResponseError) and not isinstance(e, redis.InvalidResponse):
        return f"Redis at {where} refused the farm's first command: {str(e).splitlines()[0][:200]}"
    return (
        f"the service at {where} does not speak the Redis protocol ({str(e).splitlines()[0][:200]}): "
        "is it the right host and port? Set FARM_BROKER_URL or pass --broker"
    )


def tls_trouble(url: str, e: BaseException) -> str | None:
    """What a failed connection says about TLS, in words: a ``rediss://`` URL to a server without TLS, or a plain
    ``redis://`` URL to a server that wants TLS; None when TLS is not the trouble."""
    text = str(e).rstrip(".")
    if url.startswith("rediss://"):
        if "SSL" in text or "TLS" in text or "EOF" in text or "certificate" in text:
            return (
                f"the TLS handshake failed ({text[:200]}): does the server speak TLS on that port? "
                "Use redis:// for a server without TLS"
            )
        return None
    if "Connection closed by server" in text:
        return "the server closed the connection at once: if it wants TLS, use a rediss:// URL"
    return None
