"""Running one job in a fresh child process, and turning whatever happens to it into an outcome.

The supervisor owns the child's environment (backend, device visibility), its clock (the time limit), and
its fate: the child is in its own process group and dies with the worker (PR_SET_PDEATHSIG), so a killed
worker leaves no orphan training on the device; whatever the job started dies with the job (``workers.jobtree``);
its memory is limited (``job_memory_limit``, ``workers.memory``), and what the worker keeps of its output is
bounded (``workers.bounded``).
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import functools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from farm import defaults
from farm.job import JobEnvelope
from farm.result import cap_error
from farm.settings import FarmSettings
from workers import jobtree, memory
from workers.bounded import BoundedTail, bounded_lines, read_chunk
from workers.child import next_stage
from workers.contention import FARM_PIDS_ENV
from workers.forking import ForkedProc, Zygote
from workers.processes import describe_exit, die_with_parent, kill_group

NOTES_KEPT = 20
"""Tracebacks and notes about dropped events kept beside a child's stderr tail."""
log = logging.getLogger(__name__)


@dataclass
class ChildOutcome:
    """What the supervisor saw: the child's events, how it ended, and the tail of its stderr."""

    status: str  # succeeded | failed | timed_out | cancelled
    error: str | None = None
    ready: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    returncode: int | None = None
    stderr_tail: str = ""
    memory: dict[str, Any] = field(default_factory=dict)
    """The child's ``memory`` event: its estimate of what the job needs and the limit it runs under."""
    total_s: float = 0.0
    started_at: float = 0.0
    job_started_at: float = 0.0
    stage: str = "import"  # where the child was when it ended (workers.child.next_stage); said by a failure


def child_env(
    envelope: JobEnvelope, settings: FarmSettings, gpu_ids: list[str] | None = None, farm_pids: list[int] | None = None
) -> dict[str, str]:
    """The child's environment: its backend, what devices it may see, the data settings, the farm's own processes
    on this host that its contention figures must not count (``farm_pids``), and nothing secret."""
    job = envelope.job
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    env.update(
        KERAS_BACKEND=job.backend,
        PYTHONUNBUFFERED="1",
        TF_CPP_MIN_LOG_LEVEL="2",
        FARM_CACHE_DIR=str(settings.cache_dir),
        FARM_ALLOW_DOWNLOAD=str(settings.allow_download).lower(),
        FARM_COMPILE_CACHE=str(settings.compile_cache).lower(),
        FARM_KEEPALIVE_TIMEOUT_S=repr(keepalive_timeout_s(settings)),
        FARM_QUIET_WAIT_S=repr(settings.quiet_wait_s),
    )
    if "contention_cpu_threshold" in settings.model_fields_set:  # a lab's own threshold rules over a derived one
        env["FARM_CONTENTION_CPU_THRESHOLD"] = repr(settings.contention_cpu_threshold)
    if settings.compile_cache_dir:
        env["FARM_COMPILE_CACHE_DIR"] = str(settings.compile_cache_dir)
    if farm_pids:
        env[FARM_PIDS_ENV] = ",".join(str(p) for p in farm_pids)
    env[memory.LIMIT_ENV] = str(job_memory_limit(settings) or 0)
    if settings.data_dir:
        env["FARM_DATA_DIR"] = str(settings.data_dir)
    if job.device == "cpu":
        # Hide every GPU: a CPU measurement on a GPU box must not borrow the GPU.
        env["CUDA_VISIBLE_DEVICES"] = ""
        env["JAX_PLATFORMS"] = "cpu"
    elif gpu_ids is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpu_ids)
    if job.backend == "jax":
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        if job.device == "cpu" and job.devices > 1:
            # Virtual CPU devices share one pool of threads, which a step's all-reduces block while they wait for
            # the other devices: Eigen's own parallelism inside each device's work would compete for the same
            # threads (workers.distribution keeps the devices to the cores). Read at JAX's import: this job's fork
            # server is started with it.
            env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_cpu_multi_thread_eigen=false".strip()
    elif job.backend == "torch":
        # torch.cuda.is_available() (Keras' torch backend asks at import) would otherwise call cuInit, after
        # which a forked child cannot use CUDA; NVML answers the same question without initialising CUDA.
        env.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    return env


def job_memory_limit(settings: FarmSettings) -> int | None:
    """Bytes of memory a job's process may use (None: no limit): ``job_memory_limit_mb`` when set (0 turns the
    limit off), else ``JOB_MEMORY_FRACTION`` of the memory available when this worker first asked (it runs one
    job at a time), so an over-large job fails as out of memory instead of taking the host down."""
    if settings.job_memory_limit_mb is not None:
        return settings.job_memory_limit_mb * 2**20 or None
    return _available_at_start()


@functools.cache
def _available_at_start() -> int:
    import psutil

    return int(psutil.virtual_memory().available * defaults.JOB_MEMORY_FRACTION)


def keepalive_timeout_s(settings: FarmSettings) -> float:
    """How long a child trains without hearing from its worker before it stops itself (``workers.child``): a
    heartbeat short of the lease, so a paused worker's child is gone before its job can be taken over, and
    never less than two heartbeats, so one late heartbeat does not kill a healthy run."""
    return max(2 * settings.heartbeat_s, settings.lease_ttl_s - settings.heartbeat_s)


def _describe_exit(code: int) -> str:
    if code < 0:
        hint = " (killed: out of memory?)" if code == -signal.SIGKILL else ""
        return f"the training process was {describe_exit(code)}{hint}"
    return f"the training process exited with code {code} without a result"


def env_key(env: dict[str, str]) -> tuple:
    """What must match for a pre-started child to take a job: its whole environment."""
    return tuple(sorted((k, v) for k, v in env.items() if k not in ("FARM_SPAWN_T", jobtree.MARK_ENV)))


class Child:
    """One training process: it imports Keras and its backend, announces ``ready``, then waits for exactly one
    job. It is either a fresh interpreter (cold: it imports for itself) or forked from a fork server that
    imported already (warm). Its events are read from the start, so nothing it says before its job is lost."""

    def __init__(self, env: dict[str, str], zygote: Zygote | None = None, requested_at: float | None = None) -> None:
        self.key = env_key(env)
        self.spawned_at = requested_at or time.time()
        # A job that had to wait for its fork server to import counts that wait as its import.
        self.import_wait_s = time.time() - self.spawned_at
        self.token = uuid.uuid4().hex  # in the environment of every program the job runs (workers.jobtree)
        self.proc: subprocess.Popen | ForkedProc
        if zygote is not None:
            self.proc = zygote.fork(time.time(), self.token)
        else:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "workers.child"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={**env, "FARM_SPAWN_T": repr(self.spawned_at), jobtree.MARK_ENV: self.token},
                start_new_session=True,
                preexec_fn=die_with_parent,
                text=True,
                encoding="utf-8",
                errors="replace",
            )
        self.outcome = ChildOutcome(status="failed", started_at=self.spawned_at)
        self.tail = BoundedTail(defaults.STDERR_TAIL_BYTES)
        self._oom_kills_at_start = memory.oom_kills()
        self.notes: collections.deque[str] = collections.deque(maxlen=NOTES_KEPT)
        self._lock = threading.Lock()
        self._stdin_lock = threading.Lock()
        self._on_event: Callable[[dict[str, Any]], None] | None = None
        self._early: list[dict[str, Any]] = []
        self._threads = [
            threading.Thread(target=self._read_stderr, daemon=True),
            threading.Thread(target=self._read_events, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _read_stderr(self) -> None:
        """Keep the last bytes of the child's stderr, read in fixed chunks (never by lines: a child that writes
        800 MB without a newline must not grow the worker)."""
        assert self.proc.stderr is not None
        fd = self.proc.stderr.fileno()
        while chunk := read_chunk(fd):
            self.tail.add(chunk)

    def _read_events(self) -> None:
        assert self.proc.stdout is not None
        for line in bounded_lines(self.proc.stdout, defaults.EVENT_MAX_BYTES, self.notes.append):
            try:
                event = json.loads(line)
                if not isinstance(event, dict):
                    raise ValueError("not an object")
            except ValueError:
                self.notes.append(f"[unparsable event] {line.strip()[:200]}")
                continue
            kind = event.get("event")
            self.outcome.stage = str(event.get("stage") or next_stage(self.outcome.stage, event))
            if kind == "ready":
                event["import_s"] = (event.get("import_s") or 0.0) + self.import_wait_s
                self.outcome.ready = event
            elif kind == "result":
                self.outcome.result = event
            elif kind == "error":
                self.outcome.error = cap_error(str(event.get("error")))
                if event.get("traceback"):
                    self.notes.append(str(event["traceback"])[-defaults.ERROR_MAX_CHARS :])
            elif kind == "memory":
                self.outcome.memory.update(event)
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
            with self._stdin_lock:
                self.proc.stdin.write(envelope.model_dump_json() + "\n")
                self.proc.stdin.flush()
        except OSError:
            pass  # it died already: wait() says how

    def keepalive(self) -> None:
        """Tell the child its worker is alive and still holds the lease. The stdin pipe stays open for this
        after the job: a child that hears nothing for a lease's length stops itself (``workers.child``)."""
        assert self.proc.stdin is not None
        try:
            with self._stdin_lock:
                self.proc.stdin.write("\n")
                self.proc.stdin.flush()
        except (OSError, ValueError):
            pass  # it ended already

    def _close_stdin(self) -> None:
        try:
            with self._stdin_lock:
                if self.proc.stdin is not None:
                    self.proc.stdin.close()
        except OSError:
            pass

    def wait(self, envelope: JobEnvelope, should_stop: Callable[[], str | None], poll_s: float) -> ChildOutcome:
        outcome = self.outcome
        job_start = time.time()
        deadline = job_start + envelope.time_limit_s
        stop_reason: str | None = None
        started: dict[int, float] = {}  # what the job started, by pid, with start times (workers.jobtree)
        next_scan = 0.0
        while True:
            try:
                self.proc.wait(timeout=poll_s)  # returns as soon as the child ends
                break
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() >= next_scan:
                started.update(jobtree.descendants(self.proc.pid))
                next_scan = time.monotonic() + defaults.DESCENDANT_SCAN_S
            stop_reason = "timed_out" if time.time() > deadline else should_stop()
            if stop_reason:
                started.update(jobtree.descendants(self.proc.pid))
                kill_group(self.proc)
                break
        returncode = self.proc.wait()
        # What the job left behind dies with it: its process group (the group's id cannot be reused while any
        # member lives, so this kills nothing else) and whatever it started outside that group.
        with contextlib.suppress(OSError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        jobtree.kill_all({**started, **jobtree.marked(self.token)})
        self._close_stdin()
        for t in self._threads:
            t.join(timeout=5)
        outcome.returncode = returncode
        outcome.total_s = time.time() - self.spawned_at
        outcome.job_started_at = job_start
        outcome.stderr_tail = "\n".join([*self.notes, self.tail.text()])[-8000:]
        if stop_reason == "timed_out":
            outcome.status, outcome.error = "timed_out", f"exceeded its time limit of {envelope.time_limit_s:g} s"
        elif stop_reason:
            outcome.status, outcome.error = stop_reason, outcome.error or f"stopped: {stop_reason}"
        elif outcome.result and returncode == 0:
            outcome.status = "succeeded"
        else:
            outcome.status = "failed"
            outcome.error = (
                outcome.error
                or getattr(self.proc, "exit_reason", None)
                or memory.describe_exit(returncode, outcome.stderr_tail, self._oom_killed())
                or _describe_exit(returncode)
            )
            outcome.error = memory.with_estimate(outcome.error, outcome.memory)
            if outcome.error.startswith(memory.OOM_PREFIX):
                outcome.stage = "memory"  # the job's size, wherever it was (workers.blame)
        return outcome

    def _oom_killed(self) -> bool:
        """Whether the kernel's OOM killer killed anything while this child lived (its SIGKILL, then, is likely
        the OOM killer's rather than someone else's)."""
        now = memory.oom_kills()
        return now is not None and self._oom_kills_at_start is not None and now > self._oom_kills_at_start

    def discard(self) -> None:
        """A child nobody will use: kill it (it has touched no device, so nothing is lost)."""
        if self.alive():
            kill_group(self.proc)
        self.proc.wait()
        self._close_stdin()


class WarmPool:
    """Fork servers (``workers.zygote``), one per child environment, started on the first job that needs one.

    A fork server imports Keras and its backend once; every later job with the same environment (backend,
    device visibility, data settings) gets a child forked from it in milliseconds, so it starts training
    without the import's seconds, yet still runs in a fresh process of its own. A server that cannot serve
    (its import failed, or its framework touched a device at import) is not tried again for that environment:
    its jobs get fresh interpreters. At most ``max_servers`` are kept; the least recently used goes first.
    """

    def __init__(self, enabled: bool = True, max_servers: int = 3) -> None:
        self.enabled = enabled
        self.max_servers = max_servers
        self._servers: collections.OrderedDict[tuple, Zygote] = collections.OrderedDict()
        self._refused: dict[tuple, str] = {}
        self._lock = threading.Lock()
        # Servers are started from one long-lived thread: PR_SET_PDEATHSIG fires when the *thread* that forked
        # a process ends, so a server started from a job's short-lived thread would die with that thread.
        self._spawner = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="farm-zygote")

    def server(self, env: dict[str, str]) -> Zygote | None:
        """The running fork server for this environment, started if needed; None if it cannot serve."""
        key = env_key(env)
        with self._lock:
            if not self.enabled or key in self._refused:
                return None
            zygote = self._servers.get(key)
            if zygote is not None and not zygote.alive():
                log.warning("fork server for %s died (%s): starting another", _describe_key(key), zygote.error)
                self._servers.pop(key).close()
                zygote = None
            if zygote is None:
                zygote = self._spawner.submit(Zygote, env).result()
                self._servers[key] = zygote
                while len(self._servers) > self.max_servers:
                    _, old = self._servers.popitem(last=False)
                    old.close()
            self._servers.move_to_end(key)
        if zygote.wait_ready():
            return zygote
        with self._lock:
            self._refused[key] = zygote.error or "not ready"
            self._servers.pop(key, None)
        log.warning("no fork server for %s: %s; its jobs start fresh interpreters", _describe_key(key), zygote.error)
        zygote.close()
        return None

    def take(self, env: dict[str, str]) -> Child:
        """A fresh child for this environment: forked from its server when there is one, else a new
        interpreter (spawned from the calling thread, which must live as long as the job: the worker's task
        thread does)."""
        requested_at = time.time()
        zygote = self.server(env)
        if zygote is not None:
            try:
                return Child(env, zygote=zygote, requested_at=requested_at)
            except (OSError, RuntimeError, TimeoutError) as e:
                log.warning("fork server failed to fork (%s): a fresh interpreter runs this job", e)
        return Child(env)

    def close(self) -> None:
        with self._lock:
            servers, self._servers = list(self._servers.values()), collections.OrderedDict()
        for zygote in servers:
            zygote.close()
        self._spawner.shutdown(wait=False)


def _describe_key(key: tuple) -> str:
    env = dict(key)
    return f"backend {env.get('KERAS_BACKEND')}, CUDA_VISIBLE_DEVICES={env.get('CUDA_VISIBLE_DEVICES', 'all')}"


def run_child(
    envelope: JobEnvelope,
    settings: FarmSettings,
    on_event: Callable[[dict[str, Any]], None],
    *,
    gpu_ids: list[str] | None = None,
    should_stop: Callable[[], str | None] = lambda: None,
    poll_s: float = 0.2,
    pool: WarmPool | None = None,
    keepalive: list[Callable[[], None]] | None = None,
    farm_pids: list[int] | None = None,
) -> ChildOutcome:
    """Run the job in a fresh child (forked from ``pool``'s fork server for its environment, if any);
    ``should_stop()`` returning a reason (e.g. 'cancelled') ends it early. The child's keep-alive is appended
    to ``keepalive`` for the caller's heartbeat to call."""
    env = child_env(envelope, settings, gpu_ids, farm_pids)
    child = pool.take(env) if pool is not None else Child(env)
    if keepalive is not None:
        keepalive.append(child.keepalive)

    child.start_job(envelope, on_event)
    return child.wait(envelope, should_stop, poll_s)
