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
import queue
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
    job_started_at: float = 0.0


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


def env_key(env: dict[str, str]) -> tuple:
    """What must match for a pre-started child to take a job: its whole environment."""
    return tuple(sorted((k, v) for k, v in env.items() if k != "FARM_SPAWN_T"))


class Child:
    """One training process: spawned with its environment, it imports Keras and its backend, announces
    ``ready``, then waits for exactly one job. Its events are read from the start, so a child can be started
    ahead of its job (warm) without losing what it says meanwhile."""

    def __init__(self, env: dict[str, str]) -> None:
        self.key = env_key(env)
        self.spawned_at = time.time()
        self.proc = subprocess.Popen([sys.executable, "-m", "workers.child"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env={**env, "FARM_SPAWN_T": repr(self.spawned_at)}, cwd=REPO_ROOT,
                                     start_new_session=True, preexec_fn=_die_with_parent, text=True,
                                     encoding="utf-8", errors="replace")
        self.outcome = ChildOutcome(status="failed", started_at=self.spawned_at)
        self.tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._lock = threading.Lock()
        self._on_event: Callable[[dict[str, Any]], None] | None = None
        self._early: list[dict[str, Any]] = []
        self._threads = [threading.Thread(target=self._read_stderr, daemon=True),
                         threading.Thread(target=self._read_events, daemon=True)]
        for t in self._threads:
            t.start()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.tail.append(line.rstrip("\n"))

    def _read_events(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                self.tail.append(f"[unparsable event] {line.strip()[:200]}")
                continue
            kind = event.get("event")
            if kind == "ready":
                self.outcome.ready = event
            elif kind == "result":
                self.outcome.result = event
            elif kind == "error":
                self.outcome.error = event.get("error")
                if event.get("traceback"):
                    self.tail.append(event["traceback"])
            with self._lock:
                if self._on_event is None:
                    self._early.append(event)
                    continue
                callback = self._on_event
            callback(event)

    def start_job(self, envelope: JobEnvelope, on_event: Callable[[dict[str, Any]], None]) -> None:
        """Hand the child its job; events it emitted before (``ready``) are replayed to ``on_event``."""
        with self._lock:
            early, self._early = self._early, []
            self._on_event = on_event
        for event in early:
            on_event(event)
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(envelope.model_dump_json() + "\n")
            self.proc.stdin.close()
        except OSError:
            pass  # it died already: wait() says how

    def wait(self, envelope: JobEnvelope, should_stop: Callable[[], str | None], poll_s: float) -> ChildOutcome:
        outcome = self.outcome
        job_start = time.time()
        deadline = job_start + envelope.time_limit_s
        stop_reason: str | None = None
        while self.proc.poll() is None:
            stop_reason = "timed_out" if time.time() > deadline else should_stop()
            if stop_reason:
                _kill_group(self.proc)
                break
            time.sleep(poll_s)
        self.proc.wait()
        for t in self._threads:
            t.join(timeout=5)
        outcome.returncode = self.proc.returncode
        outcome.total_s = time.time() - self.spawned_at
        outcome.job_started_at = job_start
        outcome.stderr_tail = "\n".join(self.tail)[-8000:]
        if stop_reason == "timed_out":
            outcome.status, outcome.error = "timed_out", f"exceeded its time limit of {envelope.time_limit_s:g} s"
        elif stop_reason:
            outcome.status, outcome.error = stop_reason, outcome.error or f"stopped: {stop_reason}"
        elif outcome.result and self.proc.returncode == 0:
            outcome.status = "succeeded"
        else:
            outcome.status = "failed"
            outcome.error = outcome.error or _describe_exit(self.proc.returncode)
        return outcome

    def discard(self) -> None:
        """A child nobody will use: kill it (it has touched no device, so nothing is lost)."""
        if self.alive():
            _kill_group(self.proc)
        self.proc.wait()


class WarmPool:
    """At most one child started ahead of the next job, with the environment of the last one.

    The child imports Keras and its backend while the previous job evaluates, reports and exits, and while the
    worker waits for its next message, so a job of the same backend and device starts training without (most
    of) the import's seconds. It touches no device before it has a job, serves exactly one job, and exits: every
    job still runs in a fresh process. It is started when the previous job's training has ended (its
    ``trained`` event), so its import never overlaps a measured training run; it can overlap that job's
    evaluation, whose time is reported apart.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._child: Child | None = None
        self._lock = threading.Lock()
        # Children are spawned only from threads that outlive them: PR_SET_PDEATHSIG fires when the *thread*
        # that forked a child ends, so a child spawned from a short-lived event-reader thread would be killed
        # with it. Pre-starts requested from such threads are handed to this long-lived spawner.
        self._requests: queue.SimpleQueue[dict[str, str] | None] = queue.SimpleQueue()
        self._spawner: threading.Thread | None = None

    def take(self, env: dict[str, str]) -> Child:
        """The pre-started child if it matches, else a fresh one (spawned from the calling thread, which must
        live as long as the job: the worker's task thread does)."""
        while not self._requests.empty() and self._spawner is not None:
            time.sleep(0.01)  # a pre-start was asked for just now: let it land
        with self._lock:
            child, self._child = self._child, None
        if child is not None and child.key == env_key(env) and child.alive():
            return child
        if child is not None:
            child.discard()
        return Child(env)

    def prestart(self, env: dict[str, str]) -> None:
        """Ask for a child with this environment to be started ahead of the next job (from any thread)."""
        if not self.enabled:
            return
        with self._lock:
            if self._spawner is None:
                self._spawner = threading.Thread(target=self._spawn_loop, daemon=True, name="farm-prestart")
                self._spawner.start()
        self._requests.put(env)

    def _spawn_loop(self) -> None:
        while (env := self._requests.get()) is not None:
            self._prestart_now(env)

    def _prestart_now(self, env: dict[str, str]) -> None:
        with self._lock:
            if self._child is not None and (self._child.key != env_key(env) or not self._child.alive()):
                self._child.discard()
                self._child = None
            if self._child is None:
                self._child = Child(env)

    def close(self) -> None:
        if self._spawner is not None:
            self._requests.put(None)
            self._spawner.join(timeout=5)
            self._spawner = None
        with self._lock:
            if self._child is not None:
                self._child.discard()
                self._child = None


def run_child(envelope: JobEnvelope, settings: FarmSettings, on_event: Callable[[dict[str, Any]], None], *,
              gpu_ids: list[str] | None = None, should_stop: Callable[[], str | None] = lambda: None,
              poll_s: float = 0.2, pool: WarmPool | None = None) -> ChildOutcome:
    """Run the job in a fresh child (a pre-started one from ``pool`` when its environment matches);
    ``should_stop()`` returning a reason (e.g. 'cancelled') ends it early."""
    env = child_env(envelope, settings, gpu_ids)
    child = pool.take(env) if pool is not None else Child(env)

    def relay(event: dict[str, Any]) -> None:
        if event.get("event") == "trained" and pool is not None:
            pool.prestart(env)
        on_event(event)

    child.start_job(envelope, relay)
    outcome = child.wait(envelope, should_stop, poll_s)
    if pool is not None:
        pool.prestart(env)
    return outcome


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
