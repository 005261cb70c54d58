"""Every way the broker can fail is one clear line on stderr and exit 1, never a traceback: a port nobody listens
on, a service that is not Redis (an HTTP server), a Redis that wants a password, TLS asked of a server without it,
and a server that accepts connections and never answers. Each against a real local server."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from farm.embedded import EmbeddedRedis
from tests.helpers import REPO, farm_env, run_farm_together, throwaway_redis

QUICK = str(REPO / "examples" / "quick.yaml")
PASSWORD = "s3cret-pass"  # noqa: S105  (a throwaway server's password)
COMMANDS = {
    "status": ["status"],
    "submit": ["submit", QUICK],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def http_port() -> Iterator[int]:
    """A real HTTP server (the standard library's) on a local port: something that is not Redis."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def silent_port() -> Iterator[int]:
    """A TCP listener that accepts connections (the kernel does, from its backlog) and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    yield int(listener.getsockname()[1])
    listener.close()


@pytest.fixture(scope="module")
def locked_redis() -> Iterator[EmbeddedRedis]:
    """A real redis-server on a TCP port with ``--requirepass``."""

    def make(directory: Path, **kwargs: object) -> EmbeddedRedis:
        return EmbeddedRedis(directory, port=free_port(), password=PASSWORD, appendonly=False)

    with throwaway_redis(make) as server:
        yield server


def assert_one_line(out, *needles: str, code: int = 1) -> str:  # type: ignore[no-untyped-def]
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == code, (out.returncode, out.stdout, out.stderr)
    assert len(lines) == 1, out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    line = lines[0]
    assert line.startswith("error: "), line
    for needle in needles:
        assert needle in line, line
    return line


def run_each(url: str, tmp_path: Path, **extra: str) -> dict:
    env = farm_env(url, tmp_path / "cache", **extra)
    return run_farm_together({name: (args, env) for name, args in COMMANDS.items()}, timeout=60)


def test_a_port_nobody_listens_on(tmp_path: Path) -> None:
    for name, out in run_each(f"redis://127.0.0.1:{free_port()}/0", tmp_path).items():
        assert_one_line(out, "cannot reach Redis at"), name


def test_a_service_that_is_not_redis(http_port: int, tmp_path: Path) -> None:
    """An HTTP server on the broker's port answered a 50-line traceback (redis' InvalidResponse) before."""
    url = f"redis://127.0.0.1:{http_port}/0"
    for name, out in run_each(url, tmp_path).items():
        line = assert_one_line(out, "does not speak the Redis protocol", f"127.0.0.1:{http_port}")
        assert "right host and port" in line, name


def test_the_dry_run_names_a_service_that_is_not_redis(http_port: int, tmp_path: Path) -> None:
    """--dry-run needs no broker: it still shows the matrix, and says in one line why workers were not checked."""
    env = farm_env(f"redis://127.0.0.1:{http_port}/0", tmp_path / "cache")
    out = run_farm_together({"dry": (["submit", QUICK, "--dry-run"], env)})["dry"]
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    [line] = [x for x in out.stdout.splitlines() if "live workers not checked" in x]
    assert "does not speak the Redis protocol" in line and "right host and port" in line


def test_a_redis_that_wants_a_password(locked_redis: EmbeddedRedis, tmp_path: Path) -> None:
    """Without a password (NOAUTH) the line says how to give one; with a wrong one (WRONGPASS) it never shows it."""
    plain = f"redis://127.0.0.1:{locked_redis.port}/0"
    for name, out in run_each(plain, tmp_path).items():
        assert_one_line(out, "refused the credentials", "wants a password", ":PASSWORD@"), name
    wrong = f"redis://:not-the-one@127.0.0.1:{locked_redis.port}/0"
    for name, out in run_each(wrong, tmp_path).items():
        line = assert_one_line(out, "refused the credentials", ":***@")
        assert "not-the-one" not in out.stderr + out.stdout and PASSWORD not in line, name


def test_tls_asked_of_a_server_without_it(locked_redis: EmbeddedRedis, http_port: int, tmp_path: Path) -> None:
    """rediss:// to a plain Redis and to a plain HTTP server: the TLS handshake fails, and the line says so."""
    runs = {
        (name, port): (args, farm_env(f"rediss://127.0.0.1:{port}/0", tmp_path / "cache"))
        for port in (locked_redis.port, http_port)
        for name, args in COMMANDS.items()
    }
    for key, out in run_farm_together(runs, timeout=60).items():  # type: ignore[arg-type]
        assert_one_line(out, "TLS handshake", "speak TLS", "redis://"), key


def test_a_server_that_never_answers(silent_port: int, tmp_path: Path) -> None:
    outs = run_each(f"redis://127.0.0.1:{silent_port}/0", tmp_path, FARM_REDIS_TIMEOUT_S="2")
    for name, out in outs.items():
        assert_one_line(out, "did not answer within 2 s"), name


def test_failures_mid_command_are_one_line() -> None:
    """After the first ping: a reply that is not Redis' and a refused login mid-command, in words."""
    import redis

    from cli.common import outage

    why = outage(redis.exceptions.InvalidResponse('Protocol error, got "<" as reply type byte'))
    assert why is not None and "stopped making sense" in why
    why = outage(redis.exceptions.ResponseError("NOPERM this user has no permissions to run the 'get' command"))
    assert why is not None and "refused" in why
    assert outage(redis.exceptions.ResponseError("ERR wrong number of arguments for 'get'")) is None  # a bug
