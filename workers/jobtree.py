"""Every process a job started dies with the job, including the ones that left its process group.

A job's process is in a session of its own, so killing its process group kills what it started there. A
descendant that called ``setsid`` (or was double-forked, its parent gone) is outside that group, and would
outlive the job: on its device, in its memory, in the next job's measurements. Three things catch those:

- the job's process is a child subreaper (``PR_SET_CHILD_SUBREAPER``): an orphaned descendant is adopted by it
  instead of by init, so while it lives, every process the job started is in its tree, and it kills that tree
  before it exits;
- the supervisor notes the tree while the job runs and, at the end of the job (however it ended), kills
  whatever of it is still there, checking each process's start time so a reused pid is never killed;
- every program the job runs carries the job's token in its environment (``MARK_ENV``): at the job's end the
  supervisor kills whatever carries it, wherever it went;
- the fork server is a subreaper too: a descendant orphaned by a job's process that died abruptly is adopted
  by it, and it kills every child of its own that is not a job's process.
"""

from __future__ import annotations

import contextlib
import os
import signal

import psutil

PR_SET_CHILD_SUBREAPER = 36

MARK_ENV = "FARM_JOB_MARK"
"""A value unique to one job's process, in its environment and so in that of every program it runs: what the
supervisor looks for, at the job's end, in processes that left the job's tree before it could note them."""


def become_subreaper() -> bool:
    """Adopt this process's orphaned descendants (Linux 3.4+); False where the kernel refused."""
    import ctypes

    try:
        return ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def descendants(pid: int) -> dict[int, float]:
    """The processes below ``pid``, by pid, with their start times (empty when it is gone)."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return {}
    found = {}
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            found[child.pid] = child.create_time()
    return found


def marked(token: str) -> dict[int, float]:
    """The processes whose environment (as they were started) holds ``MARK_ENV=token``, with start times."""
    if not token:
        return {}
    needle = f"{MARK_ENV}={token}\0".encode()
    found = {}
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if needle in f.read():
                    found[int(name)] = psutil.Process(int(name)).create_time()
        except (OSError, psutil.Error):
            continue
    return found


def kill_all(processes: dict[int, float]) -> int:
    """SIGKILL each process that is still the one noted (same pid and start time); how many were killed."""
    killed = 0
    for pid, started in processes.items():
        try:
            proc = psutil.Process(pid)
            if proc.create_time() != started or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            proc.send_signal(signal.SIGKILL)
            killed += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return killed


def kill_own_descendants() -> int:
    """Kill every process this one started (and, as a subreaper, adopted): called by a job's process before
    it exits. Twice, in case one of them forked while the first pass ran."""
    return kill_all(descendants(os.getpid())) + kill_all(descendants(os.getpid()))


def kill_adopted(own_children: set[int]) -> None:
    """Kill this process's children that are not in ``own_children``: orphans adopted by a subreaper."""
    try:
        children = psutil.Process().children()
    except psutil.Error:
        return
    strays = {}
    for child in children:
        if child.pid not in own_children:
            with contextlib.suppress(psutil.Error):
                strays[child.pid] = child.create_time()
    for pid, started in strays.items():
        kill_all({pid: started, **descendants(pid)})
