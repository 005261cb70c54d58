"""The fork server: a process that imported Keras and its backend once and forks a fresh training child per job.

Importing a framework costs seconds (JAX ~3 s, TensorFlow ~5 s on a small machine); forking a process that
already imported it costs milliseconds. The zygote never touches a device: it imports, checks that the
backend has not initialised a device, and then only forks. Each job still runs in a process of its own,
started from the same clean, just-imported state, so nothing a job does (device memory, global Keras state,
dtype policies, threads) reaches the next one.

Protocol, over a Unix socket pair whose zygote end is fd ``FARM_ZYGOTE_FD``; every message is one JSON line,
so nothing but JSON crosses it:

- zygote → supervisor: ``{"ready": {...}}`` once imported (the fields of the child's ``ready`` event), or
  ``{"error": "..."}`` if it cannot serve (then it exits);
- supervisor → zygote: ``{"fork": {"spawn_t": T, "token": K}}`` (``K``: the job's ``FARM_JOB_MARK``) with
  three file descriptors attached (the child's stdin, stdout and stderr); the zygote answers ``{"forked": PID}``;
- zygote → supervisor: ``{"exit": PID, "code": C}`` when a child ends (``C`` < 0: killed by signal ``-C``).

The child calls ``setsid`` (its own process group, so a time limit kills it and whatever it started) and
asks to be killed with the zygote, which asks to be killed with the worker. The zygote is a child subreaper: a
process a job started and left behind when its own process died comes to it, and is killed (``workers.jobtree``).
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import traceback
from typing import Any

from workers.jobtree import MARK_ENV, become_subreaper, kill_adopted
from workers.processes import die_with_parent

MAX_FDS = 3


CUDA_ERROR_NOT_INITIALIZED = 3


def cuda_driver_initialized() -> bool:
    """Whether this process called ``cuInit`` (any library may have, e.g. a device count at import).

    A process forked after ``cuInit`` cannot use CUDA: its first CUDA call fails with an initialization
    error. Before ``cuInit``, ``cuDeviceGetCount`` answers CUDA_ERROR_NOT_INITIALIZED; any other answer means
    the driver is up (or in a state we cannot vouch for). No driver library: nothing to initialise.
    """
    import ctypes

    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    count = ctypes.c_int(0)
    return libcuda.cuDeviceGetCount(ctypes.byref(count)) != CUDA_ERROR_NOT_INITIALIZED


def device_touched(backend: str) -> str | None:
    """Why the imported framework may already hold a device (forking then would share it), or None."""
    if cuda_driver_initialized():
        return "the CUDA driver was initialised at import (a forked child could not use the GPU)"
    if backend == "jax":
        try:
            from jax._src import xla_bridge

            if getattr(xla_bridge, "_backends", None):
                return "jax initialised its backends at import"
        except ImportError:
            return None
    elif backend == "torch":
        import torch

        if torch.cuda.is_initialized():
            return "torch initialised CUDA at import"
    return None


def _send(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.sendall((json.dumps(message) + "\n").encode())


def _become_child(sock: socket.socket, wake_r: int, wake_w: int, fds: list[int], spawn_t: float, token: str) -> None:
    """In the forked process: take the job's stdio, forget the zygote's plumbing, and run the child's main."""
    try:
        os.setsid()
        die_with_parent()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sock.close()
        os.close(wake_r)
        os.close(wake_w)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        # The child's own standard streams, open for the rest of its life (no context manager can hold them).
        sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115 - see above
        sys.stdout = open(1, "w", encoding="utf-8", buffering=1, closefd=False)  # noqa: SIM115 - see above
        sys.stderr = open(2, "w", encoding="utf-8", buffering=1, closefd=False)  # noqa: SIM115 - see above
        os.environ["FARM_SPAWN_T"] = repr(spawn_t)
        os.environ[MARK_ENV] = token  # inherited by every program the job runs (workers.jobtree)
        os.environ["FARM_FORKED"] = "1"
        from workers import child

        code = child.main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:  # noqa: BLE001 - the child must never return into the zygote's loop
        traceback.print_exc()
        code = 5
    try:
        sys.stderr.flush()
    finally:
        os._exit(code)


def reap(sock: socket.socket, children: set[int]) -> None:
    """Collect every ended child: a job's process is reported to the supervisor, and then whatever it left
    behind (descendants adopted here, as this process is a subreaper) is killed; an adopted orphan is only
    reaped."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid in children:
            children.discard(pid)
            _send(sock, {"exit": pid, "code": os.waitstatus_to_exitcode(status)})
            kill_adopted(children)


def serve(sock: socket.socket) -> int:
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    from workers.child import import_framework

    try:
        ready = import_framework(backend)
        import farm.settings  # noqa: F401 - loaded here once for every forked child
        import workers.datasets  # noqa: F401 - what every job imports next: load it once, here

        reason = device_touched(backend)
    except Exception as e:  # noqa: BLE001 - told to the worker, whose jobs then start fresh interpreters
        _send(sock, {"error": f"importing Keras with the {backend} backend failed: {e!r}"})
        return 3
    if reason:
        _send(sock, {"error": f"cannot fork training children: {reason}"})
        return 3
    _send(sock, {"ready": ready})

    become_subreaper()  # a job's descendants orphaned by its abrupt death come here, to be killed (workers.jobtree)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    children: set[int] = set()
    buffer = b""
    while True:
        watched: list[socket.socket | int] = [sock, wake_r]
        readable, _, _ = select.select(watched, [], [])
        if wake_r in readable:
            os.read(wake_r, 4096)
        reap(sock, children)
        if sock not in readable:
            continue
        data, fds, _, _ = socket.recv_fds(sock, 65536, MAX_FDS)
        if not data:
            return 0  # the supervisor closed its end: nothing more to serve
        buffer += data
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            request = json.loads(line)
            spawn_t = float(request["fork"]["spawn_t"])
            token = str(request["fork"].get("token", ""))
            if len(fds) != MAX_FDS:
                for fd in fds:
                    os.close(fd)
                _send(sock, {"refused": f"a fork request needs {MAX_FDS} descriptors, got {len(fds)}"})
                continue
            pid = os.fork()
            if pid == 0:
                _become_child(sock, wake_r, wake_w, fds, spawn_t, token)
            for fd in fds:
                os.close(fd)
            fds = []
            children.add(pid)
            _send(sock, {"forked": pid})


def main() -> int:
    fd = int(os.environ.pop("FARM_ZYGOTE_FD"))
    sock = socket.socket(fileno=fd)
    # stdout carries nothing here; what libraries print goes to stderr with the rest of the zygote's log.
    os.dup2(2, 1)
    try:
        return serve(sock)
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
