"""Fuzzing a live worker's intake: a few hundred malformed entries pushed straight onto its queue are all
refused and counted; the worker stays up with bounded memory, nothing runs, nothing is left on the queue or in
kombu's ``unacked`` hash, and a real job submitted afterwards succeeds.

The entries come from a fixed seed (printed, so a failure can be replayed): random JSON shapes, the farm's own
message (made by the farm's own publishing code) with each field given a wrong type or removed, bodies that
are not base64, UTF-8 or JSON, multi-megabyte fields, compression headers over a zlib bomb, Celery's built-in
task names, chain/callback embeds, eta/expires, and mismatched ids. A candidate the admission check accepts
is not malformed and is not pushed.
"""

from __future__ import annotations

import base64
import copy
import json
import random
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import redis

from farm.job import JobEnvelope, JobSpec
from farm.queue import make_app
from farm.settings import FarmSettings
from tests.faults.helpers import Farm
from tests.helpers import wait_for, write_sweep
from workers import intake

SEED = 20_261_201
COUNT = 300
RSS_LIMIT = 600 * 1024 * 1024
QUEUE = "farm.cpu.be-jax"
"""The queue of the JAX CPU jobs these tests build."""
EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
BUILTINS = [
    "celery.accumulate",
    "celery.backend_cleanup",
    "celery.chord_unlock",
    "celery.chain",
    "celery.chord",
    "celery.group",
    "celery.map",
    "celery.starmap",
    "celery.chunks",
]


def real_message(url: str) -> dict[str, Any]:
    """The farm's own message for a job no sweep knows, published by the farm's code and taken back."""
    from farm.queue import publish

    spec = JobSpec(
        sweep="fuzz",
        workload="fashion_mnist_mlp",
        params={"hidden_layers": 1, "units": 5},
        backend="jax",
        data="synthetic",
        train_samples=64,
        test_samples=16,
    )
    publish(make_app(FarmSettings(broker_url=url), [QUEUE]), [JobEnvelope.for_job(spec, "fuzz-1")], {})
    raw = redis.Redis.from_url(url).rpop(QUEUE)
    assert raw is not None
    return json.loads(raw)


def random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 4 else 5)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice([0, -1, 1, 2**63, -(2**70), 7])
    if kind == 2:
        return rng.choice([0.5, -1e300, 1e-300, 3.0])
    if kind == 3:
        return rng.choice(["", "x", "farm.run_job", "celery.accumulate", "é\u202e\x1b[31m", "A" * rng.randrange(200)])
    if kind == 4:
        return rng.choice([True, False])
    if kind == 5:
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(5))]
    keys = ["body", "headers", "properties", "task", "id", "content-type", "x", "delivery_tag", "__type__"]
    return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randrange(6))}


WRONG: list[Any] = [
    None,
    0,
    -1,
    1.5,
    True,
    False,
    "",
    "x",
    "farm.run_job",
    [],
    [1, 2],
    {},
    {"a": 1},
    "A" * 5000,
    [[[[None]]]],
    {"__type__": "uuid", "__value__": "x"},
]


def paths(message: dict[str, Any]) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []

    def walk(obj: dict[str, Any], prefix: tuple[str, ...]) -> None:
        for key, value in obj.items():
            found.append((*prefix, key))
            if isinstance(value, dict) and key != "stamps":
                walk(value, (*prefix, key))

    walk(message, ())
    return found


def at(message: dict[str, Any], path: tuple[str, ...]) -> tuple[dict[str, Any], str]:
    for key in path[:-1]:
        message = message[key]
    return message, path[-1]


def encode(payload: Any) -> str:
    return base64.b64encode(json.dumps(payload).encode()).decode()


def zlib_bomb(size_mb: int) -> bytes:
    """zlib data of ``size_mb`` MB of JSON whitespace (about 1 KB per MB), made without holding the MBs."""
    z = zlib.compressobj(9)
    chunk = b" " * (1024 * 1024)
    return b"".join([z.compress(b"["), *(z.compress(chunk) for _ in range(size_mb)), z.compress(b"]"), z.flush()])


def generate(template: dict[str, Any], seed: int, count: int) -> Iterator[tuple[str, bytes]]:
    """(kind, raw entry) pairs, ``count`` of them, each refused by the admission check."""
    rng = random.Random(seed)  # noqa: S311  (reproducible fuzzing, nothing secret)
    body = json.loads(base64.b64decode(template["body"]))
    fields = paths(template)

    def variant(change: Callable[[dict[str, Any]], Any]) -> bytes:
        m = copy.deepcopy(template)
        change(m)
        return json.dumps(m).encode()

    def wrong_type(m: dict[str, Any]) -> None:
        parent, key = at(m, rng.choice(fields))
        parent[key] = copy.deepcopy(rng.choice(WRONG))

    def missing(m: dict[str, Any]) -> None:
        parent, key = at(m, rng.choice(fields))
        del parent[key]

    def with_body(payload: Any) -> Callable[[dict[str, Any]], Any]:
        return lambda m: m.update(body=encode(payload))

    bombs = {size: zlib_bomb(size) for size in (100, 250)}  # under and over the entry's size bound

    def bomb(m: dict[str, Any]) -> None:
        m["headers"]["compression"] = rng.choice(["application/x-gzip", "zlib", "bzip2"])
        m["body"] = base64.b64encode(bombs[rng.choice(list(bombs))]).decode()

    def huge(m: dict[str, Any]) -> None:
        parent, key = at(m, rng.choice(fields))
        parent[key] = "H" * rng.randrange(2, 5) * 1024 * 1024

    def mismatched_id(m: dict[str, Any]) -> None:
        other = rng.choice(["0" * 20, "f" * 20, envelope["job_id"][::-1]])  # the envelope says otherwise
        m["headers"].update(id=other, root_id=other)
        m["properties"]["correlation_id"] = other

    envelope = body[0][0]
    makers: list[tuple[str, int, Callable[[], bytes]]] = [
        ("random JSON", 60, lambda: json.dumps(random_json(rng)).encode()),
        ("wrong type", 90, lambda: variant(wrong_type)),
        ("missing key", 30, lambda: variant(missing)),
        (
            "bad base64",
            8,
            lambda: variant(
                lambda m: m.update(
                    body=rng.choice(
                        ["!!!", m["body"][:-1], m["body"] + "=", m["body"].replace("W", "*", 1), " " + m["body"]]
                    )
                )
            ),
        ),
        (
            "body not UTF-8",
            6,
            lambda: variant(
                lambda m: m.update(
                    body=base64.b64encode(
                        rng.choice([b"\xff\xfe\x00", '[[{"é": 1}], {}, {}]'.encode("latin-1"), b"\xc3("])
                    ).decode()
                )
            ),
        ),
        (
            "body not JSON",
            6,
            lambda: variant(
                lambda m: m.update(
                    body=base64.b64encode(rng.choice([b"[[{}]", b"NaN", b"[1, 2, 3", b"[[1e999], {}, {}]"])).decode()
                )
            ),
        ),
        (
            "entry not UTF-8",
            8,
            lambda: rng.choice(
                [
                    b"\x00\xff\xfe",
                    '{"body": "é"}'.encode("latin-1"),
                    bytes(rng.randrange(256) for _ in range(64)),
                    json.dumps(template).encode()[:-1] + b"\xff}",
                ]
            ),
        ),
        ("huge field", 4, lambda: variant(huge)),
        ("compression bomb", 4, lambda: variant(bomb)),
        ("built-in task", 18, lambda: variant(lambda m: m["headers"].update(task=rng.choice(BUILTINS)))),
        (
            "chain/callbacks",
            16,
            lambda: variant(
                with_body(
                    [body[0], {}, {**EMBED, rng.choice(list(EMBED)): [{"task": rng.choice(BUILTINS), "args": []}]}]
                )
            ),
        ),
        (
            "extra args",
            10,
            lambda: variant(
                with_body(
                    rng.choice(
                        [
                            [[envelope, envelope], {}, EMBED],
                            [body[0], {"x": 1}, EMBED],
                            [[], {}, EMBED],
                            [body[0], {}],
                            [body[0], {}, EMBED, 1],
                            {"args": body[0]},
                        ]
                    )
                )
            ),
        ),
        (
            "eta/expires",
            10,
            lambda: variant(
                lambda m: m["headers"].update(
                    {rng.choice(["eta", "expires", "shadow", "group", "parent_id"]): "2030-01-01T00:00:00+00:00"}
                )
            ),
        ),
        ("mismatched id", 10, lambda: variant(mismatched_id)),
        (
            "invalid envelope",
            10,
            lambda: variant(
                with_body(
                    [
                        [
                            {
                                **envelope,
                                rng.choice(["workload", "job", "time_limit_s", "sweep_id", "job_id"]): rng.choice(
                                    WRONG[:13]
                                ),
                            }
                        ],
                        {},
                        EMBED,
                    ]
                )
            ),
        ),
        (
            "kombu type / duplicate key / deep",
            10,
            lambda: rng.choice(
                [
                    json.dumps(template)
                    .replace('"eta": null', '"eta": {"__type__": "datetime", "__value__": "2030-01-01T00:00:00"}')
                    .encode(),
                    json.dumps(template)
                    .replace('"lang": "py"', '"lang": "py", "task": "celery.accumulate"', 1)
                    .encode(),
                    b"[" * 100_000 + b"]" * 100_000,
                    json.dumps(template).replace('"priority": 0', '"priority": NaN').encode(),
                ]
            ),
        ),
    ]
    assert sum(n for _, n, _ in makers) == count
    for kind, n, make in makers:
        made = 0
        while made < n:
            raw = make()
            try:
                intake.admit(raw, QUEUE)
            except intake.Refused:
                made += 1
                yield kind, raw


def test_a_worker_survives_hundreds_of_malformed_entries(
    redis_url: str, start_worker, farm: Farm, tmp_path: Path
) -> None:
    print(f"intake fuzz: seed {SEED}, {COUNT} entries")
    client = redis.Redis.from_url(redis_url)
    template = real_message(redis_url)  # taken back before any worker runs: nothing consumes it
    entries = list(generate(template, SEED, COUNT))
    assert len(entries) == COUNT

    worker = start_worker("cpu-1")
    process = psutil.Process(worker.proc.pid)
    peak = process.memory_info().rss
    pipe = client.pipeline(transaction=False)
    for _, raw in entries:
        pipe.lpush(QUEUE, raw)
    pipe.execute()

    deadline = time.monotonic() + 300
    while int(client.get("farm:rejected:count") or 0) < COUNT and time.monotonic() < deadline:
        assert worker.proc.poll() is None, worker.text()[-3000:]
        peak = max(peak, process.memory_info().rss)
        time.sleep(0.05)
    refused = int(client.get("farm:rejected:count") or 0)
    end_rss = process.memory_info().rss
    print(f"intake fuzz: {refused} refused; worker RSS peak {peak >> 20} MB, at the end {end_rss >> 20} MB")
    assert refused == COUNT, worker.text()[-3000:]
    assert worker.proc.poll() is None, worker.text()[-3000:]
    assert end_rss < RSS_LIMIT and peak < RSS_LIMIT
    assert client.llen(QUEUE) == 0 and client.hlen("unacked") == 0
    assert not client.keys("farm:result:*") and not client.keys("farm:lease:*") and not client.keys("farm:state:*")
    assert client.llen("farm:rejected") == COUNT
    assert "Unrecoverable error" not in worker.text() and "Traceback" not in worker.text()

    # The same worker still runs a real job, and `farm status` counts every refusal.
    sid = farm.submit(write_sweep(tmp_path, "after-fuzz", jobs=1, epochs=1, samples=64))
    farm.wait_all_recorded(sid, 180)
    assert farm.statuses(sid) == {"succeeded": 1}
    assert farm.cli("status", sid)["rejected_messages"] == COUNT
    assert worker.proc.poll() is None
    wait_for(lambda: client.llen(QUEUE) == 0 and client.hlen("unacked") == 0, 30, "the job's message to be acked")


REDIS_FAULTS = ("wrong-typed queue", "wrong-typed ack key", "connections killed", "full for a moment")
"""The Redis-level faults of the second fuzz: a key the worker polls given another type, kombu's ``unacked``
hash or ``unacked_index`` zset given another type, every client connection reset (``CLIENT KILL TYPE normal``:
mid-BRPOP, mid-heartbeat, mid-record), and ``maxmemory`` reached for a moment (noeviction)."""

TYPE_MAKERS: dict[str, Callable[[redis.Redis, str], object]] = {
    "string": lambda r, k: r.set(k, "x"),
    "hash": lambda r, k: r.hset(k, "x", "1"),
    "set": lambda r, k: r.sadd(k, "x"),
    "zset": lambda r, k: r.zadd(k, {"x": 1}),
    "list": lambda r, k: r.rpush(k, "x"),
}


def redis_fault(rng: random.Random, r: redis.Redis, queues: list[str]) -> str:
    """Apply one random Redis-level fault; returns what it was. A queue that holds messages is left alone (its
    jobs' messages would only come back after the farm's in-flight grace period)."""
    kind = rng.choice(REDIS_FAULTS)
    if kind == "wrong-typed queue":
        key = rng.choice(queues) + rng.choice(["", "\x06\x163", "\x06\x166", "\x06\x169"])
        if r.exists(key):
            return "skipped (queue not empty)"
        TYPE_MAKERS[rng.choice(["string", "hash", "set", "zset"])](r, key)
    elif kind == "wrong-typed ack key":
        key, right = rng.choice([("unacked", "hash"), ("unacked_index", "zset")])
        r.delete(key)
        TYPE_MAKERS[rng.choice([t for t in TYPE_MAKERS if t != right])](r, key)
    elif kind == "connections killed":
        r.execute_command("CLIENT", "KILL", "TYPE", "normal")
    else:
        r.config_set("maxmemory", "1")
        time.sleep(rng.uniform(0.2, 2.0))
        r.config_set("maxmemory", "0")
    return kind


def test_a_worker_survives_redis_level_faults(redis_url: str, start_worker, farm: Farm, tmp_path: Path) -> None:
    """Random Redis-level faults (seeded, printed) while a real worker runs a sweep: it stays up, every job is
    recorded once and succeeded, and the same worker runs a job submitted afterwards."""
    from tests.faults.helpers import FAST

    print(f"redis fault fuzz: seed {SEED}")
    rng = random.Random(SEED)  # noqa: S311  (reproducible fuzzing, nothing secret)
    client = redis.Redis.from_url(redis_url)
    client.config_set("maxmemory-policy", "noeviction")
    worker = start_worker("cpu-1", **FAST)
    queues = sorted(q.decode() for q in client.smembers("farm:queues"))
    sid = farm.submit(write_sweep(tmp_path, "under-faults", jobs=4, epochs=3, samples=500))
    done = []
    for _ in range(40):
        done.append(redis_fault(rng, client, queues))
        assert worker.proc.poll() is None, (done, worker.text()[-3000:])
        time.sleep(rng.uniform(0.05, 0.5))
    print("redis fault fuzz:", {kind: done.count(kind) for kind in sorted(set(done))})
    farm.wait_all_recorded(sid, 300)
    assert farm.statuses(sid) == {"succeeded": 4}
    assert farm.check_ledger(sid)["recorded_twice"] == 0
    assert worker.proc.poll() is None, worker.text()[-3000:]
    assert "Unrecoverable error" not in worker.text()

    polled = [q + p for q in queues for p in ("", "\x06\x163", "\x06\x166", "\x06\x169")]
    wait_for(
        lambda: all(client.type(k) in (b"none", b"list") for k in polled), 30, "wrong-typed queues to be moved aside"
    )
    after = farm.submit(write_sweep(tmp_path, "after-faults", jobs=1, epochs=1, samples=64, units=30))
    farm.wait_all_recorded(after, 180)
    assert farm.statuses(after) == {"succeeded": 1}
    assert worker.proc.poll() is None
