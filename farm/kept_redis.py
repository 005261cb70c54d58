"""The Redis that ``farm run`` keeps in its output directory, open to every command, one server at a time.

``farm run -o OUT`` keeps its sweep in a redis-server of its own (``OUT/redis``: a unix socket and the
append-only file). Once the run has ended, ``farm report --run-dir OUT`` (and every other command that reads
or changes the farm) opens that same data again. Several processes may want it at once — a ``farm run`` under
way and a ``farm status`` beside it, two reports, a run started while a report reads — so the server is
shared, never doubled: two redis-servers on one append-only file would each write their own history into it.

Two lock files in ``OUT/redis`` say who may do what:

- ``serve.lock``, held exclusively for a moment by whoever decides to start or stop the server;
- ``users.lock``, held shared by every process using the server for as long as it does.

The first user starts the server; the last one to leave (the one that can take ``users.lock`` exclusively)
stops it. A process that dies holding a lock loses it with its life (``flock``), so a killed ``farm run``
leaves at most a server nobody uses, which the next user finds answering and adopts instead of starting
another.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import time
from pathlib import Path
from typing import IO

import redis

from farm.embedded import EmbeddedRedis
from farm.errors import FarmUnavailable

LOCK_WAIT_S = 30.0
"""How long to wait for another process's start or stop of the server before giving up with one line."""

STOP_WAIT_S = 10.0
"""How long a stopped server may take to exit (it flushes its append-only file) before it is killed."""


class KeptRedis:
    """The redis-server of a ``farm run`` directory, opened with :meth:`open` and left with :meth:`close`.

    ``create`` is for ``farm run`` itself: it may start on a directory that holds no Redis yet. Every other
    command refuses a directory without one, rather than answer from a new, empty store."""

    def __init__(self, directory: Path, *, create: bool = False) -> None:
        self.run_dir = Path(directory)
        self.dir = self.run_dir / "redis"
        self.create = create
        self._server: EmbeddedRedis | None = None
        self._use: IO[bytes] | None = None

    @property
    def server(self) -> EmbeddedRedis:
        """The server's handle (made on first use: making one creates its directory)."""
        if self._server is None:
            self._server = EmbeddedRedis(self.dir)
        return self._server

    @property
    def url(self) -> str:
        return self.server.url

    def open(self) -> str:
        """Use the server, starting it when nobody has; returns its URL. A server that cannot start (no
        redis-server, a socket path too long, a damaged file, a directory it may not write) is FarmUnavailable,
        one line saying why."""
        if not self.create and not self.dir.is_dir():
            raise FarmUnavailable(
                f"{self.run_dir} holds no farm run's Redis ({self.dir} does not exist): give --run-dir the "
                "directory that `farm run -o` wrote"
            )
        try:
            return self._open()
        except (RuntimeError, OSError) as e:
            why = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise FarmUnavailable(f"cannot open the Redis kept in {self.dir}: {why}") from None

    def _open(self) -> str:
        self.dir.mkdir(parents=True, exist_ok=True)
        with _locked(self.dir / "serve.lock", fcntl.LOCK_EX, "start"):
            started = _answering(self.url) is None
            if started:
                self.server.start()
            try:
                use = open(self.dir / "users.lock", "ab")  # noqa: SIM115 - held until close()
                fcntl.flock(use, fcntl.LOCK_SH)
            except BaseException:  # a Ctrl-C right after the start: no server left behind that nobody uses
                if started:
                    self.server.stop()
                raise
            self._use = use
        return self.url

    def close(self) -> None:
        """Stop using the server; stop it too when no other process uses it. Safe to call twice."""
        use, self._use = self._use, None
        if use is None:
            return
        with _locked(self.dir / "serve.lock", fcntl.LOCK_EX, "stop"):
            use.close()  # our shared lock goes with it
            with open(self.dir / "users.lock", "ab") as probe:
                try:
                    fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return  # another process still uses it: the last one stops it
                self._stop_server()

    def _stop_server(self) -> None:
        """Stop the server, whoever started it: our own child by its handle; one another process started
        (a ``farm run`` that has ended, a killed one's orphan) by ``SHUTDOWN``, waiting for it to exit."""
        if self.server.proc is not None:
            self.server.stop(STOP_WAIT_S)
            return
        pid = _answering(self.url)
        if pid is None:
            return
        try:
            redis.Redis.from_url(self.url, socket_timeout=STOP_WAIT_S).shutdown()
        except redis.ConnectionError:
            pass  # the server closes the connection as it exits: the expected answer
        except redis.RedisError:
            _kill(pid)
            return
        deadline = time.monotonic() + STOP_WAIT_S
        while _alive(pid):
            if time.monotonic() > deadline:
                _kill(pid)
                return
            time.sleep(0.05)

    def __enter__(self) -> KeptRedis:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _answering(url: str) -> int | None:
    """The process id of the server answering at ``url``, once its data is loaded; None when none answers. A
    server still loading its append-only file is waited for: it is the one to use, never one to start beside."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=5.0)
    deadline = time.monotonic() + LOCK_WAIT_S
    try:
        while True:
            try:
                if not client.info("persistence").get("loading", 0):
                    return int(client.info("server")["process_id"])
            except redis.BusyLoadingError:
                pass
            if time.monotonic() > deadline:
                raise FarmUnavailable(
                    f"the farm run's Redis at {url} is still loading its data after {LOCK_WAIT_S:.0f} s"
                )
            time.sleep(0.05)
    except (redis.RedisError, OSError, KeyError, ValueError):
        return None
    finally:
        client.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # our own child that has exited is a zombie until reaped: it has gone all the same
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return _not_a_zombie(pid)


def _not_a_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


class _locked:
    """``flock`` on ``path`` for the block, waiting at most :data:`LOCK_WAIT_S` (then FarmUnavailable)."""

    def __init__(self, path: Path, how: int, doing: str) -> None:
        self.path = path
        self.how = how
        self.doing = doing
        self.file: IO[bytes] | None = None

    def __enter__(self) -> None:
        self.file = open(self.path, "ab")
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(self.file, self.how | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    self.file.close()
                    raise FarmUnavailable(
                        f"another process has held {self.path} for {LOCK_WAIT_S:.0f} s while it starts or stops "
                        f"the farm run's Redis; could not {self.doing} it"
                    ) from None
                time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        if self.file is not None:
            self.file.close()
