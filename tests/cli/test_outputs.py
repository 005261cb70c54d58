"""Output files (issue 10, round two): ``-o`` of results, report and compare, and ``farm run``'s files.

Each is written whole or not at all (farm.reports.files: a temporary file beside the target, fsync, rename), and each
way of failing is one line on stderr with exit 1 — missing directory, a file where a directory should be, a
place files cannot be created, a read-only mount, a full disk, a directory as the target — while an unknown
suffix is a usage error (exit 2) found before Redis is touched. The commands run as real subprocesses against
a throwaway redis-server holding two finished sweeps (nothing trains). Tests run as root here, so read-only
means a read-only mount (skipped where mounting is not allowed), not chmod.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import redis

from farm.reports.files import OutputError, write_atomic, write_frame
from farm.store import Store
from tests.helpers import REPO, farm_env, run_farm, store_finished_sweep, throwaway_redis

MOUNT, UMOUNT = shutil.which("mount"), shutil.which("umount")


@pytest.fixture(scope="module")
def farm_store() -> Iterator[dict]:
    with throwaway_redis(appendonly=False) as server:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        a = store_finished_sweep(Store(client), "base", {("cpu", "tensorflow"): [1000, 1010, 990, 1005]})
        b = store_finished_sweep(Store(client), "cand", {("cpu", "tensorflow"): [800, 810, 790, 805]})
        client.close()
        yield {"url": server.url, "a": a, "b": b}


COMMANDS = {
    "results": lambda s: ["results", s["a"]],
    "report": lambda s: ["report", s["a"]],
    "compare": lambda s: ["compare", s["a"], s["b"]],
}

REAL = pytest.mark.slow
"""The tests that run the real commands (a process of one to two and a half seconds each) are slow; the fast loop
keeps the in-process ones: the writer, each place's message, farm run's files, and the -o files that the in-process
commands of test_compare and test_report_contended write."""


def farm(farm_store: dict, tmp_path: Path, command: str, output: Path | str) -> subprocess.CompletedProcess:
    env = farm_env(farm_store["url"], tmp_path / "cache")
    return run_farm([*COMMANDS[command](farm_store), "-o", str(output)], env, timeout=120)


def one_error_line(out: subprocess.CompletedProcess, code: int) -> str:
    lines = out.stderr.strip().splitlines()
    assert out.returncode == code, out.stdout + out.stderr
    assert len(lines) == 1, f"expected one line on stderr:\n{out.stderr}"
    assert lines[0].startswith("error: ") and "Traceback" not in out.stderr
    return lines[0]


def leftovers(directory: Path) -> list[str]:
    """Temporary files a failed write left behind (there must be none)."""
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


# -- the commands ------------------------------------------------------------------------------------------------


@REAL
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_writes_the_file_whole(farm_store: dict, tmp_path: Path, command: str) -> None:
    target = tmp_path / "out.csv"
    target.write_text("old\n")
    out = farm(farm_store, tmp_path, command, target)
    assert out.returncode == 0, out.stderr
    assert len(pd.read_csv(target)) >= 1 and target.read_text() != "old\n"
    assert leftovers(tmp_path) == []


UNWRITABLE = ["missing directory", "under a file", "is a directory", "no files there", "full device"]


def unwritable(tmp_path: Path, case: str) -> tuple[Path, str]:
    """A place that cannot be written, of the kind ``case`` names, and what its message must say."""
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    return {
        "missing directory": (tmp_path / "nope" / "out.csv", "does not exist"),
        "under a file": (tmp_path / "afile" / "out.csv", "is not a directory"),  # ENOTDIR
        "is a directory": (tmp_path / "adir", "it is a directory"),
        "no files there": (Path("/proc/benchfarm-out.csv"), "cannot be created"),
        "full device": (Path("/dev/full"), "no space left"),  # a char device: ENOSPC
    }[case]


def nothing_left_behind(tmp_path: Path) -> None:
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "cache") == ["adir", "afile"]
    assert not any((tmp_path / "adir").iterdir())


@pytest.mark.parametrize("case", UNWRITABLE)
def test_each_place_that_cannot_be_written_has_its_message(tmp_path: Path, case: str) -> None:
    """farm.reports.files's refusal, in this process: the message the commands below print as their one line."""
    target, why = unwritable(tmp_path, case)
    with pytest.raises(OutputError) as info:
        write_frame(pd.DataFrame({"a": [1]}), target)
    assert str(info.value).startswith(f"cannot write {target}: ") and why in str(info.value), info.value
    nothing_left_behind(tmp_path)


@REAL
@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("case", UNWRITABLE)
def test_a_place_that_cannot_be_written_is_one_line(farm_store: dict, tmp_path: Path, command: str, case: str) -> None:
    """The real command line: the message of the test above as one line on stderr, exit 1."""
    target, why = unwritable(tmp_path, case)
    line = one_error_line(farm(farm_store, tmp_path, command, target), 1)
    assert f"cannot write {target}" in line and why in line, line
    nothing_left_behind(tmp_path)


@REAL
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_unknown_suffix_is_a_usage_error_before_redis(tmp_path: Path, command: str) -> None:
    """Exit 2 even with a broker that is down: the suffix is checked before Redis is touched."""
    down = {"url": "redis://127.0.0.1:1/0", "a": "a", "b": "b"}
    line = one_error_line(farm(down, tmp_path, command, tmp_path / "out.xlsx"), 2)
    assert "unknown suffix '.xlsx'" in line and all(s in line for s in (".csv", ".json", ".md", ".parquet")), line
    assert not (tmp_path / "out.xlsx").exists()


@pytest.fixture
def mounted(tmp_path: Path) -> Iterator[callable]:
    """Mount a filesystem for one test and unmount it after; skip where mounting is not permitted."""
    if MOUNT is None or UMOUNT is None:
        pytest.skip("no mount and umount here")
    mounts: list[Path] = []

    def mount(args: list[str], where: Path) -> Path:
        where.mkdir(parents=True, exist_ok=True)
        out = subprocess.run([MOUNT, *args, str(where)], capture_output=True, text=True)
        if out.returncode != 0:
            pytest.skip(f"cannot mount here: {out.stderr.strip()}")
        mounts.append(where)
        return where

    yield mount
    for where in reversed(mounts):
        subprocess.run([UMOUNT, "-l", str(where)], check=False)


def fill_up(path: Path) -> None:
    """Write zeros to ``path`` until its file system is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)


@REAL
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_full_disk_leaves_the_old_file(farm_store: dict, tmp_path: Path, mounted, command: str) -> None:
    disk = mounted(["-t", "tmpfs", "-o", "size=64k", "tmpfs"], tmp_path / "disk")
    target = disk / "out.csv"
    target.write_text("old,file\n1,2\n")
    fill_up(disk / "filler")
    free = os.statvfs(disk).f_bavail
    assert free == 0, f"{free} blocks still free"
    line = one_error_line(farm(farm_store, tmp_path, command, target), 1)
    assert "no space left" in line, line
    assert target.read_text() == "old,file\n1,2\n"  # before: truncated, then half-written
    assert leftovers(disk) == []


@REAL
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_read_only_mount_is_one_line(farm_store: dict, tmp_path: Path, mounted, command: str) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "out.csv").write_text("old\n")
    ro = mounted(["--bind", str(source)], tmp_path / "ro")
    remount = subprocess.run([MOUNT, "-o", "remount,ro,bind", str(ro)], capture_output=True, text=True)
    if remount.returncode != 0:
        pytest.skip(f"cannot remount read-only: {remount.stderr.strip()}")
    line = one_error_line(farm(farm_store, tmp_path, command, ro / "out.csv"), 1)
    assert "read-only file system" in line, line
    assert (source / "out.csv").read_text() == "old\n"


# -- farm run ----------------------------------------------------------------------------------------------------


@REAL
def test_run_with_an_output_dir_that_cannot_be_one(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    env = farm_env("redis://127.0.0.1:1/0", tmp_path / "cache")
    for target, why in (
        (tmp_path / "afile", "it is a file"),
        (tmp_path / "afile" / "out", "Not a directory"),
        (Path("/proc/benchfarm-out"), "cannot create"),
    ):
        out = run_farm(["run", str(REPO / "examples" / "quick.yaml"), "-o", str(target)], env, timeout=120)
        line = one_error_line(out, 1)
        assert why in line, line


def test_run_writes_its_files_whole_or_not_at_all(tmp_path: Path, mounted) -> None:
    """farm run's results.csv, report.csv and report.md go through the same writer: on a full disk the old
    files stay as they were and no temporary file is left."""
    from cli.run import OUTPUT_FILES, write_outputs

    disk = mounted(["-t", "tmpfs", "-o", "size=64k", "tmpfs"], tmp_path / "disk")
    for name in OUTPUT_FILES:
        (disk / name).write_text("old\n")
    df = pd.DataFrame({"job_id": [f"j{i}" for i in range(20_000)], "value": range(20_000)})  # ~250 kB of CSV
    with pytest.raises(OutputError, match="no space left"):
        write_outputs(df, df.head(3), disk)
    assert all((disk / name).read_text() == "old\n" for name in OUTPUT_FILES)
    assert leftovers(disk) == []
    write_outputs(df.head(3), df.head(2), disk)
    assert len(pd.read_csv(disk / "results.csv")) == 3 and "## How to read this" in (disk / "report.md").read_text()


# -- the writer --------------------------------------------------------------------------------------------------


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("old\n")
    os.chmod(target, 0o640)

    def half(tmp: Path) -> None:
        tmp.write_text("half a fi")
        raise OSError(28, "No space left on device")

    with pytest.raises(OutputError, match="no space left"):
        write_atomic(target, half)
    assert target.read_text() == "old\n" and leftovers(tmp_path) == []
    write_frame(pd.DataFrame({"a": [1]}), target)
    assert target.read_text() == "a\n1\n" and (os.stat(target).st_mode & 0o777) == 0o640  # its mode is kept


def test_a_symlink_keeps_pointing_at_the_new_file(tmp_path: Path) -> None:
    real = tmp_path / "real.csv"
    real.write_text("old\n")
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    write_frame(pd.DataFrame({"a": [2]}), link)
    assert link.is_symlink() and real.read_text() == "a\n2\n"


def test_every_format_and_no_suffix(tmp_path: Path) -> None:
    df = pd.DataFrame({"a": [1, 2], "b": ["x", None]})
    for name in ("t.csv", "t.json", "t.md", "t"):
        write_frame(df, tmp_path / name)
    assert pd.read_csv(tmp_path / "t.csv").shape == (2, 2) and pd.read_csv(tmp_path / "t").shape == (2, 2)
    assert pd.read_json(tmp_path / "t.json").shape == (2, 2)
    assert (tmp_path / "t.md").read_text().startswith("|")
    assert leftovers(tmp_path) == []


def test_the_output_module_is_light() -> None:
    code = "import sys, farm.reports.files; assert 'pandas' not in sys.modules, 'pandas imported'"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, env=dict(os.environ)
    )
    assert out.returncode == 0, out.stderr
