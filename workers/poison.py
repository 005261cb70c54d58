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

**Keys of the wrong Redis type.** Anyone who can write to Redis can put a string, hash, set... where kombu
keeps a queue (``farm.cpu``, its priority lists ``farm.cpu\x06\x16N``), its ``unacked`` hash, ``unacked_index``
zset, ``unacked_mutex`` lock or a ``_kombu.binding.*`` set. Every command on it answers ``WRONGTYPE``: kombu let
that end the consumer, and since the key stays, every worker started afterwards died too. The guarded channel
treats such a key as a refused entry: it is renamed to ``P:quarantined:KEY:MS`` (Redis and the operator keep its
data; the farm recreates the queue on its next push), the refusal is recorded naming the key and its type, and
consuming goes on; a key that cannot be renamed (an ACL that forbids it) is left out of the polled keys for
:data:`farm.defaults.WRONG_TYPE_RECHECK_S` and looked at again. Any other Redis error reply on the consumer's
path (a full Redis, a refused command) is logged and waited out, never the end of the consumer.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from queue import Empty
from typing import Any, TypeVar

import kombu.transport
import redis
from celery.worker.consumer import Consumer
from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str

from farm import defaults
from farm.errors import escape
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
_key_prefix = defaults.KEY_PREFIX


def set_recorder(record: Callable[[Refusal], object], *, prefix: str = defaults.KEY_PREFIX) -> None:
    """Where refusals are reported (the worker points this at the store's ``rejected`` list), and the farm's key
    prefix, under which wrong-typed keys are kept (``P:quarantined:...``)."""
    global _recorder, _key_prefix
    _recorder = record
    _key_prefix = prefix


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
        return intake.admit(raw, queue, _key_prefix)  # the farm's prefix names the job's own queue
    except intake.Refused as e:
        refuse(str(e), queue, raw)
    except Exception as e:  # noqa: BLE001 - a bug in the check must not end the worker either
        refuse(f"the admission check failed on it ({type(e).__name__}): refused", queue, raw)
    return None


T = TypeVar("T")


def wrong_type(e: BaseException) -> bool:
    """Whether a Redis error reply says a key holds another type than the command works on (``WRONGTYPE``; inside
    a pipeline redis-py puts it after the command's description)."""
    return isinstance(e, redis.ResponseError) and "WRONGTYPE" in str(e)


def _text(value: Any) -> str:
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else str(value)


class GuardedQoS(kombu_redis.QoS):
    """kombu's ack emulation (the ``unacked`` hash, the ``unacked_index`` zset and their mutex), repairing a
    wrong-typed key and trying once more instead of letting ``WRONGTYPE`` end the consumer; the periodic restore
    of unacknowledged messages also outlives any other Redis error reply (it runs again later)."""

    channel: GuardedChannel

    def append(self, message: Any, delivery_tag: Any) -> None:
        self.channel.repaired(lambda: super(GuardedQoS, self).append(message, delivery_tag))

    def ack(self, delivery_tag: Any) -> None:
        self.channel.repaired(lambda: super(GuardedQoS, self).ack(delivery_tag))

    def reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        self.channel.repaired(lambda: super(GuardedQoS, self).reject(delivery_tag, requeue))

    def restore_by_tag(self, tag: Any, client: Any = None, leftmost: bool = False) -> None:
        self.channel.repaired(lambda: super(GuardedQoS, self).restore_by_tag(tag, client, leftmost))

    def restore_visible(self, start: int = 0, num: int = 10, interval: int = 10) -> None:
        try:
            self.channel.repaired(lambda: super(GuardedQoS, self).restore_visible(start, num, interval))
        except redis.ResponseError as e:
            self.channel.note_error(e, "restore unacknowledged messages")


class GuardedChannel(kombu_redis.Channel):
    """kombu's Redis channel, except that each popped entry passes :func:`admitted` before it is delivered, and
    that no Redis error reply on a key it uses ends the consumer (see the module's docstring).

    ``_brpop_start``/``_brpop_read``/``_get`` are kombu 5.7's own, with the check between the pop and
    ``_deliver``, wrong-typed keys left out of the poll, and error replies turned into an empty poll."""

    QoS = GuardedQoS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._skipped: dict[str, float] = {}  # wrong-typed keys that could not be moved away: until when
        self._noted: dict[str, float] = {}  # error kind -> when it was last logged
        super().__init__(*args, **kwargs)

    # -- wrong-typed keys -------------------------------------------------------------------------------------
    def _expected_types(self) -> dict[str, str]:
        """Every key this channel reads or writes, with the type kombu keeps there."""
        keys: dict[str, str] = {}
        for queue in self.active_queues:
            keys.update({self._q_for_pri(queue, pri): "list" for pri in self.priority_steps})
            exchanges = {exchange for exchange, _, _ in self.state.queue_bindings(queue)} or {queue}
            for exchange in exchanges:
                keys[self.keyprefix_queue % (exchange,)] = "set"
                keys[self.keyprefix_binding_permanent % (exchange,)] = "set"
        keys.update({self.unacked_key: "hash", self.unacked_index_key: "zset", self.unacked_mutex_key: "string"})
        return keys

    def repair(self, extra: dict[str, str] | None = None) -> list[str]:
        """Find the keys of this channel (and ``extra``: key -> type) that hold another Redis type, and move each
        out of the way (see the module's docstring); returns the keys found. Never raises."""
        expected = {**self._expected_types(), **(extra or {})}
        try:
            with self.conn_or_acquire() as client:
                with client.pipeline(transaction=False) as pipe:
                    for key in expected:
                        pipe.type(key)
                    found = [_text(t) for t in pipe.execute()]
                pairs = zip(expected, found, strict=True)
                bad = [(k, f, expected[k]) for k, f in pairs if f not in ("none", expected[k])]
                for key, kind, want in bad:
                    self._quarantine(client, key, kind, want)
        except Exception as e:  # noqa: BLE001 - a repair that fails is tried again at the next error
            self.note_error(e, "look for keys of the wrong type")
            return []
        return [key for key, _, _ in bad]

    def _quarantine(self, client: Any, key: str, kind: str, want: str) -> None:
        """Rename one wrong-typed key to ``P:quarantined:KEY:MS`` (if it still holds that type) and record it; if
        Redis refuses, leave the key out of the poll for a while."""
        target = f"{_key_prefix}:quarantined:{key}:{int(time.time() * 1000)}"
        shown = escape(key)
        try:
            with client.pipeline(transaction=True) as pipe:
                pipe.watch(key)
                if _text(pipe.type(key)) != kind:
                    return  # changed meanwhile (someone fixed it, or kombu recreated the queue)
                pipe.multi()
                pipe.rename(key, target)
                pipe.execute()
            done = f"moved to {escape(target)}"
            self._skipped.pop(key, None)
        except redis.WatchError:
            return
        except Exception as e:  # noqa: BLE001 - e.g. an ACL that forbids RENAME: skip the key for a while instead
            self._skipped[key] = time.monotonic() + defaults.WRONG_TYPE_RECHECK_S
            done = f"could not move it ({type(e).__name__}: {e}); left out for {defaults.WRONG_TYPE_RECHECK_S:g} s"
        refuse(f"Redis key {shown} holds a {kind}, not the {want} kombu keeps there: {done}", shown)

    def repaired(self, action: Callable[[], T], extra: dict[str, str] | None = None) -> T:
        """``action()``; after a ``WRONGTYPE`` reply, the keys repaired and ``action()`` once more."""
        try:
            return action()
        except redis.ResponseError as e:
            if not wrong_type(e) or not self.repair(extra):
                raise
        return action()

    def note_error(self, e: BaseException, what: str) -> None:
        """Log a Redis error reply that the consumer waits out, once per :data:`farm.defaults.REDIS_ERROR_LOG_S`
        per kind of error (a full Redis answers every poll with the same error)."""
        kind = f"{type(e).__name__}:{what}"
        now = time.monotonic()
        if now - self._noted.get(kind, float("-inf")) >= defaults.REDIS_ERROR_LOG_S:
            self._noted[kind] = now
            log.error("Redis refused to %s (%s: %s); the worker goes on and tries again", what, type(e).__name__, e)

    def _polled(self, keys: list[str]) -> Iterator[str]:
        now = time.monotonic()
        for key in keys:
            until = self._skipped.get(key)
            if until is None:
                yield key
            elif until <= now:
                del self._skipped[key]  # looked at again: a key still wrong is repaired (or skipped) anew
                yield key

    # -- consuming --------------------------------------------------------------------------------------------
    def _brpop_start(self, timeout: int | None = None) -> None:
        if timeout is None:
            timeout = self.brpop_timeout
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return
        keys = list(self._polled([self._q_for_pri(queue, pri) for pri in self.priority_steps for queue in queues]))
        if not keys:  # every key is of the wrong type and could not be moved: wait on one that is not there
            keys = [f"{_key_prefix}:quarantined:none"]
        self._in_poll = self.client.connection
        self._brpop_sent_at = time.monotonic()  # type: ignore[assignment]  # kombu 5.7 declares it None
        command_args = ["BRPOP", *keys, timeout or 0]
        if self.global_keyprefix:
            command_args = self.client._prefix_args(command_args)
        self.client.connection.send_command(*command_args)

    def _brpop_read(self, **options: Any) -> bool:
        try:
            try:
                dest__item = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                # if there's a ConnectionError, disconnect so the next iteration will reconnect automatically.
                self.client.connection.disconnect()
                raise
            except redis.ResponseError as e:
                self._poll_refused(e)
                raise Empty() from None
            if not dest__item:
                raise Empty()
            key, item = dest__item
            dest = bytes_to_str(key).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            message = admitted(item, dest)
            if message is None:
                raise Empty()  # popped and refused: it never entered ``unacked``, so nothing restores it
            try:
                self.connection._deliver(message, dest)
            except redis.ResponseError as e:
                self._undeliverable(e, key, item)
                raise Empty() from None
            return True
        finally:
            self._in_poll = None  # type: ignore[assignment]  # kombu 5.7's own line; its attribute says bool
            self._flush_brpop_reauth()

    def _poll_refused(self, e: redis.ResponseError) -> None:
        """BRPOP answered an error: repair wrong-typed queue keys; wait out anything else (a refused command)."""
        if wrong_type(e) and self.repair():
            return
        self.note_error(e, "pop from the farm's queues")
        time.sleep(defaults.REDIS_ERROR_PAUSE_S)  # the next poll would get the same answer at once

    def _undeliverable(self, e: redis.ResponseError, key: bytes, item: bytes) -> None:
        """A popped entry that could not be noted in ``unacked`` (a full Redis refuses the write): put it back
        on its queue if Redis lets us; if not, the farm's reaper sends its job again (``P:inflight``)."""
        self.note_error(e, "note a delivered message in 'unacked'")
        try:
            with self.conn_or_acquire() as client:
                client.rpush(key, item)
        except Exception as again:  # noqa: BLE001 - the job is in the farm's in-flight set: it is sent again later
            log.error(
                "a message popped from %s could not be put back (%s): the farm's reaper sends its job again",
                escape(_text(key)),
                again,
            )
        time.sleep(defaults.REDIS_ERROR_PAUSE_S)

    def _get(self, queue: str) -> dict[str, Any]:  # type: ignore[override]  # kombu 5.7's Redis signature
        try:
            return self.repaired(lambda: self._get_admitted(queue))
        except redis.ResponseError as e:
            self.note_error(e, f"pop from {queue}")
            raise Empty() from None

    def _get_admitted(self, queue: str) -> dict[str, Any]:
        with self.conn_or_acquire() as client:
            for pri in self.priority_steps:
                key = self._q_for_pri(queue, pri)
                if key in self._skipped and self._skipped[key] > time.monotonic():
                    continue
                item = client.rpop(key)
                if item:
                    self._maybe_update_queues_expire(client, queue)
                    message = admitted(item, queue)
                    if message is None:
                        raise Empty()
                    return message
            self._maybe_update_queues_expire(client, queue)
            raise Empty()

    def _size(self, queue: str) -> int:
        lists = {self._q_for_pri(queue, pri): "list" for pri in self.priority_steps}
        try:
            return int(self.repaired(lambda: super(GuardedChannel, self)._size(queue), lists))
        except redis.ResponseError as e:
            # kombu counts in a MULTI, which a full Redis refuses whole: the count only informs a declaration
            self.note_error(e, f"count the messages of {queue}")
            return 0

    def _put(self, queue: str, message: Any, **kwargs: Any) -> None:
        # A job put back by this worker must not fail on a wrong-typed queue key: checked first (a worker
        # publishes rarely: a requeue, a hand-back, the reaper), since a batched push fails only at its flush.
        self.repair({self._q_for_pri(queue, pri): "list" for pri in self.priority_steps})
        super()._put(queue, message, **kwargs)

    def _queue_bind(self, exchange: str, routing_key: str, pattern: str, queue: str) -> None:
        sets = {self.keyprefix_queue % (exchange,): "set", self.keyprefix_binding_permanent % (exchange,): "set"}
        try:
            self.repaired(lambda: super(GuardedChannel, self)._queue_bind(exchange, routing_key, pattern, queue), sets)
        except (redis.OutOfMemoryError, redis.exceptions.ExecAbortError) as e:
            # A full Redis refuses even a binding that is already there (inside kombu's MULTI: EXECABORT); the
            # farm publishes to its queues by name (the default exchange), so consuming goes on, and the next
            # declaration (a restart) writes it.
            self.note_error(e, f"bind queue {queue}")

    def maybe_refresh_binding_expiry(self) -> None:
        # kombu logs a full Redis' refusal here with a traceback each second; one line a minute says as much
        try:
            self.repaired(super().maybe_refresh_binding_expiry)
        except redis.ResponseError as e:
            self.note_error(e, "refresh the queues' bindings")

    def get_table(self, exchange: str) -> list[tuple[str, ...]]:
        sets = {self.keyprefix_queue % (exchange,): "set"}
        return list(self.repaired(lambda: super(GuardedChannel, self).get_table(exchange), sets))

    def _do_restore_message(
        self, payload: Any, exchange: str, routing_key: str, pipe: Any, leftmost: bool = False
    ) -> None:
        # Inside a MULTI a wrong-typed queue fails only its own push while the message leaves ``unacked``: the
        # queues are checked before the push is queued.
        queues = self._lookup(exchange, routing_key)
        self.repair({self._q_for_pri(q, pri): "list" for q in queues for pri in self.priority_steps})
        super()._do_restore_message(payload, exchange, routing_key, pipe, leftmost)


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
