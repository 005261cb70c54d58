"""The worker's result spool: a trained result is kept on its disk until Redis holds it.

A Redis that is full, read-only or away for longer than the retries last, or a worker killed while it retried,
then loses no trained result: a later start (or the worker's housekeeping) records what the spool holds.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from farm.result import JobResult

log = logging.getLogger("farm.worker")


class Spool:
    """Trained results not yet in Redis: one JSON file per job under the worker's cache directory, written
    before the first try to record and removed once Redis holds the job's result."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def path(self, job_id: str) -> Path:
        return self.dir / f"{job_id}.json"

    def put(self, result: JobResult) -> Path:
        """Write the result (atomically: a file either holds a whole result or is not there); returns its path.
        A disk that refuses is logged: recording to Redis goes on as before."""
        target = self.path(result.job_id)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".tmp")
            tmp.write_text(result.model_dump_json())
            os.replace(tmp, target)
        except OSError as e:
            log.warning("could not spool the result of job %s to %s: %s", result.job_id, target, e)
        return target

    def drop(self, job_id: str) -> None:
        try:
            self.path(job_id).unlink(missing_ok=True)
        except OSError as e:
            log.warning("could not remove %s from the spool: %s", job_id, e)

    def results(self) -> list[JobResult]:
        """The spooled results (an unreadable file is logged and left for the operator)."""
        out = []
        for path in sorted(self.dir.glob("*.json")) if self.dir.is_dir() else []:
            try:
                out.append(JobResult.model_validate_json(path.read_bytes()))
            except (OSError, ValueError) as e:
                log.error("spooled result %s cannot be read (%s): left there", path, e)
        return out
