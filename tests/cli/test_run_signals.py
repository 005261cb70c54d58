"""``farm run`` stopped by a signal leaves nothing running: no embedded redis-server, no local worker, no job.

A real ``farm run`` in a session of its own, signalled as a terminal's Ctrl-C signals it (its whole process group)
at several moments: while Redis and the workers start, and while a job runs; once (the workers finish their job)
or twice (they stop at once); and by SIGTERM and SIGHUP. Afterwards no process whose command line or environment
names the run's output directory survives, and the exit code is 128 + the first signal's number.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cli.run import Stopper
from tests.helpers import REPO, farm_env, processes_naming, wait_for, write_sweep

pytestmark = pytest.mark.slow  # real `farm run`s: embedded Redis, a worker, Keras


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """An output directory with a short path: the embedded Redis' unix socket lives in it."""
    with tempfile.TemporaryDirectory(prefix="farm-sig-") as d:
        yield Path(d)


class Run:
    """A real ``farm run`` in a session of its own, its output in files (a pipe could fill and block it)."""

    def __init__(self, directory: Path, sweep: Path) -> None:
        self.out = directory / "out"
        env = farm_env("", directory / "cache")
        env.pop("FARM_BROKER_URL", None)  # the embedded Redis
        self.stdout, self.stderr = directory / "stdout", directory / "stderr"
        with open(self.stdout, "wb") as so, open(self.stderr, "wb") as se:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "run", str(sweep), "-o", str(self.out)],
                env=env,
                cwd=REPO,
                stdout=so,
                stderr=se,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def text(self) -> str:
        return self.stdout.read_text(errors="replace") + self.stderr.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        """As a terminal signals its foreground job: the whole process group."""
        os.killpg(self.proc.pid, sig)

    def worker_log(self) -> str:
        logs = self.out / "logs"
        return "".join(p.read_text(errors="replace") for p in logs.glob("*.log")) if logs.is_dir() else ""

    def wait(self, timeout: float = 300) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise

    def cleanup(self) -> None:
        """Whatever a failed test left: killed by process group, as recorded."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def redis_started(run: Run) -> bool:
    return (run.out / "redis" / "redis.sock").exists()


def job_running(run: Run) -> bool:
    return "received" in run.worker_log() or run.proc.poll() is not None


MOMENTS: dict[str, Callable[[Run], bool]] = {"while starting": redis_started, "while a job runs": job_running}


@pytest.mark.parametrize(
    ("moment", "signals"),
    [
        ("while starting", [signal.SIGINT, signal.SIGINT]),
        ("while a job runs", [signal.SIGINT]),
        ("while a job runs", [signal.SIGINT, signal.SIGINT]),
        ("while a job runs", [signal.SIGTERM]),
        ("while a job runs", [signal.SIGHUP, signal.SIGHUP]),
    ],
    ids=["starting-int-int", "job-int", "job-int-int", "job-term", "job-hup-hup"],
)
def test_a_signalled_run_leaves_no_process_behind(short_dir: Path, moment: str, signals: list[signal.Signals]) -> None:
    sweep = write_sweep(short_dir, "sig", jobs=3, epochs=30)
    run = Run(short_dir, sweep)
    try:
        wait_for(lambda: MOMENTS[moment](run), 240, f"farm run {moment}")
        assert run.proc.poll() is None, run.text()  # still running: the signal below is what stops it
        for i, sig in enumerate(signals):
            if i:
                time.sleep(0.5)
            run.signal(sig)
        code = run.wait()
    finally:
        run.cleanup()
    text = run.text()
    assert code == 128 + signals[0], text
    assert "Traceback" not in text, text
    if signals[0] == signal.SIGINT:
        assert Stopper.FIRST in text, text
        if len(signals) > 1 and moment == "while a job runs":  # starting, the first may have ended it already
            assert Stopper.SECOND in text, text
    assert "the same command resumes it" in text, text
    wait_for(lambda: not processes_naming(str(run.out)), 30, "every process of the run to be gone")
    assert not processes_naming(str(run.out))


def test_an_exception_stops_the_farm_too(short_dir: Path) -> None:
    """A failure inside the run (here: the submit raising) stops the embedded Redis and the workers as well."""
    from farm.local import LocalFarm
    from farm.settings import FarmSettings

    farm = LocalFarm(short_dir / "out", FarmSettings(), embedded=True, cpu_workers=1)
    with pytest.raises(RuntimeError, match="boom"), farm:
        assert processes_naming(str(short_dir / "out"))
        raise RuntimeError("boom")
    assert not processes_naming(str(short_dir / "out"))


class _Finalized:
    """An object whose finalizer is running when the signal comes: Python swallows an exception raised there."""

    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        sum(range(10_000))  # the handler runs here, inside the finalizer


def test_a_stop_that_lands_in_a_finalizer_is_not_lost_and_prints_no_traceback(capfd: pytest.CaptureFixture) -> None:
    """CI saw the first Ctrl-C's exception raised inside redis-py's ``ConnectionPool.__del__``: Python printed
    'Exception ignored … Traceback' and dropped it. The stopper sends the signal again once the finalizer is over."""

    class Farm:
        stopping = False

        def hurry(self) -> None:
            raise AssertionError("one signal: never hurried")

    stopper = Stopper(Farm())  # type: ignore[arg-type]
    with pytest.raises(KeyboardInterrupt), stopper.installed():
        obj = _Finalized()
        del obj
        time.sleep(5)  # the signal sent again ends this
    err = capfd.readouterr().err
    assert "Traceback" not in err and err.count(Stopper.FIRST) == 1, err


def test_a_second_signal_after_the_farm_stopped_does_not_change_the_exit() -> None:
    """CI saw a fast stop (Ctrl-C while starting: no job to wait for) end before the second Ctrl-C came; that one
    landed while the interpreter finalized, which puts Python's handlers back to the default, and killed the
    process by SIGINT (exit -2, not 130). Once stopped by a signal, ``farm run`` ignores further stop signals (an
    ignored signal stays ignored through finalization); in a fresh interpreter, as ``farm run`` exits."""
    code = textwrap.dedent(
        """
        import os, signal, sys, time
        from cli.run import STOP_SIGNALS, Stopper

        class Farm:
            stopping = False
            def hurry(self):
                pass

        stopper = Stopper(Farm())
        try:
            with stopper.installed(held_once_stopped=True):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(5)
        except KeyboardInterrupt:
            pass
        assert all(signal.getsignal(s) == signal.SIG_IGN for s in STOP_SIGNALS)
        os.kill(os.getpid(), signal.SIGINT)  # the second, as the interpreter is about to finalize
        sys.exit(128 + stopper.signum)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
