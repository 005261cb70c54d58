"""Surviving hostile or broken messages on a farm queue: refuse them, say why, keep serving.

Two layers. Messages that are not even JSON never reach Celery: kombu's Redis transport decodes each raw
entry with ``json.loads`` and, in Celery/kombu 5.7, the exception ends the worker process. The guarded
channel below drops such an entry (it was already popped) and records it. Messages that are JSON but not a
farm job (pickle content types, unknown task names, malformed Celery envelopes) reach Celery's consumer, whose
hooks we extend to record them before Celery acknowledges them. Valid Celery messages with an invalid job are
refused by the job executor's own validation.
"""

from __future__ import annotations

import json
import logging
from queue import Empty
from typing import Any, Callable

from celery.worker.consumer import Consumer
from kombu.transport import redis as kombu_redis

log = logging.getLogger("farm.worker")

_recorder: Callable[[str], None] = lambda reason: None


def set_recorder(record: Callable[[str], None]) -> None:
    """Where refused messages are reported (the worker points this at the store's ``rejected`` list)."""
    global _recorder
    _recorder = record


def _refuse(reason: str) -> None:
    log.error("refused a message: %s", reason)
    try:
        _recorder(reason)
    except Exception as e:  # noqa: BLE001 - recording must never take the worker down
        log.warning("could not record the refused message: %s", e)


class GuardedChannel(kombu_redis.Channel):
    """kombu's Redis channel, except that an entry that is not JSON is refused instead of raised."""

    def _brpop_read(self, **options: Any) -> bool:
        try:
            return super()._brpop_read(**options)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            _refuse(f"an entry that is not JSON was removed from a queue: {e}")
            raise Empty() from None

    def _get(self, queue: str) -> Any:
        try:
            return super()._get(queue)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            _refuse(f"an entry that is not JSON was removed from {queue}: {e}")
            raise Empty() from None


def install_transport_guard() -> None:
    """Make the Redis transport of this process use the guarded channel."""
    kombu_redis.Transport.Channel = GuardedChannel


class FarmConsumer(Consumer):
    """Celery's consumer, recording every message it refuses before acknowledging it."""

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        _refuse(f"undecodable message of type {message.content_type!r}: {exc}")
        super().on_decode_error(message, exc)

    def on_unknown_message(self, body: Any, message: Any) -> None:
        _refuse("a message that is not a Celery task")
        super().on_unknown_message(body, message)

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        _refuse(f"a task this worker does not run: {exc}")
        super().on_unknown_task(body, message, exc)

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        _refuse(f"a malformed task message: {exc}")
        super().on_invalid_task(body, message, exc)
