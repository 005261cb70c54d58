"""``farm worker``: probe the machine, register, and consume the queues of this worker's tags, one job at a time.

The Celery worker runs with the solo pool: the worker process itself supervises the job, and the training
happens in a fresh child process per job, so there is nothing to gain from Celery's own process pool.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

from farm import __version__
from farm.fingerprint import GPUInfo
from farm.lifecycle import reap_lost
from farm.queue import make_app
from farm.settings import FarmSettings
from farm.store import Store
from workers import poison
from workers.execute import JobExecutor
from workers.plans import WorkerPlan
from workers.task import register

log = logging.getLogger("farm.worker")


def run_worker(settings: FarmSettings, plan: WorkerPlan, *, loglevel: str = "INFO") -> None:
    """Start a Celery worker for ``plan``; returns when the worker shuts down (Ctrl-C / SIGTERM)."""
    logging.basicConfig(level=loglevel, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    store = Store.from_settings(settings)
    current: dict[str, str | None] = {"job": None}
    info = {**plan.info, "name": plan.name, "tags": plan.tags, "queues": plan.queues, "pid": os.getpid(),
            "host": socket.gethostname(), "benchfarm": __version__, "gpu_ids": plan.gpu_ids}
    app = make_app(settings, plan.queues)
    app.conf.worker_consumer = "workers.poison:FarmConsumer"
    gpus = [GPUInfo.model_validate(g) for g in plan.info.get("gpus", [])]

    def beat() -> None:
        store.register_worker(plan.name, {**info, "job": current["job"], "quarantined": executor.quarantined},
                              ttl_s=settings.heartbeat_s * 4)

    def set_busy(job_id: str | None) -> None:
        current["job"] = job_id
        try:
            beat()
        except Exception as e:  # noqa: BLE001 - Redis may be restarting
            log.warning("registry update failed: %s", e)

    executor = JobExecutor(store, settings, plan.name, gpu_ids=plan.gpu_ids, gpus=gpus, app=app, on_busy=set_busy)
    poison.install_transport_guard()
    poison.set_recorder(executor.record_rejection)
    register(app, executor)
    stop = threading.Event()

    def housekeeping() -> None:
        """Heartbeat in the registry, and (one worker at a time) put back the jobs of dead workers."""
        next_reap = 0.0
        while not stop.wait(settings.heartbeat_s):
            try:
                beat()
                if time.monotonic() >= next_reap:
                    next_reap = time.monotonic() + settings.reap_interval_s
                    for job_id in reap_lost(store, app, settings, plan.name):
                        log.warning("job %s lost its worker: put back on its queue", job_id)
            except Exception as e:  # noqa: BLE001 - Redis may be restarting; keep trying
                log.warning("housekeeping failed: %s", e)

    beat()
    threading.Thread(target=housekeeping, daemon=True, name="farm-housekeeping").start()
    log.info("worker %s serving %s", plan.name, ", ".join(plan.queues))
    try:
        app.worker_main(["worker", "--pool=solo", "--concurrency=1", "-Q", ",".join(plan.queues), "-n", plan.name,
                         f"--loglevel={loglevel}", "--without-mingle", "--without-gossip", "-E"])
    finally:
        stop.set()
        executor.pool.close()
        try:
            store.unregister_worker(plan.name)
        except Exception:  # noqa: BLE001
            pass
