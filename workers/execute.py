"""Handling one delivered job: validate it again, make sure nobody else runs it, run it, record it once.

At-least-once delivery meets exactly-once recording here: a job that already has a result is skipped; a job
whose lease another worker holds (Redis redelivered a long job, or someone re-enqueued it) is skipped; the
result is written with SET NX. A job whose process keeps dying is given up on after ``max_attempts``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from pydantic import ValidationError
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from farm import defaults, workloads
from farm.errors import problems_from_validation
from farm.fingerprint import GPUInfo, hardware_key, host_facts, software_key
from farm.job import JobEnvelope
from farm.ledger import Lease, Ledger, Outcome
from farm.queue import job_queue
from farm.result import EpochRecord, JobResult, JobStatus, Phases
from farm.rows import benchfarm_version
from farm.settings import FarmSettings
from farm.store import Store
from workers import key_types
from workers.blame import Blame, blame, signature, where
from workers.supervisor import ChildOutcome, WarmPool, run_child

log = logging.getLogger("farm.worker")


class JobExecutor:
    """One worker's job handler; the Celery task is a thin wrapper around :meth:`handle`."""

    def __init__(
        self,
        store: Store,
        settings: FarmSettings,
        worker_name: str,
        *,
        gpu_ids: list[str] | None = None,
        gpus: list[GPUInfo] | None = None,
        app: Celery | None = None,
        on_busy: Callable[[str | None], None] = lambda j: None,
    ) -> None:
        self.store = store
        self.ledger = Ledger(store)
        self.retry = durable_retry(settings.store_retry_s)
        self.settings = settings
        self.worker = worker_name
        self.gpu_ids = gpu_ids
        self.gpus = [g for g in (gpus or []) if gpu_ids is None or str(g.index) in gpu_ids]
        self.app: Celery | None = app
        self.consecutive_failures = 0
        self.failed_jobs: dict[str, str] = {}  # job id -> failure signature, of the failures blamed on this machine
        self.quarantined_at = 0.0
        self.stopped_consuming = False  # the worker's consumers were cancelled for its quarantine
        self.backends: set[str] | None = None  # the Keras backends this worker offers (None: not told)
        self.pool = WarmPool(enabled=settings.warm_start)
        self.received_at = 0.0
        self.quarantined: str | None = None
        self.on_busy = on_busy
        self.facts = host_facts()
        self.spool = Spool(Path(settings.cache_dir) / "spool" / worker_name.replace("/", "_"))
        self.job_in_hand: str | None = None  # whose keys a step that met a wrong-typed key repairs
        self.lease_in_hand: Lease | None = None  # the lease of the job being handled, kept while steps retry

    # -- message intake ---------------------------------------------------------------------------------------
    def validate(self, payload: Any) -> JobEnvelope | None:
        """The job again, from the wire: a payload that is not a valid job is logged and refused."""
        try:
            return JobEnvelope.model_validate(payload)
        except ValidationError as e:
            reason = "; ".join(str(p) for p in problems_from_validation(e))[:2000]
        except Exception as e:  # noqa: BLE001 - whatever fails to parse is a refused message, not a dead worker
            reason = f"{type(e).__name__}: {e}"[:2000]
        log.error("refused a message that is not a valid farm job: %s", reason)
        self.record_rejection(f"not a valid farm job: {reason}")
        return None

    def record_rejection(self, reason: str) -> None:
        """Keep the refused message's reason where ``farm status`` counts and shows it (Redis down: log only)."""
        try:
            self.store.record_rejection(reason, worker=self.worker)
        except redis.RedisError as e:
            log.warning("could not record the refused message: %s", e)

    def handle(self, payload: Any) -> str:
        """Run one delivery: receive, validate, lease, run, record. Returns what became of it (Celery's log)."""
        self.received_at = time.time()
        envelope = self.validate(payload)
        if envelope is None:
            return Outcome.rejected.value
        job_id = envelope.job_id
        self.check_keys(job_id)
        lacks = self.backends is not None and envelope.job.backend not in self.backends
        if lacks:
            # A last line: a job's queue names its backend, a worker consumes only its backends' queues and the
            # intake refuses a message off its job's own queue, so none should get here. One that does is not this
            # machine's failure: it goes back, after a pause, so that it does not spin between workers that cannot.
            log.warning("job %s needs the %s backend, which this worker does not offer", job_id, envelope.job.backend)
            time.sleep(defaults.HAND_BACK_PAUSE_S)
        if self.misfit(envelope):
            # The intake refuses a message on a queue that is not its job's; should one get here all the same,
            # it is not run on the wrong machine (host, device, GPU) nor failed there: it goes to its own queue.
            log.warning("job %s belongs on %s, which this worker does not serve", job_id, self._own_queue(envelope))
            lacks = True
        if self.quarantined or lacks:
            # This worker stopped taking jobs (or cannot run this one); hand it back for another worker.
            if self.app is not None:
                self._resilient(lambda: self.ledger.send(self.app, [envelope]), "hand back a job")
            return Outcome.handed_back.value
        if not self.store.knows_jobs([job_id])[0]:
            # Submit stores a job before its message goes out, so only a job deleted since (``farm forget``)
            # is unknown: running it would bring back keys of a sweep that no longer exists.
            log.warning("job %s belongs to no sweep in the store (forgotten?): dropped", job_id)
            return Outcome.unknown.value
        if self.store.has_result(job_id):
            log.info("job %s already has a result: skipped", job_id)
            return Outcome.duplicate.value
        lease = self.ledger.take(job_id, self.worker, self.settings.lease_ttl_s)
        if not isinstance(lease, Lease):
            log.warning("job %s is leased by %s: not running it twice", job_id, lease)
            return Outcome.leased.value
        self.lease_in_hand = lease  # renewed while a step after the run waits for Redis (see _resilient)
        try:
            if lease.attempt > self.settings.max_attempts:
                self.ledger.give_up(
                    lease,
                    envelope,
                    f"gave up after {lease.attempt - 1} attempts: the job's process died every time",
                    lease.attempt - 1,
                )
                return Outcome.failed.value
            return self._run(envelope, lease)
        finally:
            self.lease_in_hand = None
            self._resilient(lambda: self.ledger.release(lease), "release the lease")

    def _own_queue(self, envelope: JobEnvelope) -> str:
        return job_queue(envelope.job, self.store.p)

    def misfit(self, envelope: JobEnvelope) -> bool:
        """Whether the job's own queue is none that this worker consumes (the queues its app declares are those
        its hardware satisfies: device, GPU model and memory, host). Unknown without an app: it fits."""
        return self.app is not None and self._own_queue(envelope) not in self.app.amqp.queues

    # -- running ----------------------------------------------------------------------------------------------
    def _run(self, envelope: JobEnvelope, lease: Lease) -> str:
        job_id, attempt = envelope.job_id, lease.attempt
        started = self.store.now()  # the server's clock, as every heartbeat: `farm status` elsewhere ages them
        self.store.set_state(
            job_id,
            JobStatus.running,
            worker=self.worker,
            attempt=attempt,
            started_at=started,
            heartbeat_at=started,
            epoch=0,
            epochs=envelope.job.epochs,
            error=None,
        )
        self.on_busy(job_id)
        self.store.log_run(
            job_id, event="start", worker=self.worker, attempt=attempt, at=started, generation=lease.generation
        )
        stop = threading.Event()
        lost_lease: list[str] = []
        keepalive: list[Callable[[], None]] = []

        renewed = [time.monotonic()]

        def heartbeat() -> None:
            """Renew the lease. A Redis restart shorter than a lease costs nothing: the renewal that then
            succeeds takes the lease back if nobody took the job meanwhile."""
            while not stop.wait(self.settings.heartbeat_s):
                try:
                    if not self.ledger.renew(lease, self.settings.lease_ttl_s):
                        lost_lease.append(self.ledger.holder(job_id) or "the reaper")
                        return  # taken over: stop, record nothing
                    renewed[0] = time.monotonic()
                    self.store.update_progress(job_id, heartbeat_at=self.store.now(), generation=lease.generation)
                except Exception as e:  # noqa: BLE001 - Redis restarting: keep training, keep trying
                    log.warning("heartbeat for job %s failed: %s", job_id, e)

        def keep_child_alive() -> None:
            """Tell the child its worker is alive and holds the job, every heartbeat, on a thread of its own so
            that a slow Redis reply never delays a ping. If the worker is paused or hung, or the lease has not
            been renewed for a whole lease (the worker is cut off from Redis, or Redis is down), the pings stop
            and the child stops itself a keep-alive timeout later: a cut-off run is over within about two
            leases, not whenever the link comes back."""
            while not stop.wait(self.settings.heartbeat_s):
                if lost_lease:
                    return
                if time.monotonic() - renewed[0] < self.settings.lease_ttl_s:
                    for ping in keepalive:
                        ping()

        beat = threading.Thread(target=heartbeat, daemon=True)
        pinger = threading.Thread(target=keep_child_alive, daemon=True)
        beat.start()
        pinger.start()

        def on_event(event: dict[str, Any]) -> None:
            kind = event.get("event")
            fields: dict[str, Any] = {"heartbeat_at": self.store.now()}
            if kind == "epoch":
                fields.update(
                    epoch=event["epoch"], epochs=event["epochs"], loss=event.get("loss"), accuracy=event.get("accuracy")
                )
            elif kind == "ready":
                fields.update(phase="ready", child_pid=event.get("pid"))
            elif kind in ("phase", "started"):
                fields.update(phase=event.get("phase", kind))
            try:
                self.store.update_progress(job_id, generation=lease.generation, **fields)
            except Exception as e:  # noqa: BLE001 - progress is best effort; the result is not
                log.warning("progress of job %s not stored: %s", job_id, e)

        next_cancel_check = [0.0]

        def should_stop() -> str | None:
            """Asked every 0.2 s while the child runs; Redis is asked about a cancel at most every
            ``CANCEL_CHECK_S`` (five times fewer commands per running job, which count on a farm of hundreds)."""
            if lost_lease:
                return "lease_lost"
            now = time.monotonic()
            if now < next_cancel_check[0]:
                return None
            next_cancel_check[0] = now + defaults.CANCEL_CHECK_S
            try:
                return self._cancelled(envelope)
            except Exception:  # noqa: BLE001 - Redis restarting: not cancelled for now, asked again
                return None

        try:
            outcome = run_child(
                envelope,
                self.settings,
                on_event,
                gpu_ids=self.gpu_ids,
                should_stop=should_stop,
                pool=self.pool,
                keepalive=keepalive,
            )
        finally:
            stop.set()
            beat.join(timeout=5)
            pinger.join(timeout=5)
            self.on_busy(None)
        if outcome.status != "lease_lost" and not self._resilient(lambda: self.ledger.holds(lease), "check the lease"):
            outcome.status = "lease_lost"  # e.g. this worker was paused past its lease: its child stopped itself
            lost_lease.append(self.ledger.holder(job_id) or "another worker")
        if outcome.status not in ("lease_lost", "failed"):  # on disk before any step that may wait on Redis
            self.spool.put(build_result(envelope, outcome, lease.attempt, self.worker, self.facts, self.gpus))
        try:
            self._resilient(
                lambda: self.store.log_run(
                    job_id,
                    event="end",
                    worker=self.worker,
                    attempt=attempt,
                    at=self.store.now(),
                    ended=outcome.status,
                    generation=lease.generation,
                ),
                "log the run",
            )
        except redis.RedisError as e:  # the run's result matters more than its log line: record (or spool) it
            log.error("job %s: the run log misses this run's end (%s: %s)", job_id, type(e).__name__, e)
        if outcome.status == "lease_lost":
            log.error("job %s was taken over (%s): this run is abandoned and not recorded", job_id, lost_lease[0])
            return Outcome.abandoned.value
        if outcome.status == "failed":
            return self._failed(envelope, outcome, lease)
        if outcome.status == "succeeded":
            self.consecutive_failures = 0
            self.failed_jobs.clear()
        return self._record(envelope, outcome, lease)

    def _failed(self, envelope: JobEnvelope, outcome: ChildOutcome, lease: Lease) -> str:
        """A failed run: blamed on the job or on this machine (:mod:`workers.blame`), then tried again (on any
        worker) while attempts remain. A job that already failed the same way on another worker is broken, not
        the machines: it is recorded failed now, saying where, rather than sent round the farm again."""
        job_id, sig = envelope.job_id, signature(outcome)
        others: list[str] = self._resilient(
            lambda: self.ledger.note_failure(job_id, self.worker, sig), "note where the job failed"
        )
        if others or blame(outcome) is Blame.job:
            log.warning(
                "job %s failed in %s: the job's fault, not counted against worker %s",
                job_id,
                where(outcome),
                self.worker,
            )
        else:
            self._count_against_machine(job_id, sig, outcome)
        if others:
            first = (outcome.error or "failed").splitlines()[0]
            rest = "\n".join((outcome.error or "").splitlines()[1:])
            outcome.error = f"failed the same way on {' and '.join([*others, self.worker])}: {first}" + (
                f"\n{rest}" if rest else ""
            )
            return self._record(envelope, outcome, lease)
        if lease.attempt < self.settings.max_attempts and self.app is not None:
            app = self.app
            error = (outcome.error or "failed").splitlines()[0]
            state = self._resilient(
                lambda: self.ledger.requeue(
                    app,
                    lease,
                    envelope,
                    f"attempt {lease.attempt} on {self.worker}: {error}",
                    max_attempts=self.settings.max_attempts,
                ),
                "put the job back",
            )
            log.warning("job %s failed on attempt %d (%s): %s", envelope.job_id, lease.attempt, error, state)
            return Outcome.retrying.value
        return self._record(envelope, outcome, lease)

    def _count_against_machine(self, job_id: str, sig: str, outcome: ChildOutcome) -> None:
        """Count a failure blamed on this machine; stop taking jobs after ``quarantine_after`` distinct jobs in a
        row (one broken job retried here is not a broken machine). Before stopping, the failures whose job has
        since failed the same way on another worker are forgiven: those jobs were broken, not this machine."""
        self.failed_jobs.setdefault(job_id, sig)
        if len(self.failed_jobs) >= self.settings.quarantine_after:
            forgiven = self._resilient(lambda: self._failed_elsewhere(self.failed_jobs), "read where jobs failed")
            for other in forgiven:
                del self.failed_jobs[other]
        self.consecutive_failures = len(self.failed_jobs)
        if self.consecutive_failures < self.settings.quarantine_after:
            return
        self.quarantined_at = time.time()
        cooldown = self.settings.quarantine_cooldown_s
        lift = (
            f"lifted at {datetime.fromtimestamp(self.quarantined_at + cooldown, UTC):%H:%M:%S} UTC or by restarting "
            "the worker"
            if cooldown
            else "restart the worker to lift it"
        )
        self.quarantined = (
            f"{self.consecutive_failures} jobs in a row failed here ({where(outcome)}); the last: "
            f"{(outcome.error or 'failed').splitlines()[0][:300]}; {lift}"
        )
        log.error("worker %s stops taking jobs: %s", self.worker, self.quarantined)

    def _failed_elsewhere(self, failures: dict[str, str]) -> list[str]:
        """The jobs among ``failures`` (job id -> signature) that failed the same way on another worker too."""
        return [j for j, sig in failures.items() if self.ledger.failed_elsewhere(j, self.worker, sig)]

    def lift_quarantine(self, now: float | None = None) -> bool:
        """Take jobs again once the quarantine's cool-down has passed (a machine's trouble is often passing: a
        full disk cleaned, a driver reloaded); the count starts afresh, so a still-broken machine stops again
        after ``quarantine_after`` more failures. Returns whether it was lifted now."""
        cooldown = self.settings.quarantine_cooldown_s
        if not self.quarantined or not cooldown or (now or time.time()) < self.quarantined_at + cooldown:
            return False
        log.warning(
            "worker %s takes jobs again after a cool-down of %g s (%s)", self.worker, cooldown, self.quarantined
        )
        self.quarantined = None
        self.failed_jobs.clear()
        self.consecutive_failures = 0
        return True

    def _cancelled(self, envelope: JobEnvelope) -> str | None:
        return "cancelled" if self.ledger.cancelled(envelope.sweep_id, envelope.job_id) else None

    def _record(self, envelope: JobEnvelope, outcome: ChildOutcome, lease: Lease) -> str:
        """Record the run's result, once. The result goes to the worker's spool (JSON on its disk) first and
        leaves it once Redis has it (or has another run's): a Redis that is full, read-only or away for longer
        than the retries last, or a worker killed meanwhile, loses no trained result; a later start (or this
        worker's housekeeping) records it. The job's state says ``running`` until then, never a result that is
        not there."""
        result = build_result(envelope, outcome, lease.attempt, self.worker, self.facts, self.gpus)
        result.timeline.update(received_at=self.received_at or None, recorded_at=time.time())
        spooled = self.spool.put(result)
        try:
            written = self._resilient(lambda: self.ledger.record(lease, result), "record the result")
        except redis.RedisError as e:
            log.error(
                "job %s: Redis still refuses its result after %.0f s (%s: %s); it stays in %s and is recorded "
                "when Redis takes it",
                envelope.job_id,
                self.settings.store_retry_s,
                type(e).__name__,
                e,
                spooled,
            )
            return Outcome.spooled.value
        self.spool.drop(result.job_id)
        if written:
            log.info(
                "job %s %s%s",
                envelope.job_id,
                result.status.value,
                f": {result.error.splitlines()[0]}" if result.error else "",
            )
            return result.status.value
        if not self._resilient(lambda: self.ledger.holds(lease), "check the lease"):
            log.error(
                "job %s was taken over while its result was written: this run's record was refused", envelope.job_id
            )
            return Outcome.abandoned.value
        log.warning("job %s already had a result: this run's record was dropped", envelope.job_id)
        return Outcome.duplicate.value

    def replay_spool(self) -> int:
        """Record the results left in the spool by an earlier run of this worker (Redis full or away until the
        retries ran out, or the worker killed while it retried); returns how many were recorded. A result is
        written only if its job has none yet (``SET NX``), without the lease's fencing: its run ended long ago,
        its lease is gone, and a trained result must not be lost; a run of the same job that another worker
        started meanwhile then finds a result and records nothing. Never raises."""
        recorded = 0
        for result in self.spool.results():
            if self.lease_in_hand is not None and result.job_id == self.lease_in_hand.job_id:
                continue  # the job this worker is recording right now
            try:
                if self.store.record_result(result):
                    recorded += 1
                    log.warning("job %s: recorded its result from the spool", result.job_id)
            except redis.RedisError as e:
                log.warning("the spool's results wait: Redis refuses them (%s: %s)", type(e).__name__, e)
                return recorded
            self.spool.drop(result.job_id)
        return recorded

    def check_keys(self, job_id: str | None = None) -> None:
        """Move out of the way the farm's keys this job's run reads and writes that hold the wrong Redis type
        (see ``workers.key_types``). Never raises: a Redis that is away is met by the steps that follow."""
        if job_id is not None:
            self.job_in_hand = job_id
        jobs = [self.job_in_hand] if self.job_in_hand else []
        try:
            key_types.repair(
                self.store,
                key_types.expected_types(self.store, jobs),
                lambda reason, key: self.store.record_rejection(reason, worker=self.worker, queue=key),
            )
        except redis.RedisError as e:
            log.warning("could not check the farm's keys (%s: %s)", type(e).__name__, e)

    def _resilient(self, action: Callable[[], Any], what: str) -> Any:
        """Run a whole step the farm must not lose through a Redis restart again until it goes through, with
        redis-py's exponential backoff (0.2 s doubling to 5 s) for about ``store_retry_s``. The whole step, not
        each command: a watched transaction cannot be resumed half-way, and every step here is safe to repeat.

        Also retried: a full Redis (``OOM``: room comes back when someone prunes or raises ``maxmemory``), a
        read-only replica (a failover in progress) and a key of the wrong type, moved out of the way first
        (:meth:`check_keys`). Any other error reply (a refused command) is raised at once. While it waits, the
        lease of the job in hand is renewed (a full Redis still runs the renewal): a trained result is not
        abandoned because recording it took longer than a lease."""

        def attempt() -> Any:
            try:
                return action()
            except redis.ResponseError as e:
                if not key_types.wrong_type(e):
                    raise
                self.check_keys()
                raise WrongTypeRepaired(str(e)) from None

        done = threading.Event()
        keeper: list[threading.Thread] = []

        def failed(e: Exception) -> None:
            log.warning("could not %s (%s); retrying", what, e)
            lease = self.lease_in_hand
            if lease is not None and not keeper:  # the backoff outgrows a lease: renew on a heartbeat of its own
                keeper.append(threading.Thread(target=self._keep_lease, args=(lease, done), daemon=True))
                keeper[0].start()

        try:
            return self.retry.call_with_retry(attempt, failed)
        finally:
            done.set()

    def _keep_lease(self, lease: Lease, done: threading.Event) -> None:
        """Renew ``lease`` every heartbeat until ``done``, or until another holder took the job over."""
        while not done.wait(self.settings.heartbeat_s):
            try:
                if not self.ledger.renew(lease, self.settings.lease_ttl_s):
                    return
            except Exception as e:  # noqa: BLE001 - Redis away: renewed at the next heartbeat
                log.debug("lease renewal failed: %s", e)


class WrongTypeRepaired(redis.RedisError):
    """A step met a key of the wrong type, which was moved away: the step is tried again."""


class Spool:
    """Trained results not yet in Redis: one JSON file per job under the worker's cache directory, written
    before the first try to record and removed once Redis holds the job's result."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def path(self, job_id: str) -> Path:
        return self.dir / f"{job_id}.json"

    def put(self, result: JobResult) -> Path:
        """Write the result (atomically: a file either holds a whole result or is not there); returns its path.
        A disk that refuses is logged: recording to Redis goes on as before."""
        target = self.path(result.job_id)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".tmp")
            tmp.write_text(result.model_dump_json())
            os.replace(tmp, target)
        except OSError as e:
            log.warning("could not spool the result of job %s to %s: %s", result.job_id, target, e)
        return target

    def drop(self, job_id: str) -> None:
        try:
            self.path(job_id).unlink(missing_ok=True)
        except OSError as e:
            log.warning("could not remove %s from the spool: %s", job_id, e)

    def results(self) -> list[JobResult]:
        """The spooled results (an unreadable file is logged and left for the operator)."""
        out = []
        for path in sorted(self.dir.glob("*.json")) if self.dir.is_dir() else []:
            try:
                out.append(JobResult.model_validate_json(path.read_bytes()))
            except (OSError, ValueError) as e:
                log.error("spooled result %s cannot be read (%s): left there", path, e)
        return out


def durable_retry(seconds: float) -> Retry:
    """redis-py's Retry for steps that must outlast a Redis restart, a full Redis or a failover: about
    ``seconds`` of attempts."""
    backoff = ExponentialBackoff(cap=5.0, base=0.2)
    retries = max(1, int(seconds / 5.0) + 5)  # 0.2 + 0.4 + ... reaches the 5 s cap after five tries
    return Retry(backoff, retries, supported_errors=RETRIED)


RETRIED = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.BusyLoadingError,
    redis.OutOfMemoryError,
    redis.ReadOnlyError,
    WrongTypeRepaired,
    OSError,
)
"""What a step the farm must not lose waits out: Redis away, loading, full, read-only (a failover), or a key of
the wrong type that was just moved away."""


def fingerprint(
    envelope: JobEnvelope, facts: dict[str, Any], gpus: list[GPUInfo], ready: dict[str, Any], res: dict[str, Any]
) -> dict[str, Any]:
    """What makes a result comparable: the host, the device, the software, the data; and the keys derived
    from them (equal hardware keys ran on comparable hardware, equal software keys on the same stack)."""
    job = envelope.job
    versions = ready.get("versions", {})
    harness = benchfarm_version(facts)
    workload_version = workloads.get(job.workload).definition_hash()
    job_gpus = gpus if job.device == "gpu" else []
    if job.device == "gpu" and not job_gpus and res.get("device_name"):
        hw = f"gpu:{res['device_name']}"
    else:
        hw = hardware_key(facts, job_gpus, job.device)
    return {
        **facts,
        "gpus": [g.model_dump() for g in job_gpus],
        "versions": versions,
        "framework_build": ready.get("build", {}),
        "framework_sees_gpu": res.get("framework_sees_gpu"),
        "cuda_visible_devices": ready.get("cuda_visible_devices"),
        "keras_backend": ready.get("keras_backend"),
        "dtype_policy": res.get("dtype_policy"),
        "pid": ready.get("pid"),
        "forked": ready.get("forked"),
        "compile_cache": res.get("compile_cache"),
        "data": job.data,
        "dataset_digest": res.get("dataset_digest"),
        "data_name": res.get("data_name"),
        "flops_uncounted": res.get("flops_uncounted"),
        "hardware_key": hw,
        "software_key": software_key(versions, harness=harness, workload=workload_version) if versions else None,
        "workload_version": workload_version,
    }


COPIED_FROM_CHILD = (
    "device_name",
    "dataset_digest",
    "train_samples_used",
    "test_samples_used",
    "train_loss",
    "train_accuracy",
    "test_loss",
    "test_accuracy",
    "steps_per_epoch",
    "step_p50_s",
    "step_p90_s",
    "step_p99_s",
    "epochs_to_target",
    "time_to_target_s",
    "unit",
    "tokens_per_sample",
    "param_count",
    "flops_per_sample",
    "latency_requests",
    "latency_p50_s",
    "latency_p90_s",
    "latency_p99_s",
    "latency_mean_s",
)
"""Result fields the training process measures and the worker records as they are (each None when absent);
the rest are built here from the child's figures and the worker's own facts. ``JobResult`` validates them all."""


def build_result(
    envelope: JobEnvelope,
    outcome: ChildOutcome,
    attempt: int,
    worker: str,
    facts: dict[str, Any],
    gpus: list[GPUInfo] | None = None,
) -> JobResult:
    ready, res = outcome.ready, outcome.result
    contention = res.get("contention") or {}
    phases = dict(res.get("phases", {}))
    phases.update(spawn_s=ready.get("spawn_s"), import_s=ready.get("import_s"), import_cpu_s=ready.get("import_cpu_s"))
    if res.get("total_s") is not None:
        phases["total_s"] = res["total_s"]
        phases["exit_s"] = max(0.0, outcome.total_s - res["total_s"])
        known = ("spawn_s", "import_s", "wait_s", "data_s", "build_s", "train_s", "eval_s")
        phases["other_s"] = res["total_s"] - sum(phases.get(k) or 0.0 for k in known)
    else:
        phases["total_s"] = outcome.total_s or None
    error = outcome.error
    if error and outcome.stderr_tail and outcome.status == "failed":
        error = f"{error}\n--- stderr (tail) ---\n{outcome.stderr_tail[-3000:]}"
    environment = fingerprint(envelope, facts, gpus or [], ready, res)
    return JobResult(
        job_id=envelope.job_id,
        sweep_id=envelope.sweep_id,
        job=envelope.job,
        status=JobStatus(outcome.status),
        error=error,
        attempt=attempt,
        worker=worker,
        host=facts.get("host"),
        started_at=datetime.fromtimestamp(outcome.started_at, UTC) if outcome.started_at else None,
        versions=ready.get("versions", {}),
        environment=environment,
        epochs=[
            EpochRecord(**{k: v for k, v in e.items() if k in EpochRecord.model_fields}) for e in res.get("epochs", [])
        ],
        phases=Phases(**{k: v for k, v in phases.items() if k in Phases.model_fields}),
        stalls=res.get("stalls", []),
        timeline={
            **res.get("timeline", {}),
            "spawned_at": outcome.started_at or None,
            "job_started_at": outcome.job_started_at or None,
            "exited_at": (outcome.started_at + outcome.total_s) if outcome.started_at else None,
        },
        contention=contention.get("figures", {}),
        contended=bool(contention.get("contended")),
        contended_reasons=contention.get("reasons", []),
        throttled=bool(contention.get("throttled")),
        **{name: res.get(name) for name in COPIED_FROM_CHILD},
    )
