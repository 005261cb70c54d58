"""Running one job in a fresh child process, and turning whatever happens to it into an outcome.

The supervisor owns the child's environment (backend, device visibility), its clock (the time limit), and
its fate: the child is in its own process group and dies with the worker (PR_SET_PDEATHSIG), so a killed
worker leaves no orphan training on the device.
"""

from __future__ import annotations

import collections
import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from farm.job import JobEnvelope
from farm.settings import FarmSettings

STDERR_TAIL_LINES = 60
REPO_ROOT = str(Path(__file__).resolve().parent.parent)


@dataclass
class ChildOutcome:
    """What the supervisor saw: the child's events, how it ended, and the tail of its stderr."""

    status: str  # succeeded | failed | timed_out | cancelled
    error: str | None = None
    ready: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    returncode: int | None = None
    stderr_tail: str = ""
    total_s: float = 0.0
    started_at: float = 0.0


def child_env(envelope: JobEnvelope, settings: FarmSettings, gpu_ids: list[str] | None = None) -> dict[str, str]:
    """The child's environment: its backend, what devices it may see, the data settings and nothing secret."""
    job = envelope.job
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    env.update(KERAS_BACKEND=job.backend, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2",
               FARM_CACHE_DIR=str(settings.cache_dir), FARM_ALLOW_DOWNLOAD=str(settings.allow_download).lower())
    if settings.data_dir:
        env["FARM_DATA_DIR"] = str(settings.data_dir)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p)
    if job.device == "cpu":
        # Hide every GPU: a CPU measurement on a GPU box must not borrow the GPU.
        env["CUDA_VISIBLE_DEVICES"] = ""
        env["JAX_PLATFORMS"] = "cpu"
    elif gpu_ids is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpu_ids)
    if job.backend == "jax":
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    return env


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _describe_exit(code: int) -> str:
    if code < 0:
        sig = signal.Signals(-code).name
        hint = " (killed: out of memory?)" if sig == "SIGKILL" else ""
        return f"the training process was killed by {sig}{hint}"
    return f"the training process exited with code {code} without a result"


def run_child(envelope: JobEnvelope, settings: FarmSettings, on_event: Callable[[dict[str, Any]], None], *,
              gpu_ids: list[str] | None = None, should_stop: Callable[[], str | None] = lambda: None,
              poll_s: float = 0.5) -> ChildOutcome:
    """Run the job in a fresh child; ``should_stop()`` returning a reason (e.g. 'cancelled') ends it early."""
    t0 = time.time()
    env = child_env(envelope, settings, gpu_ids)
    env["FARM_SPAWN_T"] = repr(t0)
    proc = subprocess.Popen([sys.executable, "-m", "workers.child"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, cwd=REPO_ROOT, start_new_session=True,
                            preexec_fn=_die_with_parent, text=True, encoding="utf-8", errors="replace")
    outcome = ChildOutcome(status="failed", started_at=t0)
    tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            tail.append(line.rstrip("\n"))

    def read_events() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                tail.append(f"[unparsable event] {line.strip()[:200]}")
                continue
            kind = event.get("event")
            if kind == "ready":
                outcome.ready = event
                assert proc.stdin is not None
                try:
                    proc.stdin.write(envelope.model_dump_json() + "\n")
                    proc.stdin.close()
                except OSError:
                    pass
            elif kind == "result":
                outcome.result = event
            elif kind == "error":
                outcome.error = event.get("error")
                if event.get("traceback"):
                    tail.append(event["traceback"])
            on_event(event)

    threads = [threading.Thread(target=read_stderr, daemon=True), threading.Thread(target=read_events, daemon=True)]
    for t in threads:
        t.start()
    deadline = t0 + envelope.time_limit_s
    stop_reason: str | None = None
    while proc.poll() is None:
        if time.time() > deadline:
            stop_reason = "timed_out"
        else:
            stop_reason = should_stop()
        if stop_reason:
            _kill_group(proc)
            break
        time.sleep(poll_s)
    proc.wait()
    for t in threads:
        t.join(timeout=5)
    outcome.returncode = proc.returncode
    outcome.total_s = time.time() - t0
    outcome.stderr_tail = "\n".join(tail)[-8000:]
    if stop_reason == "timed_out":
        outcome.status, outcome.error = "timed_out", f"exceeded its time limit of {envelope.time_limit_s:g} s"
    elif stop_reason:
        outcome.status, outcome.error = stop_reason, outcome.error or f"stopped: {stop_reason}"
    elif outcome.result and proc.returncode == 0:
        outcome.status = "succeeded"
    else:
        outcome.status = "failed"
        outcome.error = outcome.error or _describe_exit(proc.returncode)
    return outcome


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
