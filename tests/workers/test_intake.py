"""The worker's message intake, without training: the admission check on hand-built entries, the guarded
kombu transport on a throwaway redis-server, the consumer's single task strategy, and the exit code of a
worker whose consumer dies."""

from __future__ import annotations

import base64
import copy
import json
import subprocess
import sys
import textwrap
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import kombu
import pytest
import redis

from farm.embedded import EmbeddedRedis
from farm.job import JobEnvelope, JobSpec
from farm.queue import TASK_NAME, kombu_url, make_app
from farm.settings import FarmSettings
from farm.store import Store
from tests.helpers import REPO, farm_env, throwaway_redis
from workers import intake, poison

QUEUE = "farm.cpu.be-jax"
"""The queue of the JAX CPU jobs these tests build."""


def envelope(units: int = 8) -> JobEnvelope:
    spec = JobSpec(
        sweep="intake",
        workload="fashion_mnist_mlp",
        params={"hidden_layers": 1, "units": units},
        backend="jax",
        data="synthetic",
        train_samples=64,
        test_samples=16,
    )
    return JobEnvelope.for_job(spec, "intake-1")


@pytest.fixture(scope="module")
def server() -> Iterator[EmbeddedRedis]:
    with throwaway_redis() as srv:
        yield srv


@pytest.fixture(scope="module")
def real_raw(server: EmbeddedRedis) -> bytes:
    """A message exactly as ``farm submit`` leaves it on the queue: sent by the farm's own code, read back."""
    from farm.queue import publish

    client = redis.Redis.from_url(server.url)
    client.flushdb()
    app = make_app(FarmSettings(broker_url=server.url), [QUEUE])
    publish(app, [envelope()], {})
    [raw] = client.lrange(QUEUE, 0, -1)
    client.flushdb()
    return raw


def mutate(raw: bytes, change: Callable[[dict[str, Any]], Any]) -> str:
    message = copy.deepcopy(json.loads(raw))
    change(message)
    return json.dumps(message)


def body_of(payload: Any) -> str:
    return base64.b64encode(json.dumps(payload).encode()).decode()


def with_body(payload: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda m: m.update(body=body_of(payload))


EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def test_the_farms_own_message_is_admitted_as_is(real_raw: bytes) -> None:
    message = intake.admit(real_raw, QUEUE)
    assert message == json.loads(real_raw)
    assert message["headers"]["task"] == TASK_NAME
    # kombu's restore of an unacknowledged message adds two flags; such a message is still the farm's.
    redelivered = mutate(
        real_raw,
        lambda m: (m["headers"].update(redelivered=True), m["properties"]["delivery_info"].update(redelivered=True)),
    )
    assert intake.admit(redelivered, QUEUE)["headers"]["redelivered"] is True


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    def change(m: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for key in parents:
            m = m[key]
        m[last] = value

    return change


def _drop(path: str) -> Callable[[dict[str, Any]], Any]:
    def change(m: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for key in parents:
            m = m[key]
        del m[last]

    return change


def _good_args() -> list[Any]:
    return [[envelope().model_dump(mode="json")], {}, dict(EMBED)]


BOMB = zlib.compress(b" " * (150 * 1024 * 1024), 9)  # ~150 KB that inflate to 150 MB

MUTATIONS: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    "extra top-level key": (_set("compression", "zlib"), "compression"),
    "compression header (zlib bomb)": (
        lambda m: (
            m["headers"].update(compression="application/x-gzip"),
            m.update(body=base64.b64encode(BOMB).decode()),
        ),
        "compression",
    ),
    "no properties": (_drop("properties"), "lacks"),
    "pickle": (_set("content-type", "application/x-python-serialize"), "pickle"),
    "content-type list": (_set("content-type", ["a"]), "content-type"),
    "binary encoding": (_set("content-encoding", "binary"), "content-encoding"),
    "headers a list": (_set("headers", [1, 2]), "headers must be an object"),
    "properties a string": (_set("properties", "x"), "properties must be an object"),
    "celery.accumulate": (_set("headers.task", "celery.accumulate"), "no other task"),
    "celery.backend_cleanup": (_set("headers.task", "celery.backend_cleanup"), "no other task"),
    "celery.chord_unlock": (_set("headers.task", "celery.chord_unlock"), "no other task"),
    "task a list": (_set("headers.task", ["x"]), "no other task"),
    "no task": (_drop("headers.task"), "no other task"),
    "lang": (_set("headers.lang", "js"), "lang"),
    "id mismatch": (
        lambda m: (m["headers"].update(id="0" * 20, root_id="0" * 20), m["properties"].update(correlation_id="0" * 20)),
        "is not the envelope's job id",
    ),
    "root_id mismatch": (_set("headers.root_id", "0" * 20), "root_id"),
    "correlation_id mismatch": (_set("properties.correlation_id", "0" * 20), "correlation_id"),
    "id a list": (_set("headers.id", ["x"]), "headers.id"),
    "eta": (_set("headers.eta", "2030-01-01T00:00:00"), "headers.eta"),
    "expires": (_set("headers.expires", 1), "headers.expires"),
    "shadow": (_set("headers.shadow", "x"), "headers.shadow"),
    "group": (_set("headers.group", "g"), "headers.group"),
    "retries str": (_set("headers.retries", "x"), "retries"),
    "retries bool": (_set("headers.retries", True), "retries"),
    "timelimit short": (_set("headers.timelimit", [1]), "timelimit"),
    "timelimit str": (_set("headers.timelimit", "x"), "timelimit"),
    "stamps": (_set("headers.stamps", {"a": 1}), "stamps"),
    "argsrepr huge": (_set("headers.argsrepr", "x" * 10_000), "argsrepr"),
    "kombu type tag": (_set("headers.eta", {"__type__": "datetime", "__value__": "2030-01-01T00:00:00"}), "type tag"),
    "no delivery_tag": (_drop("properties.delivery_tag"), "delivery_tag"),
    "delivery_tag int": (_set("properties.delivery_tag", 5), "delivery_tag"),
    "delivery_tag huge": (_set("properties.delivery_tag", "t" * 1000), "delivery_tag"),
    "body_encoding": (_set("properties.body_encoding", "plain"), "body_encoding"),
    "priority str": (_set("properties.priority", "high"), "priority"),
    "priority large": (_set("properties.priority", 300), "priority"),
    "reply_to": (_set("properties.reply_to", "somewhere"), "reply_to"),
    "delivery_info a string": (_set("properties.delivery_info", "x"), "delivery_info must be an object"),
    "other queue": (_set("properties.delivery_info.routing_key", "farm.gpu"), "routing_key"),
    "exchange": (_set("properties.delivery_info.exchange", "celery"), "exchange"),
    "body int": (_set("body", 5), "base64 string"),
    "bad base64": (_set("body", "!!!not base64!!!"), "not base64"),
    "body too large": (_set("body", "A" * (intake.MAX_BODY_CHARS + 4)), "characters"),
    "body latin-1": (_set("body", base64.b64encode('[[{"é": 1}], {}, {}]'.encode("latin-1")).decode()), "not UTF-8"),
    "body not json": (_set("body", base64.b64encode(b"[[1]").decode()), "not JSON"),
    "body a dict": (with_body({"a": 1}), "[args, kwargs, embed]"),
    "two args": (lambda m: m.update(body=body_of([[{}, {}], {}, EMBED])), "exactly one job envelope"),
    "kwargs": (lambda m: m.update(body=body_of([_good_args()[0], {"x": 1}, EMBED])), "keyword"),
    "chain": (lambda m: m.update(body=body_of([_good_args()[0], {}, {**EMBED, "chain": [{"task": "x"}]}])), "chain"),
    "callbacks": (lambda m: m.update(body=body_of([_good_args()[0], {}, {**EMBED, "callbacks": [{}]}])), "callbacks"),
    "embed missing keys": (lambda m: m.update(body=body_of([_good_args()[0], {}, {}])), "chain"),
    "unregistered workload": (
        lambda m: m.update(
            body=body_of(
                [[{**_good_args()[0][0], "job": {**_good_args()[0][0]["job"], "workload": "evil_code"}}], {}, EMBED]
            )
        ),
        "evil_code",
    ),
    "NaN in body": (
        lambda m: m.update(body=body_of([[{**_good_args()[0][0], "time_limit_s": float("nan")}], {}, EMBED])),
        "not JSON",
    ),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_each_mutation_of_the_real_message_is_refused(real_raw: bytes, name: str) -> None:
    change, reason = MUTATIONS[name]
    with pytest.raises(intake.Refused, match=None) as refused:
        intake.admit(mutate(real_raw, change), QUEUE)
    assert reason in str(refused.value), str(refused.value)
    assert str(refused.value).isprintable() and len(str(refused.value)) < 1200


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b"[]", "not a message object"),
        (b"5", "not a message object"),
        (b'"farm"', "not a message object"),
        (b"null", "not a message object"),
        (b"\x00\xff garbage bytes", "not UTF-8"),
        ('{"body": "é"}'.encode("latin-1"), "not UTF-8"),
        (b"not json at all", "not JSON"),
        (b"[" * 200_000, "not JSON"),  # nesting deeper than the parser's recursion limit
        (b'{"a": 1, "a": 2}', "duplicated key"),
        (b'{"a": NaN}', "not JSON"),
        (b'{"a": 1e999}', "not JSON"),
        (b"x" * (intake.MAX_RAW_BYTES + 1), "more than"),
    ],
)
def test_entries_that_are_not_message_objects_are_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(intake.Refused) as refused:
        intake.admit(raw, QUEUE)
    assert reason in str(refused.value), str(refused.value)


def test_refusals_are_recorded_and_counted_and_a_recorder_failure_is_only_logged(server: EmbeddedRedis) -> None:
    store = Store(redis.Redis.from_url(server.url, decode_responses=True))
    store.r.flushdb()
    for i in range(3):
        store.record_rejection(f"reason {i}", worker="w", queue=QUEUE, raw=b"\xff\x00" + b"x" * 5000, keep=2)
    assert store.r.llen("farm:rejected") == 2 and store.r.get("farm:rejected:count") == "3"
    newest = json.loads(store.r.lindex("farm:rejected", 0))
    assert newest["reason"] == "reason 2" and newest["size"] == 5002 and newest["queue"] == QUEUE
    assert newest["raw"].startswith("\\xff\x00xxx") and len(newest["raw"]) == 2048 + 3  # \xff escaped

    def broken(refusal: poison.Refusal) -> None:
        raise redis.ConnectionError("Redis is down")

    poison.set_recorder(broken)
    try:
        assert poison.admitted(b"[]", QUEUE) is None  # refused, not recorded, and no exception
    finally:
        poison.set_recorder(poison._ignore)


def test_a_bug_in_the_check_refuses_the_entry_instead_of_raising(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[poison.Refusal] = []
    monkeypatch.setattr(poison, "_recorder", seen.append)

    def broken(raw: bytes | str, queue: str) -> dict[str, Any]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(intake, "admit", broken)
    assert poison.admitted(b"{}", QUEUE) is None
    assert "admission check failed" in seen[0].reason and seen[0].size == 2


def test_status_shows_the_total_and_the_latest_reason(server: EmbeddedRedis) -> None:
    from cli.progress_view import rejected_line
    from farm.progress import SweepProgress, rejections

    store = Store(redis.Redis.from_url(server.url, decode_responses=True))
    store.r.flushdb()
    assert rejections(store) == {"rejected_messages": 0, "latest_rejection": None}
    store.record_rejection("first", worker="w", queue=QUEUE, keep=1)
    store.record_rejection("the task must be [bold]x\x1b[0m", worker="w", queue=QUEUE, keep=1)
    found = rejections(store)
    assert found["rejected_messages"] == 2 and found["latest_rejection"]["reason"].startswith("the task")
    line = rejected_line(SweepProgress("s", "s", [], **found))
    assert "2 message(s)" in line and f"latest on {QUEUE}: the task must be \\[bold]x\\x1b" in line


def test_the_guarded_transport_delivers_only_admitted_entries(
    server: EmbeddedRedis, real_raw: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kombu's own consumer loop (BRPOP) over the guarded channel: the refused entries are popped, recorded and
    gone; only the farm's message is delivered, and only it enters ``unacked``."""
    client = redis.Redis.from_url(server.url)
    client.flushdb()
    seen: list[poison.Refusal] = []
    monkeypatch.setattr(poison, "_recorder", seen.append)
    monkeypatch.setitem(kombu.transport.TRANSPORT_ALIASES, "redis", "kombu.transport.redis:Transport")
    monkeypatch.setitem(kombu.transport.TRANSPORT_ALIASES, "rediss", "kombu.transport.redis:Transport")
    monkeypatch.setattr(kombu.transport, "_transport_cache", {})
    poison.install_transport_guard()
    assert kombu.transport.get_transport_cls("redis") is poison.GuardedTransport

    bad = [b"[]", mutate(real_raw, _set("headers.task", ["x"])), mutate(real_raw, _drop("properties.delivery_tag"))]
    for raw in [*bad, real_raw]:
        client.lpush(QUEUE, raw)
    got: list[Any] = []
    with kombu.Connection(kombu_url(server.url)) as conn:
        assert isinstance(conn.transport, poison.GuardedTransport)
        queue = kombu.Queue(QUEUE, routing_key=QUEUE)
        with conn.Consumer(queue, callbacks=[lambda body, message: got.append(message)], accept=["json"]):
            for _ in range(10):
                try:
                    conn.drain_events(timeout=0.5)
                except TimeoutError:
                    if client.llen(QUEUE) == 0:
                        break
            assert len(got) == 1 and got[0].headers["id"] == envelope().job_id
            assert client.hlen("unacked") == 1
            got[0].ack()
    # The polling path (RPOP, kombu's ``_get``) is guarded the same way (a fresh connection: the one above may
    # still have a BRPOP outstanding).
    client.lpush(QUEUE, b"[]", real_raw)
    with kombu.Connection(kombu_url(server.url)) as conn:
        channel = conn.channel()
        assert channel.basic_get(QUEUE, no_ack=True) is None  # the older entry, '[]': refused
        assert channel.basic_get(QUEUE, no_ack=True).headers["id"] == envelope().job_id
    assert client.llen(QUEUE) == 0 and client.hlen("unacked") == 0
    assert len(seen) == 4 and all(r.queue == QUEUE for r in seen)


def test_the_consumer_runs_no_task_but_the_farms() -> None:
    """Even past the transport, Celery's built-in tasks have no strategy: a message naming one is refused."""
    from celery import Celery
    from celery.concurrency.solo import TaskPool
    from celery.worker import state
    from kombu.asynchronous.timer import Timer

    app = Celery("intake-test", broker="memory://", set_as_current=False)

    @app.task(name=TASK_NAME)
    def run_job(payload: Any) -> Any:
        return payload

    app.finalize()
    assert "celery.accumulate" in app.tasks and "celery.backend_cleanup" in app.tasks
    consumer = poison.FarmConsumer(
        on_task_request=lambda r: None,
        app=app,
        hostname="t@h",
        pool=TaskPool(),
        timer=Timer(),
        controller=SimpleNamespace(use_eventloop=False, state=state),
    )
    consumer.update_strategies()
    assert list(consumer.strategies) == [TASK_NAME]

    seen: list[poison.Refusal] = []
    rejected: list[str] = []
    message = SimpleNamespace(
        headers={"task": "celery.backend_cleanup", "id": "x"},
        delivery_info={"routing_key": QUEUE},
        _raw={"x": 1},
        reject_log_error=lambda logger, errors: rejected.append("rejected"),
    )
    poison.set_recorder(seen.append)
    try:
        consumer.create_task_handler()(message)
    finally:
        poison.set_recorder(poison._ignore)
    assert rejected == ["rejected"] and "celery.backend_cleanup" in seen[0].reason


DYING_WORKER = textwrap.dedent("""
    import sys
    from celery import Celery
    from celery.exceptions import WorkerShutdown
    from workers.poison import FarmConsumer
    from workers.plans import WorkerPlan
    from workers.worker import serve

    class Ends(FarmConsumer):
        def start(self):
            if sys.argv[1] == "dies":
                raise RuntimeError("the consumer died on purpose")
            raise WorkerShutdown(0)  # what Celery's SIGTERM handler raises: a requested, warm shutdown

    app = Celery("intake-test", broker="memory://", set_as_current=False)
    app.conf.worker_consumer = "__main__:Ends"
    sys.exit(serve(app, WorkerPlan(name="dies", tags=["cpu"]), "INFO"))
""")


@pytest.mark.slow  # a Celery worker in a process of its own
@pytest.mark.parametrize("how, code", [("dies", 1), ("stops", 0)])
def test_serve_returns_celerys_exit_code(how: str, code: int, tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", DYING_WORKER, how],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**farm_env("redis://unused", tmp_path)},
    )
    assert out.returncode == code, out.stdout[-2000:] + out.stderr[-2000:]
    if how == "dies":
        assert "the consumer died on purpose" in out.stderr


@pytest.mark.slow  # a real `farm worker` process
def test_farm_worker_exits_non_zero_when_its_consumer_dies(redis_url: str, tmp_path: Path) -> None:
    """The real ``farm worker`` command, its consumer made to die: the process ends with a failure code, so
    systemd's Restart=on-failure (or the fleet) restarts it."""
    script = textwrap.dedent("""
        import sys
        from workers import poison

        def die(self):
            raise RuntimeError("the consumer died on purpose")

        poison.FarmConsumer.start = die
        sys.argv = ["farm", "worker", "--cpu-only", "--no-check-backends", "--name", "dies"]
        from cli.main import main
        main()
    """)
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=farm_env(redis_url, tmp_path / "cache"),
    )
    assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-2000:]
    assert "Unrecoverable error" in out.stdout + out.stderr
    assert Store(redis.Redis.from_url(redis_url, decode_responses=True)).worker("dies") is None  # it left the registry


FLEET = textwrap.dedent("""
    import sys
    from workers import fleet
    from workers.plans import WorkerPlan

    child = ("import signal, sys, time, pathlib\\n"
             "signal.signal(signal.SIGTERM, lambda *a: sys.exit(int(sys.argv[1])))\\n"
             "pathlib.Path(sys.argv[2]).touch()\\n"
             "time.sleep(60)\\n")
    fleet.worker_command = lambda plan, loglevel: [sys.executable, "-c", child, plan.name.split("-")[1],
                                                      sys.argv[1] + plan.name]
    sys.exit(fleet.run_fleet([WorkerPlan(name="a-0", tags=["cpu"]), WorkerPlan(name="b-" + sys.argv[2],
                             tags=["cpu"])], {}))
""")


@pytest.mark.slow  # a fleet process and its two worker processes
@pytest.mark.parametrize("second, code", [("0", 0), ("3", 3)])
def test_the_fleet_exits_with_a_failed_workers_code(second: str, code: int, tmp_path: Path) -> None:
    import signal
    import time

    proc = subprocess.Popen(
        [sys.executable, "-c", FLEET, str(tmp_path / "started-"), second],
        cwd=REPO,
        env=farm_env("redis://unused", tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("started-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(list(tmp_path.glob("started-*"))) == 2
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == code, proc.stdout.read().decode()[-2000:] if proc.stdout else ""
