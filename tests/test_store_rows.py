"""Stored rows: reports read a compact row per result, and fall back to the full record when a row is missing
or of another layout."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import redis

from farm.embedded import EmbeddedRedis
from farm.job import JobEnvelope, JobSpec
from farm.progress import sweep_rows
from farm.report import results_frame
from farm.result import EpochRecord, JobResult, JobStatus
from farm.store import Store


def test_rows_fast_path_and_fallbacks() -> None:
    with tempfile.TemporaryDirectory(prefix="rows-") as d, EmbeddedRedis(Path(d) / "r", appendonly=False) as srv:
        store = Store(redis.Redis.from_url(srv.url, decode_responses=True))
        envs = [JobEnvelope.for_job(JobSpec(sweep="s", workload="cifar10_mlp", data="synthetic", epochs=3, repeat=i),
                                    "s-1") for i in range(3)]
        store.save_sweep("s-1", {"name": "s"}, envs)
        for env, per_s in zip(envs[:2], (100.0, 200.0)):
            store.record_result(JobResult(job_id=env.job_id, sweep_id="s-1", job=env.job, status=JobStatus.succeeded,
                                          train_samples_used=int(per_s), epochs=[EpochRecord(epoch=e, wall_s=1.0)
                                                                                 for e in (1, 2, 3)]))
        # A row of an older layout (a dict) is rebuilt from the full result.
        store.r.set(store.k("row", envs[1].job_id), json.dumps({"job_id": envs[1].job_id}))
        df = results_frame(sweep_rows(store, "s-1"))
        assert list(df.job_id) == [e.job_id for e in envs]
        assert list(df.status) == ["succeeded", "succeeded", "not_enqueued"]
        assert list(df.steady_samples_per_s[:2]) == [100.0, 200.0]
        assert (df.sweep_id == "s-1").all()
