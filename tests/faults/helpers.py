"""What the fault tests share that is not a fixture: short leases, small sweeps, and a reader of the farm's
record (through the CLI as a user reads it, and through the store's API, which names the keys)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import redis

from farm.store import Store
from tests.helpers import farm_env, run_farm, wait_for

# Short leases so a dead worker's job comes back within seconds in tests (defaults: 30 s lease, 5 s heartbeat).
FAST = {"FARM_LEASE_TTL_S": "4", "FARM_HEARTBEAT_S": "1", "FARM_REAP_INTERVAL_S": "1"}


class Farm:
    """Read the farm's record the way the CLI does, or through the store (``store``; ``r`` for what only a raw
    command shows): a check that something is absent then follows a renamed key rather than staying green."""

    def __init__(self, url: str, tmp_path: Path) -> None:
        self.url = url
        self.env = farm_env(url, tmp_path / "cache")
        self.r = redis.Redis.from_url(url, decode_responses=True)
        self.store = Store(self.r)

    def submit(self, sweep: Path) -> str:
        out = run_farm(["submit", str(sweep), "--json", "--allow-unserved"], self.env)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)["sweep_id"]

    def cli(self, *args: str) -> dict:
        out = run_farm([*args, "--json"], self.env)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def jobs(self, sid: str) -> list[str]:
        return self.store.sweep_job_ids(sid)

    def state(self, job_id: str) -> dict:
        return self.store.state(job_id)

    def result(self, job_id: str) -> dict | None:
        [raw] = self.store.raw_results([job_id])
        return json.loads(raw) if raw else None

    def runs(self, job_id: str) -> list[dict]:
        return self.store.runs(job_id)

    def statuses(self, sid: str) -> Counter:
        return Counter((self.result(j) or {}).get("status", "none") for j in self.jobs(sid))

    def wait_all_recorded(self, sid: str, timeout: float) -> None:
        wait_for(lambda: all(self.result(j) for j in self.jobs(sid)), timeout, f"every job of {sid} recorded")

    def check_ledger(self, sid: str) -> dict:
        """Every job accounted for, recorded once, never run by two workers at the same time."""
        counts = {"jobs": 0, "recorded": 0, "lost": 0, "recorded_twice": 0, "concurrent_runs": 0}
        for job_id in self.jobs(sid):
            counts["jobs"] += 1
            counts["recorded"] += int(self.result(job_id) is not None)
            runs = self.runs(job_id)
            ends = [r for r in runs if r["event"] == "end"]
            # A job whose record says succeeded was run to success exactly once.
            counts["recorded_twice"] += max(0, sum(r["ended"] == "succeeded" for r in ends) - 1)
            open_runs, worst = 0, 0
            for r in sorted(runs, key=lambda r: (r["at"], r["event"] == "start")):
                open_runs += 1 if r["event"] == "start" else -1
                worst = max(worst, open_runs)
            counts["concurrent_runs"] += int(worst > 1)
        counts["lost"] = counts["jobs"] - counts["recorded"]
        return counts


def wait_running(farm: Farm, job_id: str, min_epoch: int = 1, timeout: float = 120) -> dict:
    def ok() -> bool:
        st = farm.state(job_id)
        return st.get("state") == "running" and int(st.get("epoch") or 0) >= min_epoch

    wait_for(ok, timeout, f"job {job_id} to be running", interval=0.2)
    return farm.state(job_id)
