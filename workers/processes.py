"""Small facts about the processes a worker starts: they die with it, they are killed as a group, and their
exit status is told in words. Shared by the device probe, the supervisor and the fork server."""

from __future__ import annotations

import contextlib
import os
import signal
from typing import Protocol


class _HasPid(Protocol):
    pid: int


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when the *thread* that started it ends (PR_SET_PDEATHSIG): a
    killed worker leaves no training behind. Spawn from threads that live as long as the process they start."""
    import ctypes

    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def kill_group(proc: _HasPid) -> None:
    """SIGKILL the process and everything in its process group (it was started in a session of its own)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):  # not a group leader (yet): the process alone
            os.kill(proc.pid, signal.SIGKILL)


def describe_exit(returncode: int) -> str:
    """'killed by SIGKILL' or 'exit code 3'."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"
