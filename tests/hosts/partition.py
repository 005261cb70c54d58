"""The partition scenario, shared by tests/hosts/test_partitions.py and tests/hosts/partition_timings.py.

Two CPU worker hosts with short leases; one long job. Once it trains, the host running it is cut off (its link
down on the switch side) and stays cut off past its lease; the job must then run on the other host. When the
link comes back, the cut-off worker must learn that it lost the lease (its renewal is refused: the job's
generation moved on), stop its training process, and record nothing. The scenario measures two intervals,
both on this machine's clock (the hosts share it):

- ``cut_to_elsewhere_s``: from the cut to the job's run starting on the other host (its ``started_at``);
- ``heal_to_stopped_s``: from the heal to the cut-off run being over: its training process gone and its end
  logged in the job's run log (``ended: lease_lost``), whichever comes last.

It also says whether the cut-off run's training process was still alive when the job started elsewhere and
at the heal: that depends on the lease settings (:data:`REGIMES`), and is the one window in which two
training processes of one job exist at once (only one of them can ever be recorded).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from farm.ledger import Lease, Ledger
from farm.result import JobResult, JobStatus
from farm.store import Store
from tests.faults.helpers import Farm
from tests.helpers import wait_for, write_sweep
from tests.hosts.lab import FAST, Lab

HOSTS = ("lab-w1", "lab-w2")
"""The two worker hosts of the scenario (the lab must have them)."""

REGIMES: dict[str, dict[str, str]] = {
    # The farm's defaults scaled down (30 s lease, 5 s heartbeat, 5 s Redis timeout). The cut-off worker goes on
    # pinging its child until its last renewal is a lease old (15 s), and the child stops itself a keep-alive
    # timeout (the lease less a heartbeat: 14 s) later, about 29 s after the cut; the heal comes sooner (the job
    # runs elsewhere after about 16 s), so the cut-off run is stopped by its worker once a renewal is refused.
    "defaults-scaled": {
        "FARM_LEASE_TTL_S": "15",
        "FARM_HEARTBEAT_S": "1",
        "FARM_REAP_INTERVAL_S": "1",
        "FARM_REDIS_TIMEOUT_S": "2",
    },
    # tests/faults' FAST leases (4 s, a heartbeat a second) with the default 5 s Redis timeout: the pings stop
    # 4 s after the last renewal and the child 3 s later, about 7 s after the cut. The heal (a second after the
    # job runs elsewhere, about 5 s after the cut) and the child's own stop race: either ends the run.
    "fast": {**FAST, "FARM_REDIS_TIMEOUT_S": "5"},
}
"""Lease settings the scenario runs under; both keep the ledger right, they differ in when the cut-off run's
training process stops."""


def gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for its parent counts: it no longer runs)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@dataclass
class PartitionRun:
    """What one run of the scenario saw."""

    regime: str
    sweep_id: str
    job_id: str
    victim: str  # the host cut off
    rightful: str  # the host that ran the job in the end
    cut_to_elsewhere_s: float
    heal_to_stopped_s: float
    stale_alive_at_takeover: bool  # the cut-off run still trained when the job started elsewhere
    stale_alive_at_heal: bool
    cut_for_s: float
    late_result_refused: bool  # a result written with the cut-off run's generation, after the takeover
    ledger: dict[str, int] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)

    def timings(self) -> dict[str, Any]:
        """The figures worth keeping (the ledger, result and run log are for the checks)."""
        return {k: v for k, v in asdict(self).items() if k not in ("ledger", "result", "runs", "sweep_id")}


def run_partition(
    lab: Lab, workdir: Path, *, regime: str = "defaults-scaled", epochs: int = 300, settle_s: float = 1.0
) -> PartitionRun:
    """One run of the scenario on a reset lab under the lease settings of ``regime`` (see :data:`REGIMES`);
    returns what it saw. ``settle_s``: how long the link stays down after the job started elsewhere."""
    lab.reset()
    assert lab.redis is not None
    workers = {f"cpu@{h}": h for h in HOSTS}
    procs = {h: lab.start_worker(h, **REGIMES[regime]) for h in HOSTS}
    lab.wait_registered(list(workers), procs=list(procs.values()))
    farm = Farm(lab.redis.local_url, workdir)
    name = f"partition-{int(time.time() * 1000)}"
    sid = lab.farm_json("submit", "submit", str(write_sweep(workdir, name, jobs=1, epochs=epochs)))["sweep_id"]
    job = farm.jobs(sid)[0]

    def training(min_epoch: int) -> bool:
        st = farm.state(job)
        return st.get("state") == "running" and int(st.get("epoch") or 0) >= min_epoch and bool(st.get("child_pid"))

    wait_for(lambda: training(2), 180, f"job {job} to train", interval=0.1)
    state = farm.state(job)
    victim, child = workers[state["worker"]], int(state["child_pid"])
    rightful = next(h for h in HOSTS if h != victim)

    t_cut = lab.cut(victim)
    try:

        def elsewhere() -> bool:
            st = farm.state(job)
            return st.get("worker") == f"cpu@{rightful}" and st.get("state") == "running"

        wait_for(elsewhere, 120, "the job to run on the other host", interval=0.05)
        seen = time.time()
        started = float(farm.state(job).get("started_at") or seen)
        alive_at_takeover = not gone(child)
        refused = late_result_refused(farm, job, f"cpu@{victim}")
        time.sleep(settle_s)
    finally:
        t_heal = lab.heal(victim)
    alive_at_heal = not gone(child)

    def stale_end() -> dict[str, Any] | None:
        ends = [r for r in farm.runs(job) if r["event"] == "end" and r["worker"] == f"cpu@{victim}"]
        return next((r for r in ends if r.get("ended") == "lease_lost"), None)

    child_gone_at: list[float] = []

    def stopped() -> bool:
        if not child_gone_at and gone(child):
            child_gone_at.append(time.time())
        return bool(child_gone_at) and stale_end() is not None

    wait_for(stopped, 120, "the cut-off run to stop", interval=0.05)
    end = stale_end()
    assert end is not None
    stopped_at = max(child_gone_at[0], float(end["at"]))
    farm.wait_all_recorded(sid, 300)
    return PartitionRun(
        regime=regime,
        sweep_id=sid,
        job_id=job,
        victim=victim,
        rightful=rightful,
        cut_to_elsewhere_s=round(started - t_cut, 3),
        heal_to_stopped_s=round(max(0.0, stopped_at - t_heal), 3),
        stale_alive_at_takeover=alive_at_takeover,
        stale_alive_at_heal=alive_at_heal,
        cut_for_s=round(t_heal - t_cut, 3),
        late_result_refused=refused,
        ledger=farm.check_ledger(sid),
        result=farm.result(job) or {},
        runs=farm.runs(job),
    )


def late_result_refused(farm: Farm, job_id: str, worker: str) -> bool:
    """Write a result for the job as the cut-off worker would once it reached Redis again: through the ledger,
    with its run's lease generation (the first run's, from the run log). True when the write was refused and
    the job still has no result (the rightful run has not finished yet: the fencing token refused it, not the
    result's write-once rule)."""
    first = next(r for r in farm.runs(job_id) if r["event"] == "start" and r["worker"] == worker)
    store = Store(farm.r)
    envelope = store.envelope(job_id)
    assert envelope is not None and farm.result(job_id) is None
    late = JobResult(
        job_id=job_id,
        sweep_id=envelope.sweep_id,
        job=envelope.job,
        status=JobStatus.succeeded,
        worker=worker,
        error="a late result of a run that lost its lease (written by the test)",
    )
    written = Ledger(store).record(Lease(job_id, worker, int(first["generation"])), late)
    return not written and farm.result(job_id) is None


def write_timings(path: Path, runs: list[PartitionRun]) -> None:
    """The measured intervals, as JSON (no assertion is made on them: they depend on the machine's load)."""
    path.write_text(json.dumps([r.timings() for r in runs], indent=2) + "\n")
