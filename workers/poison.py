"""Where the admission check runs, so that no queue entry can end, hang or bloat a worker.

Three layers, each for a reason found by pushing entries onto a farm queue by hand (Celery/kombu 5.7):

- **The transport.** kombu's Redis channel pops an entry (``BRPOP``/``RPOP``), decodes it and hands it to the
  consumer, which puts it in Redis' ``unacked`` hash and only then lets Celery look at it. An entry Celery
  chokes on there ended the worker, and kombu restored it to the queue at shutdown, so every worker started
  after it died too. :class:`GuardedChannel` runs :func:`workers.intake.admit` on the raw bytes between the
  pop and the hand-over: a refused entry is recorded and dropped; it never entered ``unacked``, so nothing
  can restore it. The worker process (only it: submitters never consume) installs :class:`GuardedTransport`
  for the ``redis``/``rediss`` schemes through kombu's transport alias registry. The worker consumes farm
  queues only (control messages arrive by pub/sub, which this does not touch); any other queue consumed in
  this process, such as a reply queue, would have every entry refused.
- **The consumer.** :class:`FarmConsumer` keeps a task strategy for ``farm.run_job`` only, so Celery's
  built-in tasks (``celery.accumulate``, ``celery.backend_cleanup``, ...) cannot run here even if a message
  naming one got past the transport, and it records every message Celery itself refuses.
- **The job executor** validates the envelope once more (``workers.execute``).

A refusal is logged and recorded (the store's ``rejected`` list and its total); a failure to record (Redis
down) is logged and the worker keeps serving.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from queue import Empty
from typing import Any

import kombu.transport
from celery.worker.consumer import Consumer
from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str

from farm.queue import TASK_NAME
from workers import intake

log = logging.getLogger("farm.worker")

EXCERPT_BYTES = 2048
"""How much of a refused entry is kept for inspection."""
GUARDED_TRANSPORT = "workers.poison:GuardedTransport"
GUARDED_SCHEMES = ("redis", "rediss")
"""kombu's transport names for the farm's broker URLs (``redis+socket://`` is the ``redis`` transport)."""


@dataclass(frozen=True)
class Refusal:
    """One refused message: why, from which queue, its size and the first :data:`EXCERPT_BYTES` of it."""

    reason: str
    queue: str
    excerpt: bytes
    size: int


def _ignore(refusal: Refusal) -> None:
    """The recorder until the worker sets one."""


_recorder: Callable[[Refusal], object] = _ignore


def set_recorder(record: Callable[[Refusal], object]) -> None:
    """Where refusals are reported (the worker points this at the store's ``rejected`` list)."""
    global _recorder
    _recorder = record


def refuse(reason: str, queue: str = "", raw: bytes | str = b"") -> None:
    """Log and record one refused message; never raises."""
    data = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else bytes(raw)
    log.error("refused a message on %s (%d bytes): %s", queue or "?", len(data), reason)
    try:
        _recorder(Refusal(reason, queue, data[:EXCERPT_BYTES], len(data)))
    except Exception as e:  # noqa: BLE001 - Redis may be down: recording must never take the worker down
        log.warning("could not record the refused message: %s", e)


def admitted(raw: bytes | str, queue: str) -> dict[str, Any] | None:
    """The message if it passes the admission check; None (refused, recorded) otherwise. Never raises."""
    try:
        return intake.admit(raw, queue)
    except intake.Refused as e:
        refuse(str(e), queue, raw)
    except Exception as e:  # noqa: BLE001 - a bug in the check must not end the worker either
        refuse(f"the admission check failed on it ({type(e).__name__}): refused", queue, raw)
    return None


class GuardedChannel(kombu_redis.Channel):
    """kombu's Redis channel, except that each popped entry passes :func:`admitted` before it is delivered.

    The two methods are kombu 5.7's own, with the check between the pop and ``_deliver``."""

    def _brpop_read(self, **options: Any) -> bool:
        try:
            try:
                dest__item = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                # if there's a ConnectionError, disconnect so the next iteration will reconnect automatically.
                self.client.connection.disconnect()
                raise
            if not dest__item:
                raise Empty()
            dest, item = dest__item
            dest = bytes_to_str(dest).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            message = admitted(item, dest)
            if message is None:
                raise Empty()  # popped and refused: it never entered ``unacked``, so nothing restores it
            self.connection._deliver(message, dest)
            return True
        finally:
            self._in_poll = None  # type: ignore[assignment]  # kombu 5.7's own line; its attribute says bool
            self._flush_brpop_reauth()

    def _get(self, queue: str) -> dict[str, Any]:  # type: ignore[override]  # kombu 5.7's Redis signature
        with self.conn_or_acquire() as client:
            for pri in self.priority_steps:
                item = client.rpop(self._q_for_pri(queue, pri))
                if item:
                    self._maybe_update_queues_expire(client, queue)
                    message = admitted(item, queue)
                    if message is None:
                        raise Empty()
                    return message
            self._maybe_update_queues_expire(client, queue)
            raise Empty()


class GuardedTransport(kombu_redis.Transport):
    """kombu's Redis transport with the guarded channel."""

    Channel = GuardedChannel


def install_transport_guard() -> None:
    """Make every kombu connection this process opens to Redis from now on use :class:`GuardedTransport`.

    Through kombu's documented alias registry; the resolved-class cache is cleared for the same names in case
    a connection was made before (the worker installs this before it makes any)."""
    for scheme in GUARDED_SCHEMES:
        kombu.transport.TRANSPORT_ALIASES[scheme] = GUARDED_TRANSPORT
        kombu.transport._transport_cache.pop(scheme, None)


def _header(message: Any, key: str) -> Any:
    headers = getattr(message, "headers", None)
    return headers.get(key) if isinstance(headers, dict) else None


def _describe(message: Any) -> tuple[str, bytes]:
    """(queue, raw) of a message Celery refused, for the record; never raises."""
    try:
        info = message.delivery_info if isinstance(message.delivery_info, dict) else {}
        raw = getattr(message, "_raw", None)
        return str(info.get("routing_key") or ""), (
            json.dumps(raw, default=repr).encode() if raw is not None else bytes(message.body or b"")
        )
    except Exception:  # noqa: BLE001 - a description must never raise (see above)
        return "", b""


def _reject(message: Any, connection_errors: tuple[type[BaseException], ...]) -> None:
    """Take a refused message off the broker for good (no requeue); never raises."""
    try:
        message.reject_log_error(log, connection_errors)
    except Exception as e:  # noqa: BLE001 - a rejection must never raise (see above)
        log.warning("could not reject a refused message: %s", e)


class FarmConsumer(Consumer):
    """Celery's consumer with one task strategy, ``farm.run_job``, recording every message it refuses.

    The hooks refuse without Celery's result-backend and event side effects, and never raise: an exception
    here would end the worker."""

    def update_strategies(self) -> None:
        super().update_strategies()
        for name in [n for n in self.strategies if n != TASK_NAME]:
            del self.strategies[name]  # Celery's built-in tasks are registered but unreachable from a message

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        queue, raw = _describe(message)
        refuse(f"a task this worker does not run: {intake.show(_header(message, 'task'))}", queue, raw)
        _reject(message, self.connection_errors)

    def on_unknown_message(self, body: Any, message: Any) -> None:
        queue, raw = _describe(message)
        refuse("a message that is not a Celery task", queue, raw)
        _reject(message, self.connection_errors)

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        queue, raw = _describe(message)
        refuse(f"a malformed task message: {intake.show(str(exc))}", queue, raw)
        _reject(message, self.connection_errors)

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        queue, raw = _describe(message)
        refuse(
            f"an undecodable message of type {intake.show(getattr(message, 'content_type', None))}: "
            f"{intake.show(str(exc))}",
            queue,
            raw,
        )
        try:
            message.ack()
        except Exception as e:  # noqa: BLE001 - the broker may be gone: the worker stays up
            log.warning("could not acknowledge an undecodable message: %s", e)
