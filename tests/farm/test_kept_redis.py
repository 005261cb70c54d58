"""The Redis a ``farm run`` keeps in its output directory: reopened by later commands, shared while several use
it, never two servers on one append-only file, stopped by the last user."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from farm.embedded import EmbeddedRedis
from farm.errors import FarmUnavailable
from farm.kept_redis import KeptRedis
from tests.helpers import REPO


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """A short path: the server's unix socket lives in it."""
    with tempfile.TemporaryDirectory(prefix="kept-") as d:
        yield Path(d) / "out"


def server_pid(url: str) -> int:
    return int(redis.Redis.from_url(url).info("server")["process_id"])


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_directory_without_a_kept_redis_is_refused_in_one_line(run_dir: Path) -> None:
    run_dir.mkdir()
    with pytest.raises(FarmUnavailable, match="holds no farm run's Redis") as e:
        KeptRedis(run_dir).open()
    assert "\n" not in str(e.value)
    assert not (run_dir / "redis").exists()  # nothing made: a later `farm run` starts from a clean directory


def test_the_data_outlives_the_run_and_comes_back(run_dir: Path) -> None:
    with KeptRedis(run_dir, create=True) as first:
        redis.Redis.from_url(first.url).set("farm:kept", "yes")
        pid = server_pid(first.url)
    assert not alive(pid)  # its only user left: stopped
    with KeptRedis(run_dir) as again:
        assert redis.Redis.from_url(again.url).get("farm:kept") == b"yes"


def test_two_users_share_one_server_and_the_last_one_stops_it(run_dir: Path) -> None:
    run = KeptRedis(run_dir, create=True)
    run.open()
    pid = server_pid(run.url)
    beside = KeptRedis(run_dir)
    beside.open()
    assert server_pid(beside.url) == pid  # adopted, not a second server
    run.close()  # the run ends while the other command still reads
    assert alive(pid) and redis.Redis.from_url(beside.url).ping()
    beside.close()
    assert not alive(pid)
    beside.close()  # twice is harmless


def test_a_server_nobody_holds_is_adopted_and_then_stopped(run_dir: Path) -> None:
    """A killed ``farm run`` leaves its redis-server behind (it runs in a session of its own): the next user
    finds it answering and uses it instead of starting another on the same file."""
    orphan = EmbeddedRedis(run_dir / "redis").start()
    try:
        pid = orphan.proc.pid  # type: ignore[union-attr]
        with KeptRedis(run_dir) as kept:
            assert server_pid(kept.url) == pid
        assert not alive(pid)
    finally:
        orphan.stop()


OPENER = """
import sys, time
from pathlib import Path
import redis
from farm.kept_redis import KeptRedis
kept = KeptRedis(Path(sys.argv[1]), create=True)
kept.open()
print(redis.Redis.from_url(kept.url).info("server")["process_id"], flush=True)
while not Path(sys.argv[2]).exists():  # every user holds it until all have opened it
    time.sleep(0.05)
kept.close()
"""


def test_users_starting_together_start_one_server(run_dir: Path) -> None:
    """Processes that open the directory at the same moment (a run and commands beside it) find one another:
    while they all hold it they see one server, and none is left running once all have left."""
    go = run_dir.parent / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPENER, str(run_dir), str(go)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        for _ in range(4)
    ]
    try:
        pids = {p.stdout.readline().strip() for p in procs}  # type: ignore[union-attr]
    finally:
        go.touch()
    for p in procs:
        p.communicate(timeout=120)
    assert all(p.returncode == 0 for p in procs)
    assert len(pids) == 1, pids
    assert not alive(int(pids.pop()))


def test_a_server_that_cannot_start_is_one_line(run_dir: Path) -> None:
    """A socket path too long for a unix socket, or a directory the server cannot use: one line saying why."""
    deep = run_dir / ("d" * 120)
    with pytest.raises(FarmUnavailable, match="socket path too long") as e:
        KeptRedis(deep, create=True).open()
    assert "\n" not in str(e.value)
    (run_dir / "redis").mkdir(parents=True)
    (run_dir / "redis" / "appendonlydir").write_text("not a directory")  # where Redis 7 keeps its files
    with pytest.raises(FarmUnavailable, match="cannot open the Redis kept in") as e:
        KeptRedis(run_dir).open()
    assert "\n" not in str(e.value)
