"""The farm's system of record, on Redis: sweep manifests, job specs and states, results, live workers.

Keys (``P`` is the key prefix, ``farm`` by default); nothing here expires except worker heartbeats:

- ``P:sweeps``                 zset of sweep ids by submission time
- ``P:sweep:SID``              the sweep's manifest (JSON: name, source, spec, submitted_at)
- ``P:sweep:SID:jobs``         list of its job ids in queue order
- ``P:job:JID``                the job's envelope (JSON), written once
- ``P:state:JID``              hash: state, queue, worker, attempt, epoch k/N, loss/accuracy, heartbeat, error
- ``P:result:JID``             the job's result (JSON), written once: ``SET NX``
- ``P:row:JID``                the result's tidy row (compact JSON, see ``farm.rows``), for fast reports;
                               written in the same transaction as the result and deleted with it
- ``P:rowparts``               hash: part reference → the values many rows share (cell, hardware, software);
                               content-addressed, so it only grows by distinct combinations
- ``P:history:JID``            earlier results that ``farm resume`` replaced (failed, timed out, cancelled)
- ``P:runs:JID``               one entry per run of the job: worker, attempt, start, end, how it ended
- ``P:attempts:JID``           how many times the job has been started (survives crashes; reset by resume)
- ``P:failures:JID``           hash: worker -> where and how the job failed there (a job failing the same way
                               on two workers is blamed, not the workers; reset by resume)
- ``P:lease:JID``              ``worker#generation`` of the run holding the job; expires unless renewed
- ``P:gen:JID``                the job's lease generation (fencing token): results are written only by its holder
- ``P:outbox``                 zset of jobs whose message is owed to a queue (claimed, not yet published)
- ``P:inflight``               zset of jobs whose message was published and that no worker has taken yet
- ``P:running``                set of jobs that a worker has started and not yet recorded or handed back
- ``P:cancel:SID`` / ``:JID``  present while a sweep (or job) is cancelled
- ``P:rejected``               the latest 1,000 messages workers refused, with the reason
- ``P:rejected:count``         how many messages workers have refused in all (never trimmed)
- ``P:worker:NAME``            a live worker's registration (JSON), expiring unless its heartbeat renews it

Results are written with ``SET NX`` so a job that ran twice (at-least-once delivery) is recorded once.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import redis
from redis.typing import EncodableT, FieldT

from farm import defaults
from farm.clock import ServerClock
from farm.errors import FarmUnavailable
from farm.job import JobEnvelope, sweep_name
from farm.result import JobResult, JobStatus
from farm.rows import result_row
from farm.rowstore import compact_row
from farm.settings import FarmSettings, mask_url, tls_files_missing

#: A job's own keys, deleted together by ``farm forget`` (:meth:`Store.delete_jobs`).
FORGET_KINDS = ("state", "result", "row", "history", "runs", "attempts", "failures", "cancel", "job")


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


T = TypeVar("T")


def _transaction(client: redis.Redis, func: Callable[[redis.client.Pipeline], T], *watches: str) -> T:
    """``client.transaction(func, *watches, value_from_callable=True)``, typed: redis-py declares ``func`` as
    returning None and the result as Any, though with ``value_from_callable`` the result is what ``func``
    returned (on its last try)."""
    none_func = cast("Callable[[redis.client.Pipeline], None]", func)
    return cast("T", client.transaction(none_func, *watches, value_from_callable=True))


# KEYS: a job's state hash, its generation   ARGV: generation, then field, value, ...
_FENCED_HSET = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""


class Store:
    """Typed access to the farm's keys. Every write that must happen once uses NX.

    The client decodes replies (``decode_responses=True``), which redis-py's types cannot express: they say
    ``bytes | str``. Replies are cast to ``str`` where they leave this class."""

    def __init__(
        self, client: redis.Redis, prefix: str = defaults.KEY_PREFIX, *, local_clock: Callable[[], float] = time.time
    ) -> None:
        self.r = client
        self.p = prefix
        self.clock = ServerClock(client, local=local_clock)
        self._fenced_hset = client.register_script(_FENCED_HSET)
        self._delete_jobs = client.register_script(_DELETE_JOBS)

    @classmethod
    def from_settings(cls, settings: FarmSettings) -> Store:
        return cls(connect(settings), settings.key_prefix)

    # -- keys -------------------------------------------------------------------------------------------------
    def k(self, *parts: str) -> str:
        return ":".join((self.p, *parts))

    def now(self) -> float:
        """The Redis server's time (epoch seconds): every moment that another host compares with its own "now"
        is stamped and read on it, never on this host's clock (see ``farm.clock``)."""
        return self.clock.now()

    # -- sweeps -----------------------------------------------------------------------------------------------
    def save_sweep(self, sweep_id: str, manifest: dict[str, Any], envelopes: list[JobEnvelope]) -> None:
        """Record a sweep and its jobs; idempotent (a re-submitted sweep keeps its first manifest)."""
        pipe = self.r.pipeline()
        pipe.set(self.k("sweep", sweep_id), json.dumps(manifest), nx=True)
        pipe.zadd(self.k("sweeps"), {sweep_id: self.now()}, nx=True)  # the order of sweeps of every submitter
        for env in envelopes:
            pipe.set(self.k("job", env.job_id), env.model_dump_json(), nx=True)
        pipe.execute()
        jobs_key = self.k("sweep", sweep_id, "jobs")
        if not self.r.exists(jobs_key):
            ids = [e.job_id for e in envelopes]
            for i in range(0, len(ids), 10_000):
                self.r.rpush(jobs_key, *ids[i : i + 10_000])
        # After the list, before any claim: a `farm forget` of a sweep of the same name deletes nothing from here
        # on without first reading this list (see delete_jobs), and what it deleted before, submit restores.
        self.r.incr(self.k("named", sweep_name(sweep_id)))

    def sweep_manifest(self, sweep_id: str) -> dict[str, Any] | None:
        raw = self.r.get(self.k("sweep", sweep_id))
        return json.loads(raw) if raw else None

    def sweep_job_ids(self, sweep_id: str) -> list[str]:
        return cast("list[str]", self.r.lrange(self.k("sweep", sweep_id, "jobs"), 0, -1))

    def sweep_ids(self) -> list[str]:
        return cast("list[str]", self.r.zrange(self.k("sweeps"), 0, -1))

    def resolve_sweep(self, prefix: str) -> str | None:
        """A sweep id from a unique prefix of it (or its name, picking the latest submission)."""
        ids = self.sweep_ids()
        if prefix in ids:
            return prefix
        matches = [s for s in ids if s.startswith(prefix)]
        return matches[-1] if matches else None

    # -- jobs -------------------------------------------------------------------------------------------------
    def envelope(self, job_id: str) -> JobEnvelope | None:
        raw = self.r.get(self.k("job", job_id))
        return JobEnvelope.model_validate_json(raw) if raw else None

    def envelopes(self, job_ids: list[str]) -> list[JobEnvelope | None]:
        return [JobEnvelope.model_validate_json(r) if r else None for r in self._mget("job", job_ids, 5000)]

    def _mget(self, kind: str, job_ids: list[str], chunk: int = 2000) -> Iterator[str | None]:
        """The raw values of ``kind`` for these jobs, in order, fetched ``chunk`` keys per round trip."""
        prefix = self.k(kind, "")
        for part in _chunks(job_ids, chunk):
            yield from cast("list[str | None]", self.r.mget([prefix + j for j in part]))

    def claim_many(self, jobs: list[tuple[str, str]]) -> set[str]:
        """Claim many jobs at once (job id, queue): the ids this call claimed. A job that has a result or a
        state is not claimed. Two pipelined round trips for any number of jobs."""
        claimed: set[str] = set()
        now = time.time()
        for chunk_start in range(0, len(jobs), 5000):
            chunk = jobs[chunk_start : chunk_start + 5000]
            pipe = self.r.pipeline(transaction=False)
            for job_id, _ in chunk:
                pipe.exists(self.k("result", job_id))
                pipe.hsetnx(self.k("state", job_id), "state", JobStatus.queued.value)
            replies = pipe.execute()
            pipe = self.r.pipeline(transaction=False)
            for (job_id, queue), has_result, won in zip(chunk, replies[0::2], replies[1::2], strict=True):
                if won and not has_result:
                    claimed.add(job_id)
                    pipe.hset(self.k("state", job_id), mapping={"queue": queue, "queued_at": now, "updated_at": now})
                elif won:  # a result without a state (written by hand or before states existed): leave it be
                    pipe.delete(self.k("state", job_id))
            pipe.execute()
        return claimed

    def mark_sent(self, sent: dict[str, float]) -> None:
        """When each job's message went to the broker (the start of its dispatch latency)."""
        pipe = self.r.pipeline(transaction=False)
        for job_id, at in sent.items():
            pipe.hset(self.k("state", job_id), "sent_at", at)
        pipe.execute()

    def unclaim(self, job_ids: Iterable[str]) -> None:
        ids = list(job_ids)
        if ids:
            self.r.delete(*[self.k("state", j) for j in ids])

    def set_state(self, job_id: str, state: JobStatus, **fields: Any) -> None:
        self.r.hset(self.k("state", job_id), mapping=_state_fields(state, **fields))

    def update_progress(self, job_id: str, *, generation: int | None = None, **fields: Any) -> bool:
        """Write a running job's progress fields. With ``generation`` (the writer's lease, see ``farm.ledger``)
        the write happens only while that generation is the job's current one, checked atomically with it: a
        worker that was cut off or paused and took a while to hear it lost the job can no longer scribble its
        run's epochs and heartbeats over the state of the run that replaced it. Returns whether it was written."""
        mapping: dict[FieldT, EncodableT] = {
            **{k: ("" if v is None else v) for k, v in fields.items()},
            "updated_at": time.time(),
        }
        if generation is None:
            self.r.hset(self.k("state", job_id), mapping=mapping)
            return True
        pairs = [str(x) for item in mapping.items() for x in item]
        return bool(self._fenced_hset(keys=[self.k("state", job_id), self.k("gen", job_id)], args=[generation, *pairs]))

    def state(self, job_id: str) -> dict[str, str]:
        return cast("dict[str, str]", self.r.hgetall(self.k("state", job_id)))

    def states(self, job_ids: list[str]) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        for chunk in _chunks(job_ids, 2000):
            pipe = self.r.pipeline(transaction=False)
            for j in chunk:
                pipe.hgetall(self.k("state", j))
            out.extend(pipe.execute())
        return out

    # -- results ----------------------------------------------------------------------------------------------
    def record_result(self, result: JobResult, *, generation: int | None = None) -> bool:
        """Write a job's result once; False (and nothing written) if it already has one or, when
        ``generation`` is given (a worker's lease, see ``farm.ledger``), if the job has been taken over since.

        The result (``SET NX``), its compact row, the row's shared part, the job's final state and its leaving
        the running set go in one ``MULTI``, watched on the result key and the job's generation: a row exists
        exactly when its result does, and describes that result; the state never says ``running`` beside a
        result; a worker that lost its lease, however late it wakes up, cannot write.

        Safe to repeat: a write whose reply was lost (Redis killed after the ``EXEC`` reached its append-only
        file, before it answered) and that is tried again finds this very result stored and returns True, so
        the worker does not log a recorded result as dropped."""
        key = self.k("result", result.job_id)
        gen_key = self.k("gen", result.job_id)
        record = result.model_dump_json()
        # The tidy row beside the full record: reports read rows with one MGET and json.loads, not a full
        # model validation per job.
        row, ref, part = compact_row(result_row(result))
        fenced = False

        def write(pipe: redis.client.Pipeline) -> bool:
            nonlocal fenced
            existing = pipe.get(key)
            if existing == record:  # this very write went through before (its reply was lost): done
                return True
            if generation is not None and pipe.get(gen_key) != str(generation):
                fenced = True  # another holder took the job over: its run is the one that counts
                return False
            if existing is not None:  # recorded already (a job that ran twice): the first result stands
                return False
            now = time.time()
            pipe.multi()
            pipe.set(key, record, nx=True)
            pipe.set(self.k("row", result.job_id), row)
            pipe.hsetnx(self.k("rowparts"), ref, part)
            pipe.hset(
                self.k("state", result.job_id),
                mapping=_state_fields(result.status, worker=result.worker, error=result.error, finished_at=now),
            )
            pipe.srem(self.k("running"), result.job_id)
            return True

        watched = (key, gen_key) if generation is not None else (key,)
        written = _transaction(self.r, write, *watched)
        if not written and not fenced:
            self.r.srem(self.k("running"), result.job_id)
        return bool(written)

    def record_results(self, results: list[JobResult], *, chunk: int = 1000) -> list[bool]:
        """:meth:`record_result` for many results (an import, a benchmark): the same writes and guarantees, a
        few round trips per ``chunk`` results. True for each result written, False where the job already had
        one (the first result stands)."""
        written: list[bool] = []
        for start in range(0, len(results), chunk):
            part = results[start : start + chunk]
            keys = [self.k("result", r.job_id) for r in part]
            records = [r.model_dump_json() for r in part]
            rows = [compact_row(result_row(r)) for r in part]
            with self.r.pipeline() as pipe:
                while True:
                    try:
                        pipe.watch(*keys)
                        # Checked after WATCH: a result written before it is seen here, one written after it
                        # makes EXEC fail and the chunk is tried again.
                        check = self.r.pipeline(transaction=False)
                        for key in keys:
                            check.exists(key)
                        seen: set[str] = set()
                        new = []
                        for r, exists in zip(part, check.execute(), strict=True):
                            new.append(not exists and r.job_id not in seen)  # a job twice: its first result
                            seen.add(r.job_id)
                        pipe.multi()
                        for r, key, record, (row, ref, shared), is_new in zip(
                            part, keys, records, rows, new, strict=True
                        ):
                            if is_new:
                                pipe.set(key, record, nx=True)
                                pipe.set(self.k("row", r.job_id), row)
                                pipe.hsetnx(self.k("rowparts"), ref, shared)
                        pipe.execute()
                        break
                    except redis.WatchError:
                        continue
            now = time.time()
            after = self.r.pipeline(transaction=False)
            for r, is_new in zip(part, new, strict=True):
                if is_new:
                    after.hset(
                        self.k("state", r.job_id),
                        mapping={
                            "state": r.status.value,
                            "updated_at": now,
                            "worker": r.worker or "",
                            "error": r.error or "",
                            "finished_at": now,
                        },
                    )
                after.srem(self.k("running"), r.job_id)
            after.execute()
            written.extend(new)
        return written

    def archive_result(self, job_id: str) -> bool:
        """Move a non-successful result to the job's history so the job can run again (``farm resume``)."""
        key = self.k("result", job_id)

        def move(pipe: redis.client.Pipeline) -> bool:
            raw = pipe.get(key)
            if raw is None:
                return False
            pipe.multi()  # the result and its row go together; watched, so a result is archived once
            pipe.rpush(self.k("history", job_id), raw)
            pipe.delete(key, self.k("row", job_id), self.k("attempts", job_id))
            return True

        return _transaction(self.r, move, key)

    def archive_results(self, job_ids: list[str], chunk: int = 1000) -> int:
        """:meth:`archive_result` for many jobs, one atomic script per ``chunk``; returns how many moved."""
        script = self.r.register_script(_ARCHIVE)
        moved = 0
        for part in _chunks(job_ids, chunk):
            keys = [
                k
                for j in part
                for k in (self.k("result", j), self.k("history", j), self.k("row", j), self.k("attempts", j))
            ]
            moved += int(script(keys=keys))
        return moved

    # -- forgetting -------------------------------------------------------------------------------------------
    def knows_jobs(self, job_ids: list[str]) -> list[bool]:
        """Whether each job's envelope is stored (a job of a sweep that ``farm forget`` deleted is not), in
        order (pipelined)."""
        return self._exist("job", job_ids)

    def restore_envelopes(self, envelopes: list[JobEnvelope]) -> int:
        """Store again the envelopes of these jobs that are missing (a `farm forget` of a sweep of the same name
        deleted them while this sweep was being saved); how many were missing."""
        known = self.knows_jobs([e.job_id for e in envelopes])
        missing = [e for e, k in zip(envelopes, known, strict=True) if not k]
        if missing:
            pipe = self.r.pipeline(transaction=False)
            for env in missing:
                pipe.set(self.k("job", env.job_id), env.model_dump_json(), nx=True)
            pipe.execute()
        return len(missing)

    def sweeps_named(self, name: str) -> int:
        """How many times a sweep named ``name`` was saved: :meth:`delete_jobs` deletes only while the count
        stays what it read, so a sweep of that name saved meanwhile (which may share jobs) is seen first."""
        return int(self.r.get(self.k("named", name)) or 0)

    def delete_jobs(self, job_ids: list[str], *, name: str = "", version: int = 0, chunk: int = 500) -> bool:
        """Delete everything stored of these jobs: envelope, state, result and its row, history, runs, attempts
        and cancel mark. Returns False, leaving the rest, as soon as the count of sweeps named ``name`` is no
        longer ``version`` (:meth:`sweeps_named`: a sweep of that name was saved since, and may list some of
        these jobs). Each chunk is one atomic script, so a job is gone whole or not at all. A job's generation
        counter stays, one higher, as a takeover leaves it: a worker paused since it held the job's lease can no
        longer record it, even if the same job is submitted again later."""
        for part in _chunks(job_ids, chunk):
            keys = [self.k("named", name), self.k("running")]
            keys += [k for j in part for k in (self.k("gen", j), *(self.k(kind, j) for kind in FORGET_KINDS))]
            if not int(self._delete_jobs(keys=keys, args=[version if name else "", *part])):
                return False
        return True

    def delete_sweep(self, sweep_id: str) -> None:
        """Delete the sweep's own keys (manifest, job list, cancel mark) and its entry in the list of sweeps."""
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(self.k("sweep", sweep_id), self.k("sweep", sweep_id, "jobs"), self.k("cancel", sweep_id))
        pipe.zrem(self.k("sweeps"), sweep_id)
        pipe.execute()

    def log_run(self, job_id: str, **fields: Any) -> None:
        self.r.rpush(self.k("runs", job_id), json.dumps(fields))

    def runs(self, job_id: str) -> list[dict[str, Any]]:
        return [json.loads(r) for r in self.r.lrange(self.k("runs", job_id), 0, -1)]

    def rejections(self) -> tuple[int, dict[str, Any] | None]:
        """The total of refused messages and the newest one kept, in one round trip. The total is the
        never-trimmed counter; a store written only by older workers (a list, no counter) counts its list."""
        pipe = self.r.pipeline(transaction=False)
        pipe.get(self.k("rejected", "count"))
        pipe.llen(self.k("rejected"))
        pipe.lindex(self.k("rejected"), 0)
        count, kept, newest = pipe.execute()
        try:
            latest = json.loads(newest) if newest else None
        except ValueError:
            latest = None
        return (int(count) if count else int(kept)), (latest if isinstance(latest, dict) else None)

    def have_results(self, job_ids: list[str]) -> list[bool]:
        """Whether each job has a result, in order (pipelined)."""
        return self._exist("result", job_ids)

    def _exist(self, kind: str, job_ids: list[str]) -> list[bool]:
        """Whether each job's ``kind`` key exists, in order, 5,000 a round trip."""
        out: list[bool] = []
        for chunk in _chunks(job_ids, 5000):
            pipe = self.r.pipeline(transaction=False)
            for j in chunk:
                pipe.exists(self.k(kind, j))
            out.extend(bool(n) for n in pipe.execute())
        return out

    def has_result(self, job_id: str) -> bool:
        return bool(self.r.exists(self.k("result", job_id)))

    def result(self, job_id: str) -> JobResult | None:
        raw = self.r.get(self.k("result", job_id))
        return JobResult.model_validate_json(raw) if raw else None

    def results(self, job_ids: list[str]) -> list[JobResult | None]:
        return [JobResult.model_validate_json(r) if r else None for r in self._mget("result", job_ids)]

    def raw_results(self, job_ids: list[str]) -> Iterator[str | None]:
        return self._mget("result", job_ids)

    def raw_rows(self, job_ids: list[str]) -> list[str | None]:
        """The stored rows of these jobs (JSON text; None where a job has none), in order."""
        return list(self._mget("row", job_ids, 10_000))

    def row_parts(self, refs: list[str]) -> list[str | None]:
        """The shared parts of compact rows by reference (JSON text; None where one is missing), in order."""
        out: list[str | None] = []
        for chunk in _chunks(refs, 10_000):
            out.extend(cast("list[str | None]", self.r.hmget(self.k("rowparts"), chunk)))
        return out

    # -- workers ----------------------------------------------------------------------------------------------
    def register_worker(self, name: str, info: dict[str, Any], ttl_s: float = defaults.WORKER_TTL_S) -> None:
        """The worker's registry entry (its info, expiring unless renewed) and its place in the registry's index
        (``P:workers``, scored by when the entry expires), in one round trip. The index lets ``farm workers``
        read the live workers in O(workers) whatever the size of the farm's history; entries that expired an
        hour ago leave it here. Scored and stamped on the server's clock: a reader on another host compares them
        with its own "now", and a worker whose host clock is off must not look dead (or immortal) to it."""
        now = self.now()
        pipe = self.r.pipeline(transaction=False)
        pipe.set(self.k("worker", name), json.dumps({**info, "heartbeat_at": now}), px=int(ttl_s * 1000))
        pipe.zadd(self.k("workers"), {name: now + ttl_s})
        pipe.zremrangebyscore(self.k("workers"), "-inf", now - 3600)
        pipe.execute()

    def unregister_worker(self, name: str) -> None:
        pipe = self.r.pipeline(transaction=False)
        pipe.delete(self.k("worker", name))
        pipe.zrem(self.k("workers"), name)
        pipe.execute()

    def live_workers(self) -> list[dict[str, Any]]:
        """Every live worker's entry, by name. From the registry's index; a Redis that has none (its workers all
        predate it) is scanned for entries instead. Expiries are on the server's clock (:meth:`register_worker`),
        and so is the "now" they are compared with."""
        index = self.k("workers")
        names = cast("list[str]", self.r.zrangebyscore(index, self.now(), "+inf"))
        if names or self.r.exists(index):
            keys = [self.k("worker", n) for n in sorted(names)]
        else:
            keys = sorted(self.r.scan_iter(match=self.k("worker", "*"), count=1000))
        if not keys:
            return []
        return [json.loads(v) for v in self.r.mget(keys) if v]

    # -- the farm's queues ------------------------------------------------------------------------------------
    def note_queues(self, queues: Iterable[str]) -> None:
        """Remember queue names that hold, or may hold, farm messages (``P:queues``): every queue a job is
        published to and every queue a worker consumes. Looking for a job's message then reads those queues
        instead of scanning all of Redis' keys, which grow with the farm's history."""
        names = sorted(set(queues))
        if names:
            self.r.sadd(self.k("queues"), *names)

    def known_queues(self) -> list[str] | None:
        """The queues noted so far, or None when none were ever noted (data written before the farm noted them:
        scan for them instead)."""
        names = cast("set[str]", self.r.smembers(self.k("queues")))
        return sorted(names) if names else None

    # -- refused messages -------------------------------------------------------------------------------------
    def record_rejection(
        self,
        reason: str,
        *,
        worker: str,
        queue: str = "",
        raw: bytes | str = b"",
        size: int | None = None,
        keep: int = 1000,
        excerpt: int = 2048,
    ) -> int:
        """Keep a message a worker refused, for inspection, and count it; returns the total refused so far.

        ``P:rejected`` keeps the latest ``keep`` (newest first): when, which worker, which queue, why, the raw
        size and the first ``excerpt`` bytes of the raw message as escaped text (it may be anything: binary,
        not UTF-8, megabytes). ``P:rejected:count`` is never trimmed, so ``farm status`` shows the total."""
        data = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else bytes(raw)
        entry = {
            "at": time.time(),
            "worker": worker,
            "queue": queue,
            "reason": reason[:2000],
            "size": len(data) if size is None else size,
            "raw": data[:excerpt].decode("utf-8", "backslashreplace"),
        }
        pipe = self.r.pipeline()
        pipe.lpush(self.k("rejected"), json.dumps(entry))
        pipe.ltrim(self.k("rejected"), 0, keep - 1)
        pipe.incr(self.k("rejected", "count"))
        return int(pipe.execute()[-1])


# KEYS: the counter of sweeps of a name, the running set, then per job its generation and its FORGET_KINDS keys.
# ARGV: the counter's expected value ("" for no check), then the job ids. Nothing is deleted if the counter moved.
_DELETE_JOBS = f"""
if ARGV[1] ~= '' and (redis.call('GET', KEYS[1]) or '0') ~= ARGV[1] then return 0 end
for i = 3, #KEYS, {1 + len(FORGET_KINDS)} do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('INCR', KEYS[i]) end
  redis.call('DEL', unpack(KEYS, i + 1, i + {len(FORGET_KINDS)}))
end
if #ARGV > 1 then redis.call('SREM', KEYS[2], unpack(ARGV, 2)) end
return 1
"""

# KEYS: (result, history, row, attempts) per job. Moves each present result to its history, with its row.
_ARCHIVE = """
local moved = 0
for i = 1, #KEYS, 4 do
  local raw = redis.call('GET', KEYS[i])
  if raw then
    redis.call('RPUSH', KEYS[i + 1], raw)
    redis.call('DEL', KEYS[i], KEYS[i + 2], KEYS[i + 3])
    moved = moved + 1
  end
end
return moved
"""


def _state_fields(state: JobStatus, **fields: Any) -> dict[FieldT, EncodableT]:
    """A job's state hash fields for ``state`` (None values stored as empty strings), stamped now."""
    return {"state": state.value, "updated_at": time.time(), **{k: ("" if v is None else v) for k, v in fields.items()}}


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
