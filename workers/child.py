"""The training child: one fresh process per job.

Protocol (JSON lines): the supervisor starts ``python -m workers.child`` with ``KERAS_BACKEND`` and device
visibility already in its environment. The child imports Keras and its backend, announces ``ready``, reads one
job envelope from stdin, validates it again, trains, and writes ``epoch``/``phase`` events and finally one
``result`` (or ``error``) event to its event stream, then exits. The event stream is the original stdout; the
child points its own fd 1 at stderr so nothing a library prints can corrupt the stream.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from typing import Any

from workers.jobtree import become_subreaper, kill_own_descendants


def _event_stream() -> Any:
    stream = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return stream


def import_framework(backend: str) -> dict[str, Any]:
    """Import Keras with its backend (touching no device) and say what was imported and how long it took.

    In a child forked from the zygote everything is imported already: this returns at once, and the
    ``import_s`` it reports is the (near zero) time this process spent importing.
    """
    w0, c0 = time.perf_counter(), time.process_time()
    from workers.training import framework_build, framework_versions

    versions = framework_versions(backend)  # imports keras, which imports its backend
    build = framework_build(backend)
    if backend == "jax":
        import jax  # noqa: F401 - keras imports it lazily in places; count it in the import phase
    return {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "import_s": time.perf_counter() - w0,
        "import_cpu_s": time.process_time() - c0,
        "versions": versions,
        "build": build,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "keras_backend": backend,
        "forked": os.environ.get("FARM_FORKED") == "1",
    }


STAGE_AFTER = {"ready": "job", "started": "data", "trained": "eval"}
"""Where the child is once it announced an event: reading its job, loading data, evaluating. Each ``phase``
event ends a phase: after ``data`` comes ``build``, after ``build`` the training steps."""

PHASE_AFTER = {"data": "build", "build": "train"}


def next_stage(stage: str, event: dict[str, Any]) -> str:
    """The stage the child is in after emitting ``event``. An error is reported with it, so the worker can tell
    a broken job (its parameters, its data, its model) from a broken machine (the framework does not import)."""
    kind = event.get("event")
    if kind == "phase":
        return PHASE_AFTER.get(str(event.get("phase")), stage)
    return STAGE_AFTER.get(str(kind), stage)


_OOM_MARKERS = ("out of memory", "resource_exhausted", "resourceexhausted", "oom when allocating")


def out_of_memory(e: BaseException) -> bool:
    """Whether the job ran out of memory (host or device): the job is too large for this machine, the machine
    is not broken. Frameworks raise their own types for it, so their messages are read too."""
    text = f"{type(e).__name__}: {e}".lower()
    return isinstance(e, MemoryError) or any(marker in text for marker in _OOM_MARKERS)


def watch_worker(timeout_s: float, emit: Any) -> None:
    """Stop this process (and anything it started) when its worker goes quiet for ``timeout_s``.

    The worker writes a line to our stdin at every heartbeat, after renewing the job's lease. A worker that is
    paused (SIGSTOP), hung or gone stops writing; its lease then expires and another worker may run the job. A
    training process must not go on beside that run, contaminating it, so it stops itself about when the lease
    expires, without needing its worker. End of file (the worker closed the pipe or died) stops it at once.
    """
    import signal
    import threading

    last = [time.monotonic()]

    def stop(why: str) -> None:
        # The kill does not wait on the event: a paused worker reads nothing, so the pipe may be full.
        threading.Timer(1.0, os.killpg, (os.getpgrp(), signal.SIGKILL)).start()
        emit({"event": "error", "error": f"stopped: {why}"})
        kill_own_descendants()
        os.killpg(os.getpgrp(), signal.SIGKILL)

    def read() -> None:
        for _ in sys.stdin:
            last[0] = time.monotonic()
        stop("its worker closed the job's keep-alive pipe")

    def check() -> None:
        while True:
            time.sleep(min(1.0, timeout_s / 4))
            quiet = time.monotonic() - last[0]
            if quiet > timeout_s:
                stop(
                    f"no keep-alive from its worker for {quiet:.0f} s (paused, hung or cut off): the job's lease "
                    "has expired, so this run must not go on beside another"
                )

    for target in (read, check):
        threading.Thread(target=target, daemon=True, name=f"farm-watch-{target.__name__}").start()


def main() -> int:
    t_main = time.time()
    spawn_t = float(os.environ.get("FARM_SPAWN_T", t_main))
    events = _event_stream()
    become_subreaper()  # what the job starts stays in this process's tree, to be killed with it (workers.jobtree)

    stage = ["import"]

    def emit(event: dict[str, Any]) -> None:
        stage[0] = next_stage(stage[0], event)
        if event.get("event") == "error":
            event.setdefault("stage", stage[0])
        events.write(json.dumps(event, default=str) + "\n")

    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    try:
        ready = import_framework(backend)
    except Exception as e:  # noqa: BLE001 - every failure becomes a recorded result
        emit(
            {
                "event": "error",
                "error": f"importing Keras with the {backend} backend failed: {e!r}",
                "traceback": traceback.format_exc(),
            }
        )
        return 3
    emit({"event": "ready", "spawn_s": t_main - spawn_t, **ready})

    w_wait = time.perf_counter()
    line = sys.stdin.readline()
    wait_s = time.perf_counter() - w_wait
    if not line:
        return 0  # the supervisor had no job for this pre-started child
    if os.environ.get("FARM_KEEPALIVE_TIMEOUT_S"):
        watch_worker(float(os.environ["FARM_KEEPALIVE_TIMEOUT_S"]), emit)
    from workers import memory

    # The job's own allocations, not the import's, count against its limit: it is set once the job is here.
    limit = memory.limit_from_env()
    emit({"event": "memory", "limit_bytes": limit if memory.apply_limit(limit) else None})
    try:
        from farm.job import JobEnvelope
        from farm.settings import FarmSettings

        envelope = JobEnvelope.model_validate_json(line)
        settings = FarmSettings()  # the supervisor put the data settings into our FARM_* environment
        if envelope.job.backend != backend:
            raise RuntimeError(f"child started for backend {backend} got a {envelope.job.backend} job")
        emit({"event": "started", "job_id": envelope.job_id, "wait_s": wait_s})
        from workers.training import train

        out = train(envelope, settings, emit)
    except Exception as e:  # noqa: BLE001 - every failure becomes a recorded result
        from farm.result import cap_error
        from workers.memory import describe_exception

        text = cap_error(describe_exception(e) or f"{type(e).__name__}: {e}")
        error = {"event": "error", "error": text, "traceback": cap_error(traceback.format_exc())}
        if out_of_memory(e):
            error["stage"] = "memory"
        emit(error)
        kill_own_descendants()
        return 4
    out["phases"]["wait_s"] = wait_s
    out["total_s"] = time.time() - spawn_t
    emit({"event": "result", **out})
    events.flush()
    sys.stderr.flush()
    kill_own_descendants()
    # Nothing is left to do: skip the interpreter's teardown (frameworks' exit handlers take a second or more),
    # so the device is free and the next job can start sooner.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
