"""Redis passwords, ACL users and TLS work for every command and the worker, and secrets never show."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from farm.embedded import EmbeddedRedis
from tests.helpers import WorkerProcess, farm_env, run_farm, wait_for, write_sweep

# Every test here runs real processes against a secured server (and the first trains a job through a real worker):
# slow. The fast loop checks a password-protected server's wrong password in tests/farm/test_broker_urls.py.
pytestmark = pytest.mark.slow

SECRET = "s3cret-Pa55"  # noqa: S105  (a throwaway server's password, which no output may show)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_certs(d: Path) -> dict[str, str]:
    """A throwaway CA and a server certificate for localhost."""

    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl here to make the TLS certificates")

    def ssl(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=d, check=True, capture_output=True)

    ssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=farm-test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    )
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr")
    (d / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    ssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        "server.crt",
        "-extfile",
        "ext.cnf",
    )
    return {"cert_file": str(d / "server.crt"), "key_file": str(d / "server.key"), "ca_cert_file": str(d / "ca.crt")}


@pytest.fixture(params=["password", "acl-user", "tls"])
def secured(request: pytest.FixtureRequest) -> Iterator[EmbeddedRedis]:
    with tempfile.TemporaryDirectory(prefix="farm-sec-") as d:
        kind = request.param
        kw: dict = {"password": SECRET}
        if kind == "acl-user":
            kw["user"] = "farmer"
        if kind == "tls":
            kw.update(port=free_port(), tls=make_certs(Path(d)))
        server = EmbeddedRedis(Path(d) / "redis", **kw)
        try:
            server.start()
        except RuntimeError as e:
            if kind == "tls" and "tls" in str(e).lower():
                pytest.skip(f"this redis-server has no TLS: {e}")
            raise
        try:
            yield server
        finally:
            server.stop()


def test_every_command_and_the_worker_with_credentials(secured: EmbeddedRedis, tmp_path: Path) -> None:
    url = secured.url
    env = farm_env(url, tmp_path / "cache")
    (tmp_path / "cache").mkdir()
    sweep = write_sweep(tmp_path, "secured", samples=64, test_samples=16)
    worker = WorkerProcess("secure-w", env, tmp_path / "w.log", [])
    try:
        worker.wait_registered(url)
        sub = run_farm(["submit", str(sweep), "--json", "--allow-unserved"], env)
        assert sub.returncode == 0, sub.stderr
        sid = json.loads(sub.stdout)["sweep_id"]
        wait_for(
            lambda: json.loads(run_farm(["status", sid, "--json"], env).stdout)["counts"].get("succeeded") == 1,
            180,
            "the job over an authenticated connection",
        )
        outputs = [sub.stdout + sub.stderr]
        for args in (["status", sid], ["workers"], ["results", sid], ["report", sid], ["config"]):
            out = run_farm(args, env)
            assert out.returncode == 0, (args, out.stderr)
            outputs.append(out.stdout + out.stderr)
    finally:
        worker.stop()
    for text in [*outputs, worker.text()]:
        assert SECRET not in text


def test_wrong_password_is_a_clear_error_without_the_secret(secured: EmbeddedRedis, tmp_path: Path) -> None:
    bad = secured.url.replace(SECRET, "wrong-" + SECRET[::-1])
    out = run_farm(["status", "--json"], farm_env(bad, tmp_path))
    assert out.returncode == 1
    assert "Redis" in out.stderr and "Traceback" not in out.stderr
    assert SECRET[::-1] not in out.stderr and SECRET not in out.stderr
