"""The run log: one entry per run of a job (worker, attempt, start, end, how it ended), for ``farm status`` and
the fault tests."""

from __future__ import annotations

import json
from typing import Any

from farm.store.base import StoreBase


class RunLog(StoreBase):
    """One entry per run of a job."""

    def log_run(self, job_id: str, **fields: Any) -> None:
        self.r.rpush(self.k("runs", job_id), json.dumps(fields))

    def runs(self, job_id: str) -> list[dict[str, Any]]:
        return [json.loads(r) for r in self.r.lrange(self.k("runs", job_id), 0, -1)]
