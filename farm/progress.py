"""A sweep's progress as ``farm status`` shows it: each job's state and epoch, counts, and jobs nobody can run.

A queued job whose queue no live worker consumes with its Keras backend is called out plainly (e.g. GPU jobs on a
farm that has only CPU workers right now, JAX jobs on one whose workers offer TensorFlow only): they wait for such a
worker to come.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

from farm.ledger import Ledger
from farm.queue import job_queue
from farm.result import JobStatus
from farm.rows import NOT_ENQUEUED
from farm.store import Store
from farm.submit import offered

TERMINAL_STATES = frozenset(s.value for s in JobStatus if s.terminal)

PROGRESS_LINE_S = 5.0
"""Off a terminal, how often a watching command prints a progress line (a terminal gets a live view instead)."""


@dataclass
class JobProgress:
    job_id: str
    workload: str
    device: str
    backend: str
    repeat: int
    queue: str
    state: str
    worker: str = ""
    epoch: int = 0
    epochs: int = 0
    loss: float | None = None
    accuracy: float | None = None
    heartbeat_age_s: float | None = None
    error: str = ""
    note: str = ""
    """What a running job is doing that the epoch does not say: "waiting for a quiet host (others 45% CPU)"."""


@dataclass
class SweepProgress:
    sweep_id: str
    name: str
    jobs: list[JobProgress]
    counts: dict[str, int] = field(default_factory=dict)
    unserved_queues: dict[str, int] = field(default_factory=dict)
    live_workers: int = 0
    quarantined: dict[str, str] = field(default_factory=dict)
    rejected_messages: int = 0
    """How many messages workers have refused in all (farm-wide, not only this sweep's queues)."""
    latest_rejection: dict[str, Any] | None = None
    """The newest refusal kept in the store: at, worker, queue, reason, size, raw (an excerpt)."""
    submitted_at: float | None = None
    """When the sweep was first submitted (epoch seconds, from its manifest, on the Redis server's clock)."""
    read_at: float | None = None
    """When this was read, on the Redis server's clock (what ``submitted_at`` and heartbeats are aged against)."""
    interrupted: bool = False
    """A submit of the sweep began and none has claimed all its jobs since: the jobs never sent are waiting for
    the same submit to be run again (or for the one still running), not left out for want of a device."""

    @property
    def total(self) -> int:
        return len(self.jobs)

    @property
    def not_enqueued(self) -> int:
        """Jobs never sent to a queue: ``farm run`` skips those for devices its machine lacks."""
        return self.counts.get(NOT_ENQUEUED, 0)

    @property
    def runnable(self) -> int:
        """The jobs a progress bar counts: every job that was sent to a queue (skipped ones are not)."""
        return self.total - self.not_enqueued

    def eta_s(self, elapsed_s: float) -> float | None:
        """Seconds until the runnable jobs have all finished, at the pace of those finished in ``elapsed_s``;
        None before the first has finished (no pace to go by), 0 when none is left."""
        left = self.runnable - self.finished
        if left <= 0:
            return 0.0
        if self.finished <= 0 or elapsed_s <= 0:
            return None
        return elapsed_s / self.finished * left

    @property
    def finished(self) -> int:
        return sum(n for s, n in self.counts.items() if s in TERMINAL_STATES)

    @property
    def done(self) -> bool:
        return self.finished == self.total

    def settled(self) -> bool:
        """Nothing can move any more right now: every job ended or waits for a worker that does not exist."""
        waiting = sum(self.unserved_queues.values()) + self.counts.get(NOT_ENQUEUED, 0)
        return self.finished + waiting == self.total

    def to_json(self) -> dict[str, Any]:
        return {
            "sweep_id": self.sweep_id,
            "name": self.name,
            "total": self.total,
            "finished": self.finished,
            "runnable": self.runnable,
            "submitted_at": self.submitted_at,
            "interrupted": self.interrupted,
            "counts": self.counts,
            "unserved_queues": self.unserved_queues,
            "live_workers": self.live_workers,
            "quarantined_workers": self.quarantined,
            "rejected_messages": self.rejected_messages,
            "latest_rejection": self.latest_rejection,
            "jobs": [j.__dict__ for j in self.jobs],
        }


def _num(v: str | None) -> float | None:
    try:
        return float(v) if v not in (None, "") else None
    except ValueError:
        return None


def sweep_progress(store: Store, sweep_id: str) -> SweepProgress:
    manifest = store.sweep_manifest(sweep_id) or {}
    ids = store.sweep_job_ids(sweep_id)
    envelopes = store.envelopes(ids)
    states = store.states(ids)
    results_present = store.have_results(ids)
    workers = store.live_workers()
    # Served means consumed by a worker that offers the job's backend (its queue names it: farm.cpu.be-jax).
    served = {(q, b) for w in workers if not w.get("quarantined") for q in w.get("queues", []) for b in offered(w)}
    now = store.now()  # heartbeats are stamped on the server's clock: so is the age they are read at
    jobs: list[JobProgress] = []
    for job_id, env, st, has_result in zip(ids, envelopes, states, results_present, strict=True):
        if env is None:
            continue
        job = env.job
        state = st.get("state") or NOT_ENQUEUED
        if has_result and state not in TERMINAL_STATES:
            state = JobStatus.succeeded.value  # the result is the record; a state hash can lag behind it
        hb = _num(st.get("heartbeat_at"))
        jobs.append(
            JobProgress(
                job_id=job_id,
                workload=job.workload,
                device=job.device,
                backend=job.backend,
                repeat=job.repeat,
                queue=st.get("queue") or job_queue(job, store.p),
                state=state,
                worker=st.get("worker", ""),
                epoch=int(_num(st.get("epoch")) or 0),
                epochs=int(_num(st.get("epochs")) or job.epochs),
                loss=_num(st.get("loss")),
                accuracy=_num(st.get("accuracy")),
                heartbeat_age_s=(now - hb) if hb else None,
                error=(st.get("error") or "").splitlines()[0][:200] if st.get("error") else "",
                note=(st.get("note") or "")[:200] if state == JobStatus.running.value else "",
            )
        )
    counts = dict(collections.Counter(j.state for j in jobs))
    waiting = (JobStatus.queued.value, JobStatus.lost.value)
    unserved = collections.Counter(j.queue for j in jobs if j.state in waiting and (j.queue, j.backend) not in served)
    return SweepProgress(
        sweep_id=sweep_id,
        name=manifest.get("name", ""),
        jobs=jobs,
        counts=counts,
        unserved_queues=dict(unserved),
        live_workers=len(workers),
        quarantined={w["name"]: w["quarantined"] for w in workers if w.get("quarantined")},
        submitted_at=_num(str(manifest.get("submitted_at", ""))),
        read_at=now,
        interrupted=bool(counts.get(NOT_ENQUEUED)) and Ledger(store).submit_unfinished(sweep_id),
        **rejections(store),
    )


def rejections(store: Store) -> dict[str, Any]:
    """The total of refused messages and the newest one kept."""
    total, latest = store.rejections()
    return {"rejected_messages": total, "latest_rejection": latest}
