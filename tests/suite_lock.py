"""The suite runs its tests side by side (pytest-xdist, ``-n`` in pyproject's addopts); a test marked ``alone``
runs while none of the suite's other tests does.

Most tests wait on something — a lease to expire, a worker to start, a training process to finish — so running
four at once on two cores more than halves the suite's time. A few tests judge the machine itself (a quiet job
must not be marked contended; a hog's share must show), and the suite's own neighbours would be the noise they
judge. Every test holds a shared lock on one file for its whole run (setup, call, teardown: module fixtures
built for it included); an ``alone`` test takes the lock exclusively, so it starts once the tests running beside
it end, and none starts until it is done. A waiting ``alone`` test raises a flag first, so that a stream of new
tests cannot keep it waiting (flock itself does not prefer writers).

This is about the suite's own load only: a machine other users share stays as busy as it is, and those tests
allow for it (see tests/workers/test_contended_jobs.py). Without xdist, or with ``-n 0``, there is nothing to
coordinate and the lock is not taken.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

RUN_ENV = "PYTEST_XDIST_TESTRUNUID"
"""Set by xdist in every worker of one run, the same in all of them."""


def _paths(run: str) -> tuple[Path, Path]:
    """The lock file, and the folder where each waiting ``alone`` test leaves a flag of its own."""
    base = Path(tempfile.gettempdir()) / f"benchfarm-suite-{run}"
    waiting = base / "alone-waiting"
    waiting.mkdir(parents=True, exist_ok=True)
    return base / "lock", waiting


@contextmanager
def suite_share(alone: bool) -> Iterator[None]:
    """Hold the suite's lock for one test: shared, or exclusive for an ``alone`` test."""
    run = os.environ.get(RUN_ENV)
    if not run:
        yield
        return
    lock_path, waiting = _paths(run)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        flag = waiting / str(os.getpid())
        if alone:
            flag.touch()
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            while any(waiting.iterdir()):  # an alone test is waiting: let it go first
                time.sleep(0.2)
            fcntl.flock(fd, fcntl.LOCK_SH)
        try:
            yield
        finally:
            if alone:
                flag.unlink(missing_ok=True)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
