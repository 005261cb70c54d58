"""The README's by-hand section, run as a new user runs it: its bash block pasted into bash, verbatim, in the
repository. Every command must succeed and say what the README says it does; nothing it started is left
running. The environment is the suite's for a busy machine (no wait for a quiet host, tiny steady windows
allowed: farm_env), with no broker configured: the block sets its own."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.helpers import REPO, farm_env, processes_naming

pytestmark = pytest.mark.slow  # a Redis, a worker and two small sweeps, started by the README's own commands


def by_hand_block() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## By hand, on one machine", 1)[1]
    match = re.search(r"```bash\n(.*?)```", section, flags=re.S)
    assert match, "the by-hand section has no bash block"
    return match.group(1)


def test_the_block_is_what_the_section_promises() -> None:
    block = by_hand_block()
    for step in ("farm worker", "farm workers --wait-for", "farm submit", "farm status --watch", "farm report"):
        assert step in block, step
    for step in ("farm compare", "farm history", "--skip-unserved", "kill %2"):
        assert step in block, step
    assert "6379" not in block  # never the shared default server


def test_following_the_by_hand_section_verbatim_works(tmp_path: Path) -> None:
    block = by_hand_block()
    env = farm_env("", tmp_path / "cache")
    env.pop("FARM_BROKER_URL", None)
    with tempfile.TemporaryDirectory(prefix="bh-") as tmp:  # mktemp -d's directory: short, the socket lives in it
        env["TMPDIR"] = tmp
        script = "set -euo pipefail\n" + block
        proc = subprocess.Popen(
            ["/bin/bash", "-c", script],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            out, _ = proc.communicate(timeout=900)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        assert proc.returncode == 0, out
        assert "1 live worker(s)" in out, out
        assert re.search(r"submitted by-hand-\w+: 5 jobs enqueued, 5 left out", out), out
        assert re.search(r"left out: 5 job\(s\) on farm\.gpu\S*: no live GPU worker", out), out
        first, second = re.findall(r"submitted (by-hand-[\w-]+):", out)
        assert second.startswith("by-hand-2-"), out
        assert f"{first} (A) → {second} (B)" in out and "ratio = B/A median" in out, out  # the names, resolved
        assert re.search(r"1 cell\(s\) over 2 sweep\(s\)", out), out  # the history's closing line
        assert "error" not in out.lower() and "Traceback" not in out, out
        gone = [p for p in processes_naming(tmp) if "redis-server" in p or "workers" in p]
        assert not gone, gone
