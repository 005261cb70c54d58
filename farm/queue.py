"""The farm's queues: what a job's queue is called, the one Celery app configuration shared by submitters and
workers, and the one place a job's message is built and published.

The settings are chosen for long, expensive, one-at-a-time jobs (see docs/operations.md, "Why these
Celery settings"): JSON only, late acknowledgement so a dead worker's job is not lost, rejection on worker loss so it
is redelivered, a prefetch of one so a busy worker hoards nothing, and a visibility timeout longer than any job
may run so Redis never redelivers a job that is still running. Celery's result backend is not used: results
live in the farm's own store.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from farm import defaults
from farm.routing import required_tag
from farm.settings import FarmSettings

if TYPE_CHECKING:
    from celery import Celery

    from farm.job import JobEnvelope, JobSpec

TASK_NAME = "farm.run_job"
"""The only task a farm worker runs."""

QUEUE_PREFIX = "farm."
"""Every queue of a farm with the default key prefix starts with this (``farm.cpu``, ``farm.gpu.model-h100``);
another prefix's queues start with that prefix and a dot (:func:`queue_prefix`)."""

PUBLISH_BATCH = 1000
"""Messages sent to Redis in one pipelined round trip (kombu's publish batches)."""

_TAG = re.compile(r"(cpu|gpu)(\.(model|mem|host|be|wl)-[^.]+)*")
"""The grammar of a requirement tag (``farm.routing.compose_tag``)."""


def queue_prefix(key_prefix: str = defaults.KEY_PREFIX) -> str:
    """What every queue of the farm whose keys start with ``key_prefix`` starts with: the prefix and a dot
    (``farm.`` by default, so the default farm's queues are ``farm.cpu``, …). Two farms with different prefixes on
    one Redis therefore never share a queue, and neither takes (and drops) the other's messages."""
    return f"{key_prefix}."


def job_queue(job: JobSpec, key_prefix: str = defaults.KEY_PREFIX) -> str:
    """The queue a job's message goes to, hence the one queue it may be taken from: named by the farm's key
    prefix and the tag of what the job requires (device, GPU model, memory, host). The one place a job's queue
    is named."""
    return queue_prefix(key_prefix) + required_tag(job)


def tag_queue(tag: str, key_prefix: str = defaults.KEY_PREFIX) -> str:
    """The queue of a worker tag (a worker consumes the queue of every tag its hardware satisfies)."""
    return queue_prefix(key_prefix) + tag


def is_farm_queue(name: str, key_prefix: str = defaults.KEY_PREFIX) -> bool:
    """Whether ``name`` is a queue of the farm with this key prefix: its prefix, then a whole requirement tag.
    The tag's grammar keeps farms apart even when one prefix starts with another's (``farm.x.cpu`` is no queue
    of the farm ``farm``: ``x.cpu`` is no tag)."""
    start = queue_prefix(key_prefix)
    return name.startswith(start) and _TAG.fullmatch(name[len(start) :]) is not None


def unacked_keys(key_prefix: str = defaults.KEY_PREFIX) -> dict[str, str]:
    """kombu's keys for messages delivered and not yet acknowledged (the hash, its index by time, the restore
    lock), as its transport options name them: kombu's own names for the default prefix, the prefix's own
    otherwise, so that a farm neither restores nor counts as its own another farm's deliveries."""
    if key_prefix == defaults.KEY_PREFIX:
        return {"unacked_key": "unacked", "unacked_index_key": "unacked_index", "unacked_mutex_key": "unacked_mutex"}
    return {
        "unacked_key": f"{key_prefix}.unacked",
        "unacked_index_key": f"{key_prefix}.unacked_index",
        "unacked_mutex_key": f"{key_prefix}.unacked_mutex",
    }


def app_key_prefix(app: Celery) -> str:
    """The key prefix of the farm an app was made for (:func:`make_app`)."""
    return str(app.conf.get("farm_key_prefix") or defaults.KEY_PREFIX)


def kombu_url(url: str) -> str:
    """The broker URL as kombu must read it to log in exactly as redis-py does with ``url``.

    redis-py's ``unix:///path?db=N`` is kombu's ``redis+socket:///path?virtual_host=N``. Both percent-decode the
    userinfo alike, so an encoded password (``p%2Fa%23s``) reaches either client whole; but redis-py also takes
    ``?username=`` / ``?password=`` from the query, which kombu loses (unix socket) or refuses with a TypeError
    (TCP). Those credentials move into the userinfo, percent-encoded, the userinfo winning as in redis-py.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query)  # decoded as redis-py decodes it; blank values dropped, as redis-py does
    creds: dict[str, str] = {}
    for key, value in query:
        if key in ("username", "password"):
            creds.setdefault(key, value)  # redis-py takes the first
    if parts.scheme != "unix" and not creds:
        return url
    username = unquote(parts.username) if parts.username else creds.get("username")
    password = unquote(parts.password) if parts.password else creds.get("password")
    auth = ""
    if username or password:
        auth = quote(username or "", safe="") + (f":{quote(password, safe='')}" if password else "") + "@"
    scheme = "redis+socket" if parts.scheme == "unix" else parts.scheme
    rest = [
        ("virtual_host" if k == "db" and parts.scheme == "unix" else k, v)
        for k, v in query
        if k not in ("username", "password")
    ]
    host = parts.netloc.rpartition("@")[2]
    return f"{scheme}://{auth}{host}{parts.path}" + (f"?{urlencode(rest)}" if rest else "")


def make_app(settings: FarmSettings, queues: Iterable[str] = ()) -> Celery:
    """A Celery app for the farm's broker, knowing exactly the given queues (a typo'd queue fails loudly).

    Everything of the broker's that a farm uses is the farm's own when its key prefix is not the default: its
    queues (:func:`queue_prefix`), hence their bindings, the unacknowledged deliveries kombu restores
    (:func:`unacked_keys`) and Celery's control exchange (a command to a worker of one farm never reaches a
    worker of the same name of another). Task events stay on Celery's one exchange, so one Flower watches
    every farm on a Redis.

    Celery is imported here, not at the top: naming queues and planning a submit must not cost its import."""
    from celery import Celery
    from kombu import Queue

    app = Celery("benchfarm", broker=kombu_url(settings.broker_url), set_as_current=False)
    prefix = settings.key_prefix
    declared = sorted(set(queues))
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        result_accept_content=["json"],
        event_serializer="json",
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        # A Redis that accepts connections but never answers (stopped, wedged) must fail a publish or a poll
        # within seconds, not hang it: the same bound as the farm's own client (farm.store.connect).
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            "socket_timeout": settings.redis_timeout_s,
            "socket_connect_timeout": defaults.BROKER_CONNECT_TIMEOUT_S,
            **unacked_keys(prefix),
        },
        broker_connection_timeout=defaults.BROKER_CONNECT_TIMEOUT_S,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        task_create_missing_queues=False,
        task_queues=[Queue(q, routing_key=q) for q in declared],
        task_default_queue=declared[0] if declared else tag_queue("cpu", prefix),
        control_exchange="celery" if prefix == defaults.KEY_PREFIX else f"{prefix}.celery",
        farm_key_prefix=prefix,
        worker_send_task_events=True,
        # No "task-sent" event per job: it doubles the cost of submitting a sweep; Flower and `celery events`
        # still see every task from the worker's received/started/succeeded events.
        task_send_sent_event=False,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        enable_utc=True,
    )
    if urlsplit(settings.broker_url).scheme == "rediss":
        app.conf.broker_use_ssl = ssl_options(settings.broker_url)
    return app


def ssl_options(url: str) -> dict[str, Any]:
    """TLS settings for kombu from a ``rediss://`` URL's query (the same names redis-py reads there):
    ``ssl_cert_reqs`` (required — the default —, optional or none), ``ssl_ca_certs``, ``ssl_certfile``,
    ``ssl_keyfile``. Certificates are verified unless the URL says otherwise."""
    import ssl
    from urllib.parse import parse_qs

    query = {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}
    reqs = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}
    options: dict[str, Any] = {
        "ssl_cert_reqs": reqs.get(query.get("ssl_cert_reqs", "required").lower(), ssl.CERT_REQUIRED)
    }
    for key in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        if key in query:
            options[key] = query[key]
    return options


def send_one(app: Celery, envelope: JobEnvelope, producer: Any, *, retry: bool = False, declare: bool = True) -> None:
    """Put one job on its queue; the Celery task id is the job id.

    Built with Celery's own message API (``app.amqp``) rather than ``send_task``: the same protocol-2 JSON
    message, without per-call routing. ``argsrepr`` is given so Celery does not build a repr of the whole spec
    for the headers. ``declare=False`` skips declaring a queue the producer has already declared. A queue the app
    does not know (a worker's reaper sending a GPU job back from a CPU worker, whose app knows the queues it
    consumes) is declared as :func:`make_app` declares every queue, without the app learning it: its consumer
    must not start taking from it.
    """
    from kombu import Queue

    queue = job_queue(envelope.job, app_key_prefix(app))
    target = app.amqp.queues[queue] if queue in app.amqp.queues else Queue(queue, routing_key=queue)
    message = app.amqp.create_task_message(
        envelope.job_id,
        TASK_NAME,
        [envelope.model_dump(mode="json")],
        {},
        argsrepr=f"[job {envelope.job_id}]",
        kwargsrepr="{}",
    )
    app.amqp.send_task_message(
        producer,
        TASK_NAME,
        message,
        queue=target,
        routing_key=queue,
        exchange="",
        retry=retry,
        declare=None if declare else [],
    )


def publish(
    app: Celery, envelopes: list[JobEnvelope], sent: dict[str, float], clock: Callable[[], float] = time.time
) -> None:
    """Send each envelope to its queue, recording in ``sent`` (job id -> ``clock()``) each one that surely went.
    The ledger passes the store's clock (the Redis server's, ``Store.now``): a reaper on another host compares
    these moments with its own "now".

    Where kombu can batch (its Redis transport, without write retries), the messages go PUBLISH_BATCH at a
    time in one pipelined round trip each. A batch that fails counts as not sent as a whole (some of it may
    have reached Redis: a job may then be delivered twice, which the ledger's lease makes harmless, but none is
    lost). Elsewhere messages go one by one.
    """
    declared: set[str] = set()
    prefix = app_key_prefix(app)
    with app.producer_or_acquire() as producer:
        if not getattr(producer, "supports_batch_publish", False):
            for env in envelopes:
                queue = job_queue(env.job, prefix)
                at = clock()
                send_one(app, env, producer, declare=queue not in declared)
                declared.add(queue)
                sent[env.job_id] = at
            return
        for start in range(0, len(envelopes), PUBLISH_BATCH):
            chunk = envelopes[start : start + PUBLISH_BATCH]
            # max_size above what the chunk buffers (a message is one command): kombu never flushes on its own.
            with producer.batch(max_size=2 * len(chunk) + 1) as batch:
                for env in chunk:
                    queue = job_queue(env.job, prefix)
                    send_one(app, env, producer, declare=queue not in declared)
                    declared.add(queue)
                at = clock()
                batch.flush()
                sent.update(dict.fromkeys((env.job_id for env in chunk), at))
