"""The supervisor's side of the fork server (see ``workers.zygote``): start one, ask it for children, and
follow each child as if it were a ``subprocess.Popen`` of our own.

The children are the zygote's, not ours, so we cannot ``waitpid`` them: the zygote reports each exit over
the control socket, and a child whose zygote died (it dies with it) is reported killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from typing import IO, Any

from workers.bounded import BoundedTail, read_chunk
from workers.processes import die_with_parent

STDERR_TAIL_BYTES = 16384
"""What is kept of a fork server's own stderr (its import's warnings, its death's traceback)."""

ZYGOTE_DIED = -9  # what a child is reported as when its zygote vanished (PR_SET_PDEATHSIG sent SIGKILL)


class ForkedProc:
    """A child forked by a zygote, with the part of ``Popen``'s interface the supervisor uses."""

    def __init__(self, pid: int, stdin: IO[str], stdout: IO[str], stderr: IO[str]) -> None:
        self.pid = pid
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self.returncode: int | None = None
        self.exit_reason: str | None = None  # set when the exit was inferred, not reported
        self._ended = threading.Event()

    def _set_exit(self, code: int) -> None:
        if self.returncode is None:
            self.returncode = code
        self._ended.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired(f"forked child {self.pid}", timeout or 0)
        assert self.returncode is not None
        return self.returncode


class Zygote:
    """One fork server with a fixed environment. ``fork()`` returns a ``ForkedProc`` in milliseconds."""

    def __init__(self, env: dict[str, str], ready_timeout_s: float = 300.0) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock = ours
        self._lock = threading.Lock()  # guards _procs and _early_exits
        self._fork_lock = threading.Lock()  # one fork request in flight at a time
        self._replies: list[dict[str, Any]] = []
        self._reply_ready = threading.Condition()
        self._procs: dict[int, ForkedProc] = {}
        self._early_exits: dict[int, int] = {}
        self.error: str | None = None
        self.ready: dict[str, Any] = {}
        self.started_at = time.time()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "workers.zygote"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**env, "FARM_ZYGOTE_FD": str(theirs.fileno())},
            pass_fds=(theirs.fileno(),),
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        theirs.close()
        self._stderr = BoundedTail(STDERR_TAIL_BYTES)
        self._threads = [
            threading.Thread(target=self._read_control, daemon=True, name="farm-zygote-control"),
            threading.Thread(target=self._read_stderr, daemon=True, name="farm-zygote-stderr"),
        ]
        for t in self._threads:
            t.start()
        self._ready_timeout_s = ready_timeout_s

    # -- the zygote's messages ------------------------------------------------------------------------------
    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        fd = self.proc.stderr.fileno()
        while chunk := read_chunk(fd):
            self._stderr.add(chunk)

    @property
    def stderr_tail(self) -> list[str]:
        """The last lines of the fork server's stderr (a bounded tail, read in chunks)."""
        return self._stderr.lines()[-40:]

    def _read_control(self) -> None:
        for line in self._sock.makefile("rb"):
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "exit" in message:
                with self._lock:
                    proc = self._procs.pop(message["exit"], None)
                    if proc is None:
                        self._early_exits[message["exit"]] = int(message["code"])
                if proc is not None:
                    proc._set_exit(int(message["code"]))
                continue
            if "ready" in message:
                self.ready = message["ready"]
            if "error" in message:
                self.error = message["error"]
            with self._reply_ready:
                self._replies.append(message)
                self._reply_ready.notify_all()
        # The zygote is gone, and its children with it.
        self.error = self.error or self._death_reason()
        with self._lock:
            orphans, self._procs = list(self._procs.values()), {}
        for proc in orphans:
            proc.exit_reason = f"the training process died with its fork server ({self.error})"
            proc._set_exit(ZYGOTE_DIED)
        with self._reply_ready:
            self._replies.append({"error": self.error})
            self._reply_ready.notify_all()

    def _death_reason(self) -> str:
        code = self.proc.wait()
        tail = "; ".join(self.stderr_tail[-3:])
        return f"the fork server exited with code {code}" + (f": {tail}" if tail else "")

    def _next_reply(self, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        with self._reply_ready:
            while not self._replies:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("the fork server did not answer")
                self._reply_ready.wait(left)
            return self._replies.pop(0)

    # -- the supervisor's calls ------------------------------------------------------------------------------
    def wait_ready(self) -> bool:
        """Block until the zygote imported its framework (True) or failed (False, ``error`` says why)."""
        if self.ready:
            return True
        if self.error:
            return False
        try:
            reply = self._next_reply(self._ready_timeout_s)
        except TimeoutError:
            self.error = f"the fork server was not ready within {self._ready_timeout_s:g} s"
            self.close()
            return False
        return "ready" in reply

    def alive(self) -> bool:
        return self.proc.poll() is None and self.error is None

    def fork(self, spawn_t: float, token: str = "") -> ForkedProc:
        """A fresh child of the zygote, its stdio connected to pipes of ours."""
        if not self.wait_ready():
            raise RuntimeError(self.error or "the fork server is not ready")
        pipes = [os.pipe() for _ in range(3)]
        theirs = [pipes[0][0], pipes[1][1], pipes[2][1]]
        try:
            with self._fork_lock:
                message = (json.dumps({"fork": {"spawn_t": spawn_t, "token": token}}) + "\n").encode()
                socket.send_fds(self._sock, [message], theirs)
                reply = self._next_reply(30.0)
            if "forked" not in reply:
                raise RuntimeError(reply.get("error") or reply.get("refused") or f"fork refused: {reply}")
            pid = int(reply["forked"])
            proc = ForkedProc(
                pid,
                os.fdopen(pipes[0][1], "w", encoding="utf-8"),
                os.fdopen(pipes[1][0], "r", encoding="utf-8", errors="replace"),
                os.fdopen(pipes[2][0], "r", encoding="utf-8", errors="replace"),
            )
            with self._lock:
                if pid in self._early_exits:
                    proc._set_exit(self._early_exits.pop(pid))
                else:
                    self._procs[pid] = proc
            return proc
        except BaseException:
            for fd in (pipes[0][1], pipes[1][0], pipes[2][0]):
                with contextlib.suppress(OSError):
                    os.close(fd)
            raise
        finally:
            for fd in theirs:
                os.close(fd)

    def close(self) -> None:
        """Stop the zygote (its running children, if any, die with it)."""
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._sock.close()
