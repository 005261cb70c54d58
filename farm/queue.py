"""The Celery side of the farm: one app configuration shared by submitters and workers.

The settings are chosen for long, expensive, one-at-a-time jobs (see the README's "Why these Celery
settings"): JSON only, late acknowledgement so a dead worker's job is not lost, rejection on worker loss so it
is redelivered, a prefetch of one so a busy worker hoards nothing, and a visibility timeout longer than any job
may run so Redis never redelivers a job that is still running. Celery's result backend is not used: results
live in the farm's own store.
"""

from __future__ import annotations

from typing import Iterable
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from celery import Celery
from kombu import Queue

from farm import defaults
from farm.settings import FarmSettings

TASK_NAME = "farm.run_job"


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
    rest = [("virtual_host" if k == "db" and parts.scheme == "unix" else k, v) for k, v in query
            if k not in ("username", "password")]
    host = parts.netloc.rpartition("@")[2]
    return f"{scheme}://{auth}{host}{parts.path}" + (f"?{urlencode(rest)}" if rest else "")


def make_app(settings: FarmSettings, queues: Iterable[str] = ()) -> Celery:
    """A Celery app for the farm's broker, knowing exactly the given queues (a typo'd queue fails loudly)."""
    app = Celery("benchfarm", broker=kombu_url(settings.broker_url), set_as_current=False)
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
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_s,
                                  "socket_timeout": settings.redis_timeout_s,
                                  "socket_connect_timeout": defaults.BROKER_CONNECT_TIMEOUT_S},
        broker_connection_timeout=defaults.BROKER_CONNECT_TIMEOUT_S,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        task_create_missing_queues=False,
        task_queues=[Queue(q, routing_key=q) for q in declared],
        task_default_queue=declared[0] if declared else "farm.cpu",
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


def ssl_options(url: str) -> dict:
    """TLS settings for kombu from a ``rediss://`` URL's query (the same names redis-py reads there):
    ``ssl_cert_reqs`` (required — the default —, optional or none), ``ssl_ca_certs``, ``ssl_certfile``,
    ``ssl_keyfile``. Certificates are verified unless the URL says otherwise."""
    import ssl
    from urllib.parse import parse_qs

    query = {k: v[-1] for k, v in parse_qs(urlsplit(url).query).items()}
    reqs = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}
    options: dict = {"ssl_cert_reqs": reqs.get(query.get("ssl_cert_reqs", "required").lower(), ssl.CERT_REQUIRED)}
    for key in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        if key in query:
            options[key] = query[key]
    return options
