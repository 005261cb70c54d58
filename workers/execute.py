"""Handling one delivered job: validate it again, make sure nobody else runs it, run it, record it once.

At-least-once delivery meets exactly-once recording here: a job that already has a result is skipped; a job
whose lease another worker holds (Redis redelivered a long job, or someone re-enqueued it) is skipped; the
result is written with SET NX. A job whose process keeps dying is given up on after ``max_attempts``.

:meth:`JobExecutor.handle` reads a job's life top to bottom; each idea it uses lives in a module of its own:
the heartbeat and the child's keep-alive (:mod:`workers.lease_keeper`), the cancel watch
(:mod:`workers.cancel_watch`), whom a failure counts against and when a worker stops taking jobs
(:mod:`workers.quarantine`, :mod:`workers.blame`), the result (:mod:`workers.result_build`), the result spool
(:mod:`workers.spool`) and what a step that must not be lost waits out (:mod:`workers.durable`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from pydantic import ValidationError

from farm import defaults
from farm.errors import problems_from_validation
from farm.fingerprint import GPUInfo, host_facts
from farm.job import JobEnvelope
from farm.ledger import Lease, Ledger, Outcome
from farm.queue import job_queue
from farm.result import JobResult, JobStatus
from farm.settings import FarmSettings
from farm.store import Store
from farm.validity import Limits
from workers import key_types
from workers.batch_search import measure_at_max_batch
from workers.blame import signature, where
from workers.cancel_watch import CancelWatch
from workers.cell_extension import extend_cell
from workers.durable import RETRIED, WrongTypeRepaired, durable_retry
from workers.gpu_locks import GpuWaitStopped, gpus_held
from workers.lease_keeper import Heartbeat, KeepAlive
from workers.own_processes import local_redis
from workers.quarantine import Quarantine, counts_against_machine, failed_the_same_way, requeue
from workers.result_build import COPIED_FROM_CHILD, build_result, fingerprint
from workers.spool import Spool
from workers.supervisor import ChildOutcome, WarmPool, run_child

__all__ = [
    "COPIED_FROM_CHILD",
    "RETRIED",
    "JobExecutor",
    "Spool",
    "WrongTypeRepaired",
    "build_result",
    "durable_retry",
    "fingerprint",
]

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
        self.limits = Limits(settings.min_steady_s, settings.min_steady_steps, settings.max_clock_change)
        self.worker = worker_name
        self.gpu_ids = gpu_ids
        self.gpus = [g for g in (gpus or []) if gpu_ids is None or str(g.index) in gpu_ids]
        # The host-wide locks of the GPUs this worker is pinned to (workers.gpu_locks), by UUID where known.
        self.gpu_keys = [g.uuid or f"gpu{g.index}" for g in self.gpus] if gpu_ids else []
        self.app: Celery | None = app
        self.policy = Quarantine(worker_name, settings.quarantine_after, settings.quarantine_cooldown_s)
        self.stopped_consuming = False  # the worker's consumers were cancelled for its quarantine
        self.backends: set[str] | None = None  # the Keras backends this worker offers (None: not told)
        self.pool = WarmPool(enabled=settings.warm_start)
        self.received_at = 0.0
        self.on_busy = on_busy
        self.facts = host_facts()
        self._farm_pids: list[int] | None = None
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
        self.check_keys(envelope.job_id)
        refused = self._refuse(envelope)
        if refused is not None:
            return refused
        lease = self.ledger.take(envelope.job_id, self.worker, self.settings.lease_ttl_s)
        if not isinstance(lease, Lease):
            log.warning("job %s is leased by %s: not running it twice", envelope.job_id, lease)
            return Outcome.leased.value
        self.lease_in_hand = lease  # renewed while a step after the run waits for Redis (see _resilient)
        try:
            if lease.attempt > self.settings.max_attempts:
                return self._give_up(envelope, lease)
            return self._run(envelope, lease)
        finally:
            self.lease_in_hand = None
            self._resilient(lambda: self.ledger.release(lease), "release the lease")

    def _refuse(self, envelope: JobEnvelope) -> str | None:
        """What becomes of a job this worker does not run (handed back, unknown, already recorded); None: run it."""
        job_id = envelope.job_id
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
        return None

    def _give_up(self, envelope: JobEnvelope, lease: Lease) -> str:
        """A job leased more often than ``max_attempts``: its process died every time, it is recorded failed."""
        tries = lease.attempt - 1
        reason = f"gave up after {tries} attempts: the job's process died every time"
        self.ledger.give_up(lease, envelope, reason, tries)
        return Outcome.failed.value

    def _own_queue(self, envelope: JobEnvelope) -> str:
        return job_queue(envelope.job, self.store.p)

    def misfit(self, envelope: JobEnvelope) -> bool:
        """Whether the job's own queue is none that this worker consumes (the queues its app declares are those
        its hardware satisfies: device, GPU model and memory, host). Unknown without an app: it fits."""
        return self.app is not None and self._own_queue(envelope) not in self.app.amqp.queues

    # -- running ----------------------------------------------------------------------------------------------
    def _run(self, envelope: JobEnvelope, lease: Lease) -> str:
        """The run, top to bottom: mark it running, keep its lease and its child alive, watch for a cancel while
        the child runs, then check the lease is still ours, spool the result, log the end, record or retry."""
        self._mark_running(envelope, lease)
        pings: list[Callable[[], None]] = []  # filled by the supervisor once the child is up
        heartbeat = Heartbeat(
            self.ledger,
            lease,
            self.settings.lease_ttl_s,
            self.settings.heartbeat_s,
            on_renewed=lambda: self.store.update_progress(
                lease.job_id, heartbeat_at=self.store.now(), generation=lease.generation
            ),
        ).start()
        keepalive = KeepAlive(heartbeat, pings, self.settings.lease_ttl_s, self.settings.heartbeat_s).start()
        watch = CancelWatch(lambda: self._cancelled(envelope), lambda: heartbeat.lost)

        def launch(one: JobEnvelope) -> ChildOutcome:
            """One process of this run: the job itself, or one try of its batch search."""
            pings.clear()  # the keep-alive pings the running child only
            return run_child(
                one,
                self.settings,
                partial(self._progress, lease),
                gpu_ids=self.gpu_ids,
                should_stop=watch,
                pool=self.pool,
                keepalive=pings,
                farm_pids=self.farm_pids,
            )

        try:
            with gpus_held(self.gpu_keys, watch):  # one job per GPU, whichever worker of this host runs it
                outcome = measure_at_max_batch(envelope, launch) if envelope.job.batch_search else launch(envelope)
        except GpuWaitStopped as stopped:
            outcome = ChildOutcome(status=stopped.reason, error=f"stopped while waiting for its GPUs: {stopped.reason}")
        finally:
            keepalive.stop()
            heartbeat.stop()
            self.on_busy(None)
        lost_to = heartbeat.lost_to
        if outcome.status != "lease_lost" and not self._resilient(lambda: self.ledger.holds(lease), "check the lease"):
            outcome.status = "lease_lost"  # e.g. this worker was paused past its lease: its child stopped itself
            lost_to = self.ledger.holder(lease.job_id) or "another worker"
        if outcome.status not in ("lease_lost", "failed"):  # on disk before any step that may wait on Redis
            self.spool.put(
                build_result(envelope, outcome, lease.attempt, self.worker, self.facts, self.gpus, self.limits)
            )
        self._log_end(lease, outcome)
        if outcome.status == "lease_lost":
            log.error("job %s was taken over (%s): this run is abandoned and not recorded", lease.job_id, lost_to)
            return Outcome.abandoned.value
        if outcome.status == "failed":
            return self._failed(envelope, outcome, lease)
        if outcome.status == "succeeded":
            self.policy.succeeded()
        return self._record(envelope, outcome, lease)

    def _mark_running(self, envelope: JobEnvelope, lease: Lease) -> None:
        """The job's state says running here, from the server's clock (as every heartbeat: ``farm status``
        elsewhere ages them), and the run log notes the start."""
        started = self.store.now()
        self.store.set_state(
            envelope.job_id,
            JobStatus.running,
            worker=self.worker,
            attempt=lease.attempt,
            started_at=started,
            heartbeat_at=started,
            epoch=0,
            epochs=envelope.job.epochs,
            error=None,
        )
        self.on_busy(envelope.job_id)
        self.store.log_run(
            envelope.job_id,
            event="start",
            worker=self.worker,
            attempt=lease.attempt,
            at=started,
            generation=lease.generation,
        )

    def _progress(self, lease: Lease, event: dict[str, Any]) -> None:
        """Note the child's progress event (an epoch, a phase, ready) on the job's state, fenced by the lease."""
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
        elif kind == "waiting":  # for a quiet host (workers.quiet): `farm status` shows the note while it lasts
            note = str(event.get("note") or "")[:200]
            fields.update(phase="waiting" if note else "train", note=note)
        try:
            self.store.update_progress(lease.job_id, generation=lease.generation, **fields)
        except Exception as e:  # noqa: BLE001 - progress is best effort; the result is not
            log.warning("progress of job %s not stored: %s", lease.job_id, e)

    def _log_end(self, lease: Lease, outcome: ChildOutcome) -> None:
        """Note the run's end in the run log; one that cannot be written does not stop the record."""
        try:
            self._resilient(
                lambda: self.store.log_run(
                    lease.job_id,
                    event="end",
                    worker=self.worker,
                    attempt=lease.attempt,
                    at=self.store.now(),
                    ended=outcome.status,
                    generation=lease.generation,
                ),
                "log the run",
            )
        except redis.RedisError as e:  # the run's result matters more than its log line: record (or spool) it
            log.error("job %s: the run log misses this run's end (%s: %s)", lease.job_id, type(e).__name__, e)

    def _failed(self, envelope: JobEnvelope, outcome: ChildOutcome, lease: Lease) -> str:
        """A failed run: blamed on the job or on this machine (:mod:`workers.blame`), then tried again (on any
        worker) while attempts remain. A job that already failed the same way on another worker is broken, not
        the machines: it is recorded failed now, saying where, rather than sent round the farm again."""
        job_id, sig = envelope.job_id, signature(outcome)
        others: list[str] = self._resilient(
            lambda: self.ledger.note_failure(job_id, self.worker, sig), "note where the job failed"
        )
        if counts_against_machine(outcome, others):
            self._count_against_machine(job_id, sig, outcome)
        else:
            log.warning(
                "job %s failed in %s: the job's fault, not counted against worker %s",
                job_id,
                where(outcome),
                self.worker,
            )
        if others:
            outcome.error = failed_the_same_way(outcome, others, self.worker)
            return self._record(envelope, outcome, lease)
        if self.app is not None and requeue(lease.attempt, self.settings.max_attempts):
            return self._requeue(self.app, envelope, outcome, lease)
        return self._record(envelope, outcome, lease)

    def _requeue(self, app: Celery, envelope: JobEnvelope, outcome: ChildOutcome, lease: Lease) -> str:
        """Put a failed job back on its queue for another attempt, anywhere, saying where and why this one failed."""
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

    # -- the failure policy (workers.quarantine), read by the worker and its task --------------------------------
    def _count_against_machine(self, job_id: str, sig: str, outcome: ChildOutcome) -> None:
        """Count a failure blamed on this machine (see :meth:`workers.quarantine.Quarantine.count`)."""
        self.policy.count(
            job_id, sig, outcome, lambda f: self._resilient(lambda: self._failed_elsewhere(f), "read where jobs failed")
        )

    def _failed_elsewhere(self, failures: dict[str, str]) -> list[str]:
        """The jobs among ``failures`` (job id -> signature) that failed the same way on another worker too."""
        return [j for j, sig in failures.items() if self.ledger.failed_elsewhere(j, self.worker, sig)]

    def lift_quarantine(self, now: float | None = None) -> bool:
        """Take jobs again once the quarantine's cool-down has passed; returns whether it was lifted now."""
        return self.policy.lift(now)

    @property
    def quarantined(self) -> str | None:
        """Why this worker stopped taking jobs; None while it takes them."""
        return self.policy.reason

    @quarantined.setter
    def quarantined(self, reason: str | None) -> None:
        self.policy.reason = reason

    @property
    def quarantined_at(self) -> float:
        return self.policy.quarantined_at

    @property
    def failed_jobs(self) -> dict[str, str]:
        return self.policy.failed_jobs

    @property
    def consecutive_failures(self) -> int:
        return self.policy.consecutive_failures

    @property
    def farm_pids(self) -> list[int]:
        """The farm's Redis when it runs on this host (asked once): its jobs do not count its CPU as others'."""
        if self._farm_pids is None:
            self._farm_pids = local_redis(self.store)
        return self._farm_pids

    def _result(self, envelope: JobEnvelope, outcome: ChildOutcome, lease: Lease) -> JobResult:
        """The run's result as this worker builds it (its facts, devices and validity limits)."""
        return build_result(envelope, outcome, lease.attempt, self.worker, self.facts, self.gpus, self.limits)

    def _cancelled(self, envelope: JobEnvelope) -> bool:
        return self.ledger.cancelled(envelope.sweep_id, envelope.job_id)

    def _record(self, envelope: JobEnvelope, outcome: ChildOutcome, lease: Lease) -> str:
        """Record the run's result, once. The result goes to the worker's spool (JSON on its disk) first and
        leaves it once Redis has it (or has another run's): a Redis that is full, read-only or away for longer
        than the retries last, or a worker killed meanwhile, loses no trained result; a later start (or this
        worker's housekeeping) records it. The job's state says ``running`` until then, never a result that is
        not there."""
        result = self._result(envelope, outcome, lease)
        result.timeline.update(received_at=self.received_at or None, recorded_at=time.time())
        spooled = self.spool.put(result)
        self._extend_cell(envelope, result)
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

    def _extend_cell(self, envelope: JobEnvelope, result: JobResult) -> None:
        """A cell measured to a precision: judge it with this result and add the repeats it still needs
        (workers/cell_extension.py), before the result is recorded: a crash in between re-runs this job, which
        judges again. Never fails the job: a cell that could not be extended is logged."""
        if envelope.job.precision is None or self.app is None or self._cancelled(envelope):
            return
        app = self.app
        try:
            self._resilient(lambda: extend_cell(self.store, self.ledger, app, envelope, result), "extend the cell")
        except Exception:  # the measured result is what matters; the cell's state is logged
            log.exception("job %s: could not judge its cell for more repeats", envelope.job_id)

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

        keeper: Heartbeat | None = None

        def failed(e: Exception) -> None:
            nonlocal keeper
            log.warning("could not %s (%s); retrying", what, e)
            lease = self.lease_in_hand
            if lease is not None and keeper is None:  # the backoff outgrows a lease: renew on a heartbeat of its own
                ttl, every = self.settings.lease_ttl_s, self.settings.heartbeat_s
                keeper = Heartbeat(self.ledger, lease, ttl, every, log_level=logging.DEBUG).start()

        try:
            return self.retry.call_with_retry(attempt, failed)
        finally:
            if keeper is not None:
                keeper.stop(wait=False)
