"""After ``farm run`` has ended: what it printed is plain and complete, and every command it told the user to
run works — against the Redis it kept in its output directory (``--run-dir``), never a server that happens to
listen on the default port. Running the same ``farm run`` again says that it shows the recorded figures and
how to measure again. No process of the run outlives the commands.

One real ``farm run`` (embedded Redis, a worker, Keras) serves the module: the commands after it are cheap.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.helpers import farm_env, processes_naming, run_farm, wait_for

pytestmark = pytest.mark.slow  # a real `farm run`: embedded Redis, a worker, Keras

BOX = set("│┃━─┏┓┗┛┡┩╇┳┻┼└┘┌┐├┤╭╮╰╯")


@dataclass
class FinishedRun:
    sweep_file: Path
    out: Path
    env: dict[str, str]
    result: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def finished_run() -> Iterator[FinishedRun]:
    """A tiny sweep run by the real ``farm run`` with its embedded Redis (no broker configured), piped. The
    output directory has a short path: the kept Redis' unix socket lives in it."""
    spec = {
        "name": "piped-run",
        "defaults": {"backend": "jax", "data": "synthetic", "train_samples": 64, "test_samples": 16, "epochs": 2},
        "matrix": {"device": ["cpu", "gpu"]},
        "repeats": 2,
        "jobs": [{"workload": "fashion_mnist_mlp", "params": {"hidden_layers": 1, "units": 8}}],
    }
    with tempfile.TemporaryDirectory(prefix="after-") as d:
        path = Path(d) / "sweep.yaml"
        path.write_text(yaml.safe_dump(spec))
        env = farm_env("", Path(d) / "cache")
        env.pop("FARM_BROKER_URL", None)  # farm run's embedded Redis
        out = Path(d) / "out"
        result = run_farm(["run", str(path), "-o", str(out)], env, timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr
        yield FinishedRun(path, out, env, result)
        wait_for(lambda: not processes_naming(str(out)), 30, "every process of the run to be gone")


def test_piped_it_prints_progress_lines_then_the_report(finished_run: FinishedRun) -> None:
    text = finished_run.result.stdout
    assert "…" not in text and not BOX & set(text), text
    lines = text.splitlines()
    progress = [line for line in lines if re.match(r"piped-run-\w+: \d+/\d+ jobs done", line)]
    assert progress, text
    done, total = map(int, re.search(r"(\d+)/(\d+) jobs done", progress[-1]).groups())  # type: ignore[union-attr]
    assert done == total >= 1  # the bar reaches its end: jobs skipped for a missing GPU do not count
    if total == 2:
        assert "2 not sent" in progress[-1]
    assert "report:" not in progress[-1]
    assert any(line.startswith("report: one row per sweep cell") for line in lines), text  # on a line of its own
    md = (finished_run.out / "report.md").read_text()
    assert "chance level" in md and "| workload |" in md
    if not Path("/sys/class/powercap").exists():  # no energy counter here: the reason, never a zero
        assert "Energy per sample not measured: no RAPL package domain" in md, md
        assert "Energy per sample not measured" in text, text
    if total == 2:  # no GPU here: report.md says its GPU jobs did not run, and explains no GPU/CPU column
        assert "need a device or backend this machine lacks (gpu): not run here" in md, md
        assert "GPU/CPU" not in md and "latency" not in md, md


def printed_commands(text: str) -> list[list[str]]:
    """Every ``farm …`` command that the text puts in backticks, as arguments."""
    return [shlex.split(c)[1:] for c in re.findall(r"`(farm [^`]+)`", text)]


def test_every_command_it_printed_works_after_it_ended(finished_run: FinishedRun) -> None:
    """The run has stopped its Redis; each command it printed reopens it from the output directory."""
    assert not processes_naming(str(finished_run.out / "redis" / "redis.sock"))  # stopped, not left running
    commands = printed_commands(finished_run.result.stdout)
    commands += printed_commands((finished_run.out / "report.md").read_text())
    assert commands, finished_run.result.stdout
    sweep = re.search(r"sweep (piped-run-\w+)", finished_run.result.stdout).group(1)  # type: ignore[union-attr]
    assert ["report", sweep, "--run-dir", str(finished_run.out)] in commands
    for args in commands:
        assert "--run-dir" in args or args[:2] == ["run", str(finished_run.sweep_file)], args
        out = run_farm(args, finished_run.env)
        assert out.returncode == 0, (args, out.stdout, out.stderr)
        assert "error" not in out.stderr, (args, out.stderr)
    report = run_farm(["report", sweep, "--run-dir", str(finished_run.out)], finished_run.env)
    assert "fashion_mnist_mlp" in report.stdout


@pytest.mark.parametrize(
    "command",
    [["status"], ["results"], ["report"], ["workers"], ["history"], ["status", "--cells"]],
    ids=" ".join,
)
def test_reading_commands_reach_the_kept_redis(finished_run: FinishedRun, command: list[str]) -> None:
    out = run_farm([*command, "--run-dir", str(finished_run.out)], finished_run.env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert not processes_naming(str(finished_run.out / "redis" / "redis.sock"))  # each stops what it started


def test_a_broker_and_a_run_dir_together_are_a_usage_error(finished_run: FinishedRun) -> None:
    out = run_farm(
        ["status", "--broker", "redis://127.0.0.1:1/0", "--run-dir", str(finished_run.out)], finished_run.env
    )
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "give one of them" in out.stderr


def test_a_directory_that_holds_no_run_is_one_line_and_stays_untouched(finished_run: FinishedRun) -> None:
    empty = finished_run.out.parent / "not-a-run"
    empty.mkdir()
    out = run_farm(["report", "--run-dir", str(empty)], finished_run.env)
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1 and "holds no farm run's Redis" in out.stderr
    assert list(empty.iterdir()) == []


def test_running_it_again_says_the_figures_are_the_recorded_ones(finished_run: FinishedRun) -> None:
    again = run_farm(["run", str(finished_run.sweep_file), "-o", str(finished_run.out)], finished_run.env, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already queued or done" in again.stdout and "--name" in again.stdout


def test_a_run_whose_every_worker_stopped_taking_jobs_says_so_and_ends(tmp_path: Path) -> None:
    """A machine whose framework is broken (JAX does not import: the machine's fault, workers.blame): the local
    worker stops taking jobs after its failures in a row, and `farm run` says so in one line and exits 1, instead
    of waiting for a cool-down with nothing running; nothing of the run is left behind."""
    broken = tmp_path / "broken-site" / "jax"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('this machine has a broken JAX install')\n")
    spec = {
        "name": "broken",
        "defaults": {"backend": "jax", "data": "synthetic", "train_samples": 64, "test_samples": 16},
        "jobs": [{"workload": "fashion_mnist_mlp", "params": {"hidden_layers": 1, "units": u}} for u in (8, 9, 10)],
    }
    sweep = tmp_path / "broken.yaml"
    sweep.write_text(yaml.safe_dump(spec))
    with tempfile.TemporaryDirectory(prefix="stop-") as d:
        env = farm_env("", tmp_path / "cache", PYTHONPATH=str(broken.parent), FARM_QUARANTINE_AFTER="2")
        env.pop("FARM_BROKER_URL", None)
        out = run_farm(["run", str(sweep), "-o", str(Path(d) / "out")], env, timeout=300)
        assert out.returncode == 1, out.stdout + out.stderr
        assert "every local worker stopped taking jobs" in out.stderr and "framework's import" in out.stderr
        assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
        wait_for(lambda: not processes_naming(str(Path(d) / "out")), 30, "every process of the run to be gone")
