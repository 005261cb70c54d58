"""The admission check: is this raw queue entry exactly a message the farm's own submit produces?

Everything on a farm queue is data someone pushed into Redis, and kombu and Celery act on it before any farm
code runs: they decode the JSON, base64-decode and *decompress* the body (a ``compression`` header made a
half-megabyte message take a worker from 74 MB to 1.7 GB), index into headers and properties (a ``[]`` or a
list where a string belongs ended the worker, and some shapes were restored to the queue to end the next one),
run any task the app knows (Celery's own ``celery.accumulate``, ``celery.backend_cleanup``, ...), and honour
``eta``, ``chain`` and ``callbacks``. So the worker's transport asks :func:`admit` first, on the raw bytes,
and hands kombu only what passes. The rule is an allow-list, not a list of known attacks: the message must be
the one shape :func:`farm.queue.send_one` (Celery's task protocol 2, JSON, via kombu's Redis transport)
writes, plus the two ``redelivered`` flags kombu adds when it restores an unacknowledged message. And it must be
on its own queue: a valid message for a ``requires.host`` job or a GPU job that someone with Redis access moved
to another queue ran on the wrong host, or failed for good on a CPU worker. Refused there, it is not lost: its
job is still in the ledger's in-flight set, on no queue and never leased, so the reaper's
:meth:`farm.ledger.Ledger.resend_vanished` sends it again to its own queue after the outbox's grace period.

Pure functions of (bytes, queue name); no I/O, so it is tested on hand-built cases without a worker.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any

from pydantic import ValidationError

from farm import defaults
from farm.errors import escape, problems_from_validation
from farm.job import JOB_ID_RE, JobEnvelope
from farm.queue import TASK_NAME, job_queue

__all__ = ["MAX_BODY_CHARS", "MAX_RAW_BYTES", "Refused", "admit", "show"]

MAX_BODY_CHARS = 256 * 1024
"""The base64 body's bound; a real job's body is about 1.5 KB (its parameters are bounded by their models)."""
MAX_RAW_BYTES = MAX_BODY_CHARS + 16 * 1024
"""The whole entry's bound, checked on the raw bytes before anything decodes them."""
MAX_TEXT = 512
"""Bound of each short header string (origin is ``gen<pid>@<hostname>``, argsrepr ``[job <id>]``)."""
MAX_TAG = 64
"""Bound of the delivery tag (kombu writes a uuid4, 36 characters); it becomes a field of Redis' ``unacked``."""

TOP_KEYS = frozenset({"body", "content-encoding", "content-type", "headers", "properties"})
HEADER_KEYS = frozenset(
    {
        "lang",
        "task",
        "id",
        "shadow",
        "eta",
        "expires",
        "group",
        "group_index",
        "retries",
        "timelimit",
        "root_id",
        "parent_id",
        "argsrepr",
        "kwargsrepr",
        "origin",
        "ignore_result",
        "replaced_task_nesting",
        "stamped_headers",
        "stamps",
        "redelivered",
    }
)
PROPERTY_KEYS = frozenset(
    {"correlation_id", "reply_to", "delivery_mode", "delivery_info", "priority", "body_encoding", "delivery_tag"}
)
DELIVERY_INFO_KEYS = frozenset({"exchange", "routing_key", "redelivered"})
EMBED_KEYS = frozenset({"callbacks", "errbacks", "chain", "chord"})
ABSENT_HEADERS = ("shadow", "eta", "expires", "group", "group_index", "parent_id", "stamped_headers")
"""Headers the farm never sets: a value would rename the task, delay it, expire it or tie it to a workflow."""


class Refused(ValueError):
    """The entry is not a farm job message; the text says why in one safe line."""


def show(value: Any) -> str:
    """A short, printable rendering of a hostile value for a reason string."""
    text = repr(value)
    return escape(text if len(text) <= 80 else text[:77] + "...")


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """JSON objects as plain dicts, refusing what plain JSON and kombu's decoder would read differently:
    a duplicated key, and kombu's typed values (``{"__type__": ..., "__value__": ...}`` become datetimes,
    decimals and UUIDs in kombu's ``loads``)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise Refused("a JSON object has a duplicated key")
    if "__type__" in obj:
        raise Refused("a JSON object carries a kombu type tag (__type__)")
    return obj


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise Refused("a JSON number is not finite")
    return value


def _constant(name: str) -> Any:
    raise Refused(f"a JSON number is {name}")


def strict_json(text: str) -> Any:
    """``json.loads`` without NaN/Infinity, duplicate keys or kombu type tags."""
    return json.loads(text, object_pairs_hook=_pairs, parse_float=_finite, parse_constant=_constant)


def _require(ok: bool, reason: str) -> None:
    if not ok:
        raise Refused(reason)


def _is_int(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _short_str(value: Any, limit: int = MAX_TEXT) -> bool:
    return isinstance(value, str) and len(value) <= limit


def _keys(obj: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    extra = sorted(set(obj) - allowed)
    if "compression" in extra:
        raise Refused(f"{where} asks for compression: refused (a compressed body can expand a thousandfold)")
    _require(not extra, f"{where} has keys the farm never sends: {show(extra)}")


def admit(raw: bytes | str, queue: str, key_prefix: str = defaults.KEY_PREFIX) -> dict[str, Any]:
    """The message to deliver, or :class:`Refused` with the reason; ``queue`` is the queue it was popped from,
    which must be the job's own (:func:`farm.queue.job_queue` of the farm whose keys start with ``key_prefix``).

    The size is checked before anything is decoded, so a 50 MB entry costs one read and nothing else."""
    size = len(raw)
    _require(size <= MAX_RAW_BYTES, f"the entry has {size} bytes, more than {MAX_RAW_BYTES}")
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as e:
        raise Refused(f"the entry is not UTF-8 text: {e}") from None
    try:
        message = strict_json(text)
    except (ValueError, RecursionError) as e:  # Refused is a ValueError too
        raise Refused(f"the entry is not JSON: {escape(str(e))[:200]}") from None
    _require(isinstance(message, dict), f"the entry is JSON but not a message object: {show(message)}")
    _keys(message, TOP_KEYS, "the message")
    _require(set(message) == TOP_KEYS, f"the message lacks {show(sorted(TOP_KEYS - set(message)))}")
    ctype = message["content-type"]
    if ctype != "application/json":
        kind = " (pickle is never accepted)" if "python-serialize" in str(ctype) else ""
        raise Refused(f"content-type must be application/json, not {show(ctype)}{kind}")
    _require(
        message["content-encoding"] == "utf-8",
        f"content-encoding must be utf-8, not {show(message['content-encoding'])}",
    )
    headers = message["headers"]
    _require(isinstance(headers, dict), f"headers must be an object, not {show(headers)}")
    properties = message["properties"]
    _require(isinstance(properties, dict), f"properties must be an object, not {show(properties)}")
    job_id = _check_headers(headers)
    _check_properties(properties, queue, job_id)
    envelope = _check_body(message["body"], job_id)
    own = job_queue(envelope.job, key_prefix)
    _require(
        queue == own,
        f"the job belongs on {show(own)}, not on {show(queue)}: a message moved between queues (its job is sent "
        "again to its own queue by the reaper)",
    )
    return message


def _check_headers(headers: dict[str, Any]) -> str:
    """The task headers; returns the task id."""
    _keys(headers, HEADER_KEYS, "headers")
    task = headers.get("task")
    _require(task == TASK_NAME, f"the task must be {TASK_NAME}, not {show(task)} (no other task runs here)")
    _require(headers.get("lang") == "py", f"headers.lang must be 'py', not {show(headers.get('lang'))}")
    job_id = headers.get("id")
    if not (isinstance(job_id, str) and JOB_ID_RE.match(job_id)):  # spelled out so that job_id is a str below
        raise Refused(f"headers.id must be a job id (20 hex digits), not {show(job_id)}")
    for key in ABSENT_HEADERS:
        _require(headers.get(key) is None, f"headers.{key} must be null, not {show(headers.get(key))}")
    _require(headers.get("root_id") in (None, job_id), "headers.root_id must be the job id or null")
    _require(_is_int(headers.get("retries", 0), 0, 1000), "headers.retries must be a small int")
    _require(_is_int(headers.get("replaced_task_nesting", 0), 0, 0), "headers.replaced_task_nesting must be 0")
    _require(headers.get("stamps", {}) == {}, "headers.stamps must be empty")
    for key in ("argsrepr", "kwargsrepr", "origin"):
        _require(_short_str(headers.get(key, "")), f"headers.{key} must be a string of at most {MAX_TEXT}")
    for key in ("ignore_result", "redelivered"):
        _require(isinstance(headers.get(key, False), bool), f"headers.{key} must be true or false")
    limits = headers.get("timelimit", [None, None])
    _require(
        isinstance(limits, list)
        and len(limits) == 2
        and all(
            v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1e9) for v in limits
        ),
        f"headers.timelimit must be two nulls or numbers, not {show(limits)}",
    )
    return job_id


def _check_properties(properties: dict[str, Any], queue: str, job_id: str) -> None:
    _keys(properties, PROPERTY_KEYS, "properties")
    tag = properties.get("delivery_tag")
    _require(
        isinstance(tag, str) and 0 < len(tag) <= MAX_TAG and tag.isprintable(),
        f"properties.delivery_tag must be a short printable string, not {show(tag)}",
    )
    _require(
        properties.get("body_encoding") == "base64",
        f"properties.body_encoding must be base64, not {show(properties.get('body_encoding'))}",
    )
    _require(
        _is_int(properties.get("priority"), 0, 9),
        f"properties.priority must be an int 0-9, not {show(properties.get('priority'))}",
    )
    _require(properties.get("correlation_id", job_id) == job_id, "properties.correlation_id must be the job id")
    _require(properties.get("reply_to", "") == "", "properties.reply_to must be empty (no replies are sent)")
    _require(
        properties.get("delivery_mode", 2) in (1, 2) and not isinstance(properties.get("delivery_mode"), bool),
        "properties.delivery_mode must be 1 or 2",
    )
    info = properties.get("delivery_info")
    if not isinstance(info, dict):  # spelled out so that info is a dict below
        raise Refused(f"properties.delivery_info must be an object, not {show(info)}")
    _keys(info, DELIVERY_INFO_KEYS, "properties.delivery_info")
    _require(
        info.get("routing_key") == queue,
        f"properties.delivery_info.routing_key must be the queue {queue}, not {show(info.get('routing_key'))}",
    )
    _require(info.get("exchange", "") == "", "properties.delivery_info.exchange must be the default ('')")
    _require(isinstance(info.get("redelivered", False), bool), "delivery_info.redelivered must be true or false")


def _check_body(body: Any, job_id: str) -> JobEnvelope:
    """The body: base64 of UTF-8 JSON ``[[envelope], {}, {callbacks, errbacks, chain, chord: null}]``."""
    _require(isinstance(body, str), f"the body must be a base64 string, not {show(type(body).__name__)}")
    _require(len(body) <= MAX_BODY_CHARS, f"the body has {len(body)} characters, more than {MAX_BODY_CHARS}")
    try:
        decoded = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError) as e:
        raise Refused(f"the body is not base64: {e}") from None
    try:
        parsed = strict_json(decoded.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise Refused(f"the body is not UTF-8: {e}") from None
    except (ValueError, RecursionError) as e:
        raise Refused(f"the body is not JSON: {escape(str(e))[:200]}") from None
    _require(isinstance(parsed, list) and len(parsed) == 3, "the body must be [args, kwargs, embed]")
    args, kwargs, embed = parsed
    _require(
        isinstance(args, list) and len(args) == 1 and isinstance(args[0], dict),
        "the task's args must be exactly one job envelope",
    )
    _require(kwargs == {}, "the task takes no keyword arguments")
    _require(
        isinstance(embed, dict) and set(embed) == EMBED_KEYS and all(v is None for v in embed.values()),
        "the body's callbacks, errbacks, chain and chord must all be null (a farm job starts no other task)",
    )
    try:
        envelope = JobEnvelope.model_validate(args[0])
    except ValidationError as e:
        raise Refused(
            "not a valid farm job: " + "; ".join(str(p) for p in problems_from_validation(e))[:1000]
        ) from None
    _require(envelope.job_id == job_id, f"headers.id {job_id} is not the envelope's job id {envelope.job_id}")
    return envelope
