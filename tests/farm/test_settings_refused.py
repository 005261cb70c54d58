"""Settings refused at load, in one line naming where the value came from, exit 2 (issue #24 items 4 and 10).

- A malformed broker URL (a raw ``/ # ? @`` or space in the password, a bad port, host, database or option, an
  IPv6 address without brackets): the line never holds the password or any piece of the user info, in
  ``farm status``, ``farm submit`` or ``farm worker`` (real processes), whatever the password holds.
- Timings that contradict each other (a heartbeat as long as the lease made a worker reap its own job).
- A worker name that is not plain ASCII (invalid UTF-8 on the command line, surrogates in the environment).
- A ``rediss://`` URL naming a CA file that is not there: said so, naming the file (not "start a Redis server").
"""

from __future__ import annotations

import os
import random
import string
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from farm.settings import load_settings, mask_url
from tests.helpers import REPO, farm_env, run_farm_together

SPECIAL = "/#?@:%& "
"""What a URL reserves (and a space): each one raw in a password mangles the URL somewhere."""
SEED = REPO / "examples" / "seed.yaml"


def secret(rng: random.Random) -> str:
    """A password of distinctive 4-letter pieces with special characters between and around them."""
    pieces = ["".join(rng.choices(string.ascii_letters, k=4)) for _ in range(rng.randint(2, 4))]
    seps = [rng.choice(SPECIAL) for _ in range(len(pieces))]
    text = "".join(p + s for p, s in zip(pieces, seps, strict=True))
    return text if rng.random() < 0.5 else rng.choice(SPECIAL) + text


def mangled_urls(password: str) -> list[str]:
    """Broker URLs that carry ``password`` raw, in each place a password goes, with a port, database and query."""
    return [
        f"redis://:{password}@host:6379/0",
        f"redis://alice:{password}@host:6379/0",
        f"redis://{password}@host/0",
        f"rediss://:{password}@host:6380/1?ssl_cert_reqs=none",
        f"unix://:{password}@/run/redis.sock?db=0",
        f"redis://:{password}@host:6379/x",
        f"redis://:{password}@host:99999/0",
        f"redis://:{password}@::1:6379/0",
        f"redis://:{password}@[::1:6379/0",
        f"redis://host:6379/0?password={password}&db=1",
        f"redis://:{password}@host:6379/0?bogus=1",
    ]


def pieces(password: str) -> list[str]:
    """Every run of 4 characters of the password: none may show."""
    return [password[i : i + 4] for i in range(len(password) - 3)]


def leaked(text: str, password: str) -> list[str]:
    return [p for p in pieces(password) if p in text]


def test_malformed_urls_never_show_the_password(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Property: for 60 generated passwords in 11 places each, `farm status` either refuses the URL in one line
    naming FARM_BROKER_URL, exit 2, or (a well-formed URL) masks it whole; no piece of the password shows."""
    rng = random.Random(244)  # noqa: S311  (reproducible test passwords, nothing secret)
    monkeypatch.setenv("FARM_CONFIG", str(tmp_path / "none.toml"))
    runner = CliRunner()
    refused = 0
    for _ in range(60):
        password = secret(rng)
        for url in mangled_urls(password):
            monkeypatch.setenv("FARM_BROKER_URL", url)
            result = runner.invoke(app, ["status"])
            out = result.output + (result.stderr or "")
            assert not leaked(out, password), (url, out)
            assert "Traceback" not in out
            if result.exit_code == 2:
                refused += 1
                lines = result.stderr.strip().splitlines()
                assert len(lines) == 1 and lines[0].startswith("error: FARM_BROKER_URL: "), (url, result.stderr)
            else:  # a URL that only looked mangled: it was tried, and masked wherever shown
                assert result.exit_code == 1, (url, out)
                assert not leaked(mask_url(url), password)
    assert refused > 550  # nearly all: a raw '&' or ':' alone in a user-info password is legal


@pytest.mark.parametrize(
    "url, says",
    [
        ("redis://:hunter2secret/abc@host:6379/0", "unencoded '/', '#', '?' or '@'"),
        ("redis://:hunter2se#cret@host:6379/0", "unencoded '/', '#', '?' or '@'"),
        ("redis://:hunter2se?cret@host:6379/0", "unencoded '/', '#', '?' or '@'"),
        ("redis://us@er:hunter2secret@host:6379/0", "unencoded '/', '#', '?' or '@'"),
        ("redis://:hunter2 secret@host:6379/0", "must be percent-encoded"),
        ("redis://:hunter2secret@host:65536/0", "port must be a number"),
        ("redis://:hunter2secret@host:6379/zero", "database number"),
        ("redis://:hunter2secret@host:6379/0?bogus=1", "unknown option 'bogus'"),
        ("redis://:hunter2secret@host:6379/0?ssl_ca_certs=/x", "TLS options need rediss://"),
        ("redis://:hunter2secret@host:6379/0?db=x", "Invalid value for 'db'"),
        ("redis://:hunter2secret@fe80::1:6379/0", "IPv6 address must be in brackets"),
        ("redis://:hunter2secret@[fe80::1/0", "not an IPv6 address in brackets"),
        ("redis://:hunter2secret@[nothex]:6379/0", "not an IPv6 address in brackets"),
        ("redis://h:6379/0?password=hunter2&secret", "query holds an unencoded '&' or '#'"),
        ("unix://hunter2secret.sock", "no host"),
    ],
)
def test_each_kind_of_malformed_url_says_what_is_wrong(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str, says: str
) -> None:
    monkeypatch.setenv("FARM_CONFIG", str(tmp_path / "none.toml"))
    result = CliRunner().invoke(app, ["config", "--broker", url])
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith("error: --broker (broker_url): ") and says in line, line
    assert "hunter2" not in line and "secret" not in line


@pytest.mark.parametrize(
    "url", ["redis://[::1]:6379/0", "redis://alice:p%2Fa%23ss@h:1/2?socket_timeout=3", "unix:///run/r%40x.sock?db=1"]
)
def test_well_formed_urls_still_load(url: str) -> None:
    assert load_settings(broker_url=url).broker_url == url


def test_status_submit_and_worker_processes_never_show_it(tmp_path: Path) -> None:
    """The real commands, each in its own process, from the environment and from the config file."""
    rng = random.Random(424)  # noqa: S311  (reproducible test passwords, nothing secret)
    runs = {}
    passwords = {}
    for i in range(4):
        password = secret(rng).replace(" ", "/")
        url = rng.choice(mangled_urls(password)[:6])
        passwords[i] = password
        env = farm_env(url, tmp_path / f"c{i}")
        for name, args in (("status", ["status"]), ("submit", ["submit", str(SEED)]), ("worker", ["worker"])):
            runs[f"{name}-{i}"] = (args, env)
        config = tmp_path / f"config{i}.toml"
        config.write_text(f"broker_url = {url!r}\n")
        file_env = {**env, "FARM_CONFIG": str(config)}
        del file_env["FARM_BROKER_URL"]
        runs[f"file-{i}"] = (["worker"], file_env)
    done = run_farm_together(runs, timeout=120)
    for key, out in done.items():
        password = passwords[int(key.rsplit("-", 1)[1])]
        assert out.returncode == 2, (key, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1, (key, out.stderr)
        where = "broker_url in " if key.startswith("file") else "FARM_BROKER_URL: "
        assert where in lines[0], (key, lines[0])
        assert not leaked(out.stdout + out.stderr, password), (key, out.stderr)


# -- timings -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "env, says",
    [
        ({"FARM_HEARTBEAT_S": "30", "FARM_LEASE_TTL_S": "30"}, "FARM_LEASE_TTL_S (30 s) must be at least three"),
        ({"FARM_HEARTBEAT_S": "60"}, "lease_ttl_s (30 s) must be at least three heartbeats (FARM_HEARTBEAT_S"),
        ({"FARM_HEARTBEAT_S": "11"}, "at least three heartbeats"),
        ({"FARM_REAP_INTERVAL_S": "1"}, "FARM_REAP_INTERVAL_S (1 s) is shorter than the heartbeat"),
        ({"FARM_VISIBILITY_TIMEOUT_S": "30"}, "FARM_VISIBILITY_TIMEOUT_S (30 s) must exceed lease_ttl_s"),
        ({"FARM_HEARTBEAT_S": "0.001", "FARM_REAP_INTERVAL_S": "1"}, "FARM_HEARTBEAT_S is 0.001: at least 0.1 s"),
    ],
)
def test_contradictory_timings_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str], says: str
) -> None:
    monkeypatch.setenv("FARM_CONFIG", str(tmp_path / "none.toml"))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for args in (["config"], ["worker"], ["status"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, result.output
        line = result.stderr.strip()
        assert "\n" not in line and says in line, line


def test_the_fast_test_timings_still_load() -> None:
    assert load_settings(lease_ttl_s=4, heartbeat_s=1, reap_interval_s=1).lease_ttl_s == 4


# -- worker names ------------------------------------------------------------------------------------------------


def test_a_worker_name_that_is_not_plain_text_is_one_line(tmp_path: Path) -> None:
    """Invalid UTF-8 on the command line and surrogates in the environment: exit 2, one line, no traceback."""
    env = {k.encode(): v.encode() for k, v in farm_env("redis://127.0.0.1:1/0", tmp_path).items()}
    runs = [
        ([b"worker", b"--name", b"\xff"], env, "--name (worker_name)"),
        ([b"worker", b"--name", b"a b"], env, "--name (worker_name)"),
        ([b"worker"], {**env, b"FARM_WORKER_NAME": b"w\xed\xa0\x80"}, "FARM_WORKER_NAME"),
        ([b"worker"], {**env, b"FARM_WORKER_NAME": b"w:1\x1b[2J"}, "FARM_WORKER_NAME"),
    ]
    for args, run_env, where in runs:
        out = subprocess.run(
            [os.fsencode(sys.executable), b"-m", b"cli.main", *args],
            env=run_env,
            cwd=REPO,
            capture_output=True,
            timeout=60,
        )
        err = out.stderr.decode("utf-8", "replace")
        assert out.returncode == 2, err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert f"error: {where}: " in err and "is not a worker name" in err and "\x1b" not in err, err


def test_host_style_worker_names_are_fine() -> None:
    for name in ("lab3-gpu0", "cpu@lab3.example.org", "W_1+a"):
        assert load_settings(worker_name=name).worker_name == name


# -- TLS files ---------------------------------------------------------------------------------------------------


def test_a_missing_ca_file_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FARM_CONFIG", str(tmp_path / "none.toml"))
    missing = tmp_path / "nope" / "ca.pem"
    for key, what in (("ssl_ca_certs", "CA file"), ("ssl_certfile", "client certificate")):
        url = f"rediss://:hunter2@127.0.0.1:6380/0?{key}={missing}"
        monkeypatch.setenv("FARM_BROKER_URL", url)
        for args in (["status"], ["worker"]):
            result = CliRunner().invoke(app, args)
            assert result.exit_code == 2, result.output
            line = result.stderr.strip()
            assert f"the TLS {what} {missing} ({key} in the broker URL) does not exist" in line, line
            assert "Start a Redis server" not in line and "hunter2" not in line
