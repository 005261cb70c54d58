"""A Redis that hangs, and broker URLs whose passwords hold reserved characters (issue 10, round two).

- A redis-server stopped with SIGSTOP still accepts connections but never answers: every command must fail in
  one line, exit 1, saying the server did not answer (not "cannot reach"), and Celery's publish must give up
  too instead of hanging.
- A password with ``/ # : @ ? %`` works percent-encoded for the farm's client (redis-py) and for Celery/kombu
  (submit and the worker), and is masked whole wherever a URL is shown: no fragment of it ever appears.

Every server here is a throwaway redis-server on a unix socket in a temporary directory.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from typer.testing import CliRunner

from farm.embedded import EmbeddedRedis
from farm.queue import kombu_url, make_app
from farm.settings import load_settings, mask_url
from tests.helpers import REPO, farm_env, run_farm, run_farm_together, throwaway_redis

SEED = REPO / "examples" / "seed.yaml"
PASSWORD = "p/a#s:s@x%y"  # noqa: S105  (a throwaway server's password)
"""The password of the brief: every character a URL reserves for itself."""

PIECES = ("Qz7", "Wk8", "Jm9", "Vx6", "Hy5", "Rt4", "Np3", "Lc2")
STRONG = "Qz7/Wk8#Jm9:Vx6@Hy5%Rt4?Np3&Lc2"
"""A password whose pieces between reserved characters are distinctive, so a leaked fragment is visible."""


def encoded(password: str) -> str:
    return quote(password, safe="")


def leaks(text: str, password: str = STRONG) -> list[str]:
    """Every piece of ``password`` (raw or percent-encoded, whole or a fragment) that shows in ``text``."""
    found = [p for p in (password, encoded(password)) if p in text]
    if password == STRONG:
        found += [p for p in PIECES if p in text]
    return found


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{stderr}"
    assert "Traceback" not in stderr
    return lines[0]


# -- a hung Redis ------------------------------------------------------------------------------------------------


FAILING = {
    "status": ["status"],
    "submit": ["submit", str(SEED), "--allow-unserved"],
    "results": ["results"],
    "report": ["report"],
    "workers": ["workers"],
    "cancel": ["cancel", "nope"],
}
"""The commands that need Redis: against a stopped one each must fail in one line."""

DRY_RUN = ["submit", str(SEED), "--dry-run"]

FAST_LOOP = {"status", "submit", "dry-run"}
"""What the fast loop runs against a stopped Redis; the other commands run with the slow tests."""

PUBLISH = """
from farm.queue import make_app
from farm.settings import load_settings
app = make_app(load_settings(broker_url={url!r}, redis_timeout_s=2), ['farm.cpu'])
try:
    app.send_task('farm.run_job', args=[], queue='farm.cpu', retry=False)
except Exception as e:
    print('raised', type(e).__name__)
"""
"""Celery's own publish, without the farm's command line around it."""


@contextmanager
def stopped(server: EmbeddedRedis) -> Iterator[EmbeddedRedis]:
    """``server`` stopped with SIGSTOP: the kernel still accepts connections, nothing ever answers."""
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        yield server
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)  # before the server's SIGTERM, which a stopped process holds


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], subprocess.CompletedProcess[str]]:
    """The finished process of a command run against a throwaway server stopped with SIGSTOP.

    Each command waits out its own 2 s timeout against a server that never answers, so the commands of a group
    (the fast loop's, or the others) are started together, on the first test that asks for one of them, and wait
    at the same time; each in a process of its own, with a cache of its own.
    """
    done: dict[str, subprocess.CompletedProcess[str]] = {}

    def run(name: str) -> subprocess.CompletedProcess[str]:
        if name not in done:
            group = FAST_LOOP if name in FAST_LOOP else set(FAILING) - FAST_LOOP
            done.update(run_against_a_stopped_redis(group, tmp_path_factory.mktemp("stopped")))
        return done[name]

    return run


def run_against_a_stopped_redis(names: set[str], base: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    with throwaway_redis(PasswordRedis, password=PASSWORD) as server:
        runs = {
            name: (FAILING.get(name, DRY_RUN), farm_env(server.url, base / name, FARM_REDIS_TIMEOUT_S="2"))
            for name in names
        }
        if "dry-run" in runs:
            runs["dry-run"][1]["COLUMNS"] = "250"
        with stopped(server):
            return run_farm_together(runs, timeout=60)  # the tests' own bound: before the fix a command took ~40 s


@pytest.mark.parametrize("command", [c if c in FAST_LOOP else pytest.param(c, marks=pytest.mark.slow) for c in FAILING])
def test_a_stopped_redis_fails_each_command_in_one_line(
    stopped_run: Callable[[str], subprocess.CompletedProcess[str]], command: str
) -> None:
    out = stopped_run(command)
    line = one_line(out.stderr)
    assert out.returncode == 1, out.stderr
    assert "did not answer within 2 s" in line, line
    assert "cannot reach" not in line


def test_a_stopped_redis_is_named_in_the_dry_run(
    stopped_run: Callable[[str], subprocess.CompletedProcess[str]],
) -> None:
    """--dry-run needs no Redis: it still shows the plan (exit 0) and says why live workers were not checked."""
    out = stopped_run("dry-run")
    assert out.returncode == 0, out.stderr
    assert "live workers not checked" in out.stdout and "did not answer within 2 s" in out.stdout


@pytest.mark.slow  # kombu's connection retries wait ~7 s
def test_celery_publish_to_a_stopped_redis_gives_up(redis_server: EmbeddedRedis) -> None:
    """kombu's socket timeout: a publish fails with a connection error instead of waiting forever."""
    with stopped(redis_server):
        out = subprocess.run(
            [sys.executable, "-c", PUBLISH.format(url=redis_server.url)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "FARM_CONFIG": "/nonexistent.toml"},
        )
    assert "raised OperationalError" in out.stdout, out.stdout + out.stderr


def test_the_broker_options_bound_every_wait() -> None:
    cfg = load_settings(broker_url="redis://127.0.0.1:1/0", redis_timeout_s=7)
    conf = make_app(cfg).conf
    assert conf.broker_transport_options["socket_timeout"] == 7
    assert conf.broker_transport_options["socket_connect_timeout"] > 0
    assert conf.broker_connection_timeout > 0


def test_redis_failing_mid_command_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """After the first ping, a command whose Redis stops answering still ends in one line and exit 1."""
    from cli.main import app
    from farm.store import Store

    def hang(self: Store) -> list[str]:
        raise redis.TimeoutError("Timeout reading from /tmp/x/redis.sock")

    monkeypatch.setattr(Store, "sweep_ids", hang)
    with throwaway_redis() as server:
        monkeypatch.setenv("FARM_CONFIG", str(tmp_path / "none.toml"))
        result = CliRunner().invoke(app, ["status", "--broker", server.url])
    assert result.exit_code == 1, result.output
    assert "did not answer in time" in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


# -- passwords with reserved characters --------------------------------------------------------------------------


class PasswordRedis(EmbeddedRedis):
    """A throwaway server whose password is set on its command line; its URL carries it percent-encoded."""

    def __init__(self, directory: Path, password: str) -> None:
        super().__init__(directory, appendonly=False, extra_args=["--requirepass", password])
        self.secret = password

    @property
    def url(self) -> str:
        return f"unix://:{encoded(self.secret)}@{self.socket}?db=0"


@pytest.fixture
def redis_server() -> Iterator[EmbeddedRedis]:
    """This module's server: password-protected with the brief's password (conftest's start_worker uses it)."""
    with throwaway_redis(PasswordRedis, password=PASSWORD) as server:
        yield server


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{encoded(PASSWORD)}@127.0.0.1:6379/0",
        f"redis://alice:{encoded(PASSWORD)}@127.0.0.1:6379/0",
        f"unix://:{encoded(PASSWORD)}@/run/redis.sock?db=3",
        f"unix:///run/redis.sock?db=3&password={encoded(PASSWORD)}",
        f"rediss://h:6380/0?password={encoded(PASSWORD)}&ssl_cert_reqs=none",
        "redis://127.0.0.1:6379/0?password=a%26b+c",
    ],
)
def test_kombu_logs_in_with_what_redis_py_uses(url: str) -> None:
    """The credentials kombu reads from kombu_url(url) are exactly the ones redis-py reads from url."""
    from kombu import Connection
    from kombu.utils.url import url_to_parts
    from redis.connection import parse_url

    expected = parse_url(url)
    conn = Connection(kombu_url(url))
    if url.startswith("unix://"):  # kombu reads a socket URL's credentials from its host part, as here
        parts = url_to_parts(conn.hostname)
        user, password, db = parts.username, parts.password, dict(parts.query).get("virtual_host")
        assert "/" + parts.path == "/run/redis.sock" and db == "3"
    else:
        user, password = conn.userid, conn.password
    assert (user, password) == (expected.get("username"), expected.get("password"))


def test_an_encoded_password_works_for_the_store_and_celery(redis_server: EmbeddedRedis, tmp_path: Path) -> None:
    env = farm_env(redis_server.url, tmp_path)
    before = run_farm_together(
        {"status": (["status", "--json"], env), "dry": (["submit", str(SEED), "--dry-run", "--json"], env)}, timeout=60
    )
    status, dry = before["status"], before["dry"]
    # redis-py logged in: no sweep yet is a usage error (2)
    assert status.returncode == 2 and "no sweep has been submitted" in status.stderr, status.stderr
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["unserved"] is not None  # live workers were checked: the store logged in
    sub = run_farm(["submit", str(SEED), "--allow-unserved", "--json"], env, timeout=60)  # kombu publishes
    assert sub.returncode == 0, sub.stderr
    per_queue = json.loads(sub.stdout)["per_queue"]
    assert sum(per_queue.values()) == 20
    client = redis.Redis.from_url(redis_server.url)
    assert sum(client.llen(q) for q in per_queue) == 20  # the messages are on the queues
    client.close()
    for out in (status, dry, sub):
        assert not leaks(out.stdout + out.stderr, PASSWORD)


def test_the_query_form_works_for_celery(redis_server: EmbeddedRedis, tmp_path: Path) -> None:
    """``?password=`` made kombu raise a TypeError (TCP) or log in without it (socket); both clients use it now."""
    url = f"unix://{redis_server.socket}?db=0&password={encoded(PASSWORD)}"
    sub = run_farm(["submit", str(SEED), "--allow-unserved", "--json"], farm_env(url, tmp_path), timeout=60)
    assert sub.returncode == 0, sub.stderr
    assert json.loads(sub.stdout)["enqueued"] == 20
    assert not leaks(sub.stdout + sub.stderr, PASSWORD)


# Each a real process: the fast loop runs `farm status` with the strong password, the slow tests the rest.
@pytest.mark.parametrize("wrong", [pytest.param("nope", marks=pytest.mark.slow), STRONG])
@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        pytest.param(["submit", str(SEED)], marks=pytest.mark.slow),
        pytest.param(["workers"], marks=pytest.mark.slow),
    ],
    ids=lambda a: a[0],
)
def test_a_wrong_password_is_one_line_and_never_shown(
    redis_server: EmbeddedRedis, tmp_path: Path, wrong: str, args: list[str]
) -> None:
    url = f"unix://:{encoded(wrong)}@{redis_server.socket}?db=0"
    out = run_farm(args, farm_env(url, tmp_path), timeout=60)
    line = one_line(out.stderr)
    assert out.returncode == 1, out.stderr
    assert "refused the credentials" in line and ":***@" in line, line
    assert not leaks(out.stdout + out.stderr, wrong) and not leaks(out.stdout + out.stderr, PASSWORD)
    if wrong == STRONG:
        assert not leaks(out.stdout + out.stderr)


@pytest.mark.slow  # a real worker process (Celery's start-up)
def test_a_worker_logs_in_and_never_shows_the_password(
    redis_server: EmbeddedRedis, start_worker, tmp_path: Path
) -> None:
    worker = start_worker("pw1")  # registers through redis-py, then consumes through kombu
    env = farm_env(redis_server.url, tmp_path, COLUMNS="250")
    listed = run_farm(["workers", "--json"], env, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert [w["name"] for w in json.loads(listed.stdout)] == ["pw1"]
    table = run_farm(["workers"], env, timeout=60)
    config = run_farm(["config"], env, timeout=60)
    assert config.returncode == 0 and ":***@" in config.stdout, config.stdout
    worker.stop()
    log = worker.text()
    assert "ready" in log, log  # Celery connected with the decoded password
    for text in (log, listed.stdout, table.stdout + table.stderr, config.stdout + config.stderr):
        assert not leaks(text, PASSWORD)


# -- masking -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{STRONG}@h:6379/0",  # raw: every reserved character in the userinfo
        f"redis://alice:{STRONG}@h:6379/0",
        f"redis://:{encoded(STRONG)}@h:6379/0",
        f"redis://alice:{encoded(STRONG)}@h:6379/0",
        f"rediss://:{encoded(STRONG)}@h:6380/0?ssl_cert_reqs=required",
        f"unix://:{STRONG}@/run/redis.sock?db=0",
        f"unix://:{encoded(STRONG)}@/run/redis.sock?db=0",
        f"unix:///run/redis.sock?password={STRONG}",
        f"unix:///run/redis.sock?db=2&password={STRONG}",
        f"unix:///run/redis.sock?password={encoded(STRONG)}&db=2",
        f"redis://h:6379/0?password={STRONG}&db=1",
        f"redis://{STRONG}@h:6379/0",  # a lone name some clients read as the password
        f":{STRONG}@h:6379/0",  # no scheme at all
        f"redis://:{STRONG.replace('?', ' ')}@h:6379/0",  # even a space
    ],
)
def test_the_mask_covers_the_whole_password(url: str) -> None:
    masked = mask_url(url)
    assert "***" in masked
    assert not leaks(masked), masked


def test_the_mask_keeps_what_is_not_secret() -> None:
    assert mask_url(f"redis://alice:{encoded(STRONG)}@h:6379/0") == "redis://alice:***@h:6379/0"
    assert mask_url(f"unix:///s.sock?password={encoded(STRONG)}&db=2") == "unix:///s.sock?password=***&db=2"
    assert mask_url("redis://h:6379/0?db=1") == "redis://h:6379/0?db=1"


def test_farm_config_masks_an_encoded_password(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from cli.main import app

    monkeypatch.setenv("FARM_CONFIG", str(tmp_path / "none.toml"))
    for url in (f"redis://bob:{encoded(STRONG)}@h:6379/0", f"unix:///s.sock?db=0&password={encoded(STRONG)}"):
        for args in (["config"], ["config", "--json"]):
            result = CliRunner().invoke(app, [*args, "--broker", url], env={"COLUMNS": "250"})
            assert result.exit_code == 0, result.output
            assert "***" in result.output and not leaks(result.output), result.output
    bad = CliRunner().invoke(app, ["config", "--broker", f"http://:{STRONG}@h/0"])
    assert bad.exit_code == 2 and not leaks(bad.output), bad.output
