"""``farm worker``: probe the machine, register, and consume the queues of this worker's tags, one job at a time.

The Celery worker runs with the solo pool: the worker process itself supervises the job, and the training
happens in a fresh child process per job, so there is nothing to gain from Celery's own process pool.

Every entry popped from a queue passes the farm's admission check first (``workers.poison``), and the worker
ends with Celery's exit code: non-zero when its consumer died, so a supervisor (systemd's
``Restart=on-failure``, the fleet) restarts it. ``app.worker_main`` would drop that code and exit 0.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import sys
import threading
import time
from collections.abc import Callable

import redis
from celery import Celery
from celery.utils.nodenames import default_nodename, host_format

from farm import __version__, defaults
from farm.errors import FarmUnavailable
from farm.fingerprint import GPUInfo
from farm.lifecycle import reap_lost
from farm.queue import make_app
from farm.safe_text import log_handler
from farm.settings import FarmSettings, mask_url
from farm.store import Store
from workers import poison
from workers.execute import JobExecutor
from workers.plans import WorkerPlan
from workers.task import register

log = logging.getLogger("farm.worker")

STARTUP_RETRY_FIRST_S = 1.0
"""The first wait before trying an unreachable Redis again at start; each further wait doubles."""

STARTUP_RETRY_CAP_S = 30.0
"""The longest wait between tries at start: a broker that comes back is found within half a minute."""


def connect_with_backoff(
    settings: FarmSettings,
    *,
    first_s: float = STARTUP_RETRY_FIRST_S,
    cap_s: float = STARTUP_RETRY_CAP_S,
    sleep: Callable[[float], None] = time.sleep,
) -> Store:
    """The farm's store, waiting for Redis as long as it takes.

    A lab machine often boots before the broker, or loses its route to it for a while. A worker that exits
    instead is restarted by its supervisor (systemd's ``Restart=on-failure``, the fleet) in a tight loop, each
    start re-importing Celery and probing the hardware; this one stays up and says why it waits, one line per
    try: the reason and the next wait. Waits double from ``first_s`` to ``cap_s``, with ±20% jitter so that a
    lab of workers that lost Redis together does not come back in lockstep."""
    delay, failures = first_s, 0
    while True:
        try:
            store = Store.from_settings(settings)
        except FarmUnavailable as e:
            failures += 1
            wait = delay * random.uniform(0.8, 1.2)  # noqa: S311  (jitter, nothing secret)
            log.error("%s (try %d; trying again in %.1f s)", e, failures, wait)
            sleep(wait)
            delay = min(cap_s, delay * 2)
            continue
        if failures:
            log.info(
                "reached Redis at %s after %d failed tr%s",
                mask_url(settings.broker_url),
                failures,
                "y" if failures == 1 else "ies",
            )
        return store


PERMISSIONS_HINT = (
    "a worker needs Redis' read, write, keyspace, Lua script and pub/sub commands "
    "(ACL: +@read +@write +@keyspace +@scripting +@pubsub +@connection, or +@all)"
)


def check_permissions(store: Store, settings: FarmSettings, name: str) -> None:
    """Fail at start, in one line naming the refused command, when the broker URL's Redis user may not run what
    a worker runs (an ACL user without ``EVAL``/``EVALSHA``, a read-only user); a worker that started anyway would
    fail every job and every heartbeat. A full Redis (``OOM``) is not a refusal: the worker starts and waits."""
    probe = store.k("probe", name)
    steps: list[Callable[[], object]] = [
        lambda: store.r.register_script("return 1")(),  # EVALSHA, then EVAL: the ledger's scripts
        lambda: store.r.set(probe, "1", px=1000),
        lambda: store.r.delete(probe),
    ]
    for step in steps:
        try:
            step()
        except redis.exceptions.NoPermissionError as e:
            where = mask_url(settings.broker_url)
            raise FarmUnavailable(f"Redis at {where} refused this user a command: {e}; {PERMISSIONS_HINT}") from None
        except (redis.OutOfMemoryError, redis.ReadOnlyError):
            return


def name_taken(store: Store, name: str) -> str | None:
    """Why this worker may not start under ``name``: a live worker has it (one line), or None. Two workers of
    one name would share one registry entry and one quarantine count, and ``farm workers`` would show one. An
    entry left by a worker of this name that died on this host (its pid is gone) does not count."""
    entry = store.worker(name)
    if entry is None:
        return None
    try:
        host, pid = str(entry.get("host") or "?"), int(entry.get("pid") or 0)
    except (ValueError, TypeError):
        return None  # not a worker's entry: this worker's first heartbeat replaces it
    if host == socket.gethostname() and (pid == os.getpid() or not pid_alive(pid)):
        return None
    return f"a live worker named {name} already runs on host {host} (pid {pid}); choose another --name"


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_worker(settings: FarmSettings, plan: WorkerPlan, *, loglevel: str = "INFO") -> int:
    """Run a Celery worker for ``plan`` until it shuts down (Ctrl-C / SIGTERM, or its consumer died); returns
    its exit code (0 after a requested shutdown)."""
    logging.basicConfig(level=loglevel, handlers=[log_handler()])  # no stranger's control characters
    poison.install_transport_guard()  # before this process opens any kombu connection
    store = connect_with_backoff(settings)
    check_permissions(store, settings, plan.name)
    taken = name_taken(store, plan.name)
    if taken:
        print(f"error: {taken}", file=sys.stderr)
        return 2
    presence = Presence(store, settings, plan)
    app = worker_app(settings, plan)
    executor = job_executor(store, settings, plan, app, on_busy=presence.set_busy)
    presence.executor = executor
    record_refusals(store, settings, plan)
    register(app, executor)
    stop = threading.Event()
    presence.announce()
    executor.replay_spool()
    start_background_threads(stop, presence, app, executor)
    log.info("worker %s serving %s", plan.name, ", ".join(plan.queues))
    try:
        return serve(app, plan, loglevel)
    finally:
        stop.set()
        executor.pool.close()
        with contextlib.suppress(Exception):  # best effort on the way out: Redis may be gone; the entry expires
            store.unregister_worker(plan.name)


class Presence:
    """This worker's entry in the farm's registry: what it is, the job it runs and whether it is quarantined.

    Written every heartbeat with a time-to-live of four heartbeats, so that the entry of a worker that died
    expires, and again whenever the worker takes or finishes a job, so that ``farm workers`` shows it at once."""

    def __init__(self, store: Store, settings: FarmSettings, plan: WorkerPlan) -> None:
        self.store, self.settings, self.plan = store, settings, plan
        self.job: str | None = None
        self.info = {
            **plan.info,
            "name": plan.name,
            "tags": plan.tags,
            "queues": plan.queues,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "benchfarm": __version__,
            "gpu_ids": plan.gpu_ids,
        }
        self.executor: JobExecutor | None = None  # set once built: the executor reports its jobs to set_busy

    def beat(self) -> None:
        assert self.executor is not None, "the executor is built before the first beat"
        self.store.register_worker(
            self.plan.name,
            {**self.info, "job": self.job, "quarantined": self.executor.quarantined},
            ttl_s=self.settings.heartbeat_s * 4,
        )

    def set_busy(self, job_id: str | None) -> None:
        """The executor took (or finished) a job: say so now, not at the next heartbeat."""
        self.job = job_id
        try:
            self.beat()
        except Exception as e:  # noqa: BLE001 - Redis may be restarting
            log.warning("registry update failed: %s", e)

    def announce(self) -> None:
        """The first beat, and this worker's queues noted, so that looking for a job's message reads them too."""
        try:
            self.beat()
            self.store.note_queues(self.plan.queues)
        except redis.ResponseError as e:  # a full Redis: serve anyway; housekeeping registers as soon as it has room
            log.error("could not register this worker (%s: %s); trying again every heartbeat", type(e).__name__, e)


def worker_app(settings: FarmSettings, plan: WorkerPlan) -> Celery:
    """The Celery app for this worker's queues, with the farm's admission check in its consumer."""
    app = make_app(settings, plan.queues)
    app.conf.worker_consumer = "workers.poison:FarmConsumer"
    # Any error reply of Redis that still reaches Celery's consumer (the guarded channel handles the known ones)
    # restarts the consumer, as a lost connection does, instead of ending the worker ("Unrecoverable error").
    app.conf.broker_channel_error_retry = True
    return app


def job_executor(
    store: Store, settings: FarmSettings, plan: WorkerPlan, app: Celery, *, on_busy: Callable[[str | None], None]
) -> JobExecutor:
    """What runs this worker's jobs, on the GPUs and backends its probe found."""
    gpus = [GPUInfo.model_validate(g) for g in plan.info.get("gpus", [])]
    executor = JobExecutor(store, settings, plan.name, gpu_ids=plan.gpu_ids, gpus=gpus, app=app, on_busy=on_busy)
    if isinstance(plan.info.get("backends"), dict):
        executor.backends = set(plan.info["backends"])
    return executor


def record_refusals(store: Store, settings: FarmSettings, plan: WorkerPlan) -> None:
    """Every queue entry the admission check refuses is recorded in the store, naming this worker."""
    poison.set_recorder(
        lambda refusal: store.record_rejection(
            refusal.reason, worker=plan.name, queue=refusal.queue, raw=refusal.excerpt, size=refusal.size
        ),
        prefix=settings.key_prefix,
    )


def start_background_threads(stop: threading.Event, presence: Presence, app: Celery, executor: JobExecutor) -> None:
    """Housekeeping until ``stop``, and a one-off look at how busy the host already is."""
    threading.Thread(
        target=housekeeping, args=(stop, presence, app, executor), daemon=True, name="farm-housekeeping"
    ).start()
    threading.Thread(
        target=warn_if_busy, args=(presence.settings.contention_cpu_threshold,), daemon=True, name="farm-busy-check"
    ).start()


def housekeeping(stop: threading.Event, presence: Presence, app: Celery, executor: JobExecutor) -> None:
    """Heartbeat in the registry, and (one worker at a time) put back the jobs of dead workers."""
    store, settings, plan = presence.store, presence.settings, presence.plan
    next_reap = 0.0
    next_spool = time.monotonic() + defaults.SPOOL_REPLAY_S
    while not stop.wait(settings.heartbeat_s):
        try:
            if executor.lift_quarantine():
                resume_consuming(app, plan)
                executor.stopped_consuming = False
            presence.beat()
            if time.monotonic() >= next_spool:
                next_spool = time.monotonic() + defaults.SPOOL_REPLAY_S
                executor.replay_spool()
            if time.monotonic() >= next_reap:
                next_reap = time.monotonic() + settings.reap_interval_s
                for job_id in reap_lost(store, app, settings, plan.name):
                    log.warning("job %s lost its worker: put back on its queue", job_id)
        except Exception as e:  # noqa: BLE001 - Redis may be restarting; keep trying
            log.warning("housekeeping failed: %s", e)


def resume_consuming(app: Celery, plan: WorkerPlan) -> None:
    """Consume this worker's queues again (its quarantine was lifted): the counterpart of the consumer
    cancellation in ``workers.task``, sent the same way, to this worker alone."""
    destination = [host_format(default_nodename(plan.name))]
    for queue in plan.queues:
        app.control.add_consumer(queue, destination=destination)


def warn_if_busy(threshold: float, seconds: float = 2.0) -> float:
    """Look at the machine once at start: if other processes already use more than ``threshold`` of its cores,
    say so, since every job measured meanwhile will be marked contended. Runs beside start-up, not before it."""
    from workers.contention import others_cpu_now

    try:
        busy = others_cpu_now(seconds)
    except OSError:
        return 0.0
    if busy > threshold:
        log.warning(
            "this host is busy: other processes used %.0f%% of its cores over %g s; jobs measured while "
            "that lasts will be marked contended and left out of reports",
            busy * 100,
            seconds,
        )
    return busy


def serve(app: Celery, plan: WorkerPlan, loglevel: str) -> int:
    """Celery's worker in this process, as ``celery worker --pool=solo --concurrency=1 -Q QUEUES -n NAME
    --without-mingle --without-gossip -E`` starts it, until it stops; returns its exit code.

    Celery's ``WorkController.start`` turns an exception that ends the consumer ("Unrecoverable error") into
    exit code 1, and a warm shutdown (SIGTERM) into 0."""
    quiet_root_warning()
    worker = app.Worker(
        hostname=host_format(default_nodename(plan.name)),
        pool_cls="solo",
        concurrency=1,
        queues=list(plan.queues),
        loglevel=loglevel,
        without_mingle=True,
        without_gossip=True,
        task_events=True,
    )
    worker.start()
    code = worker.exitcode
    return code if isinstance(code, int) else (0 if code is None else 1)


def quiet_root_warning() -> None:
    """Celery opens a root worker's log with an eight-line SecurityWarning that tells it to pass ``--uid``, an
    option the farm's worker does not have. Its point stands, said once in the farm's words: a job runs a sweep's
    code (plugins, workloads) as the worker's user."""
    import warnings

    from celery.exceptions import SecurityWarning

    warnings.filterwarnings("ignore", category=SecurityWarning, message="You're running the worker with superuser")
    if os.geteuid() == 0:
        log.warning(
            "running as root: each job's code (workloads, plugins) runs as root too; an unprivileged user is safer "
            "(the deploy files run workers as one)"
        )
