"""Jobs: their envelopes (written once), and their state hash (``P:state:JID``: state, queue, worker, attempt,
progress, heartbeat, error, when it was sent), which the store owns: the ledger changes it only inside its own
atomic steps (claim, requeue) and otherwise through the methods here."""

from __future__ import annotations

import time
from collections.abc import Mapping
from functools import cached_property
from typing import Any, cast

import redis
from redis.commands.core import Script
from redis.typing import EncodableT, FieldT

from farm.job import JobEnvelope
from farm.result import JobStatus
from farm.store.base import StoreBase, _chunks, _state_fields

# KEYS: a job's state hash, its generation   ARGV: generation, then field, value, ...
_FENCED_HSET = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""


class Jobs(StoreBase):
    """Envelopes and the state hash of each job."""

    def envelope(self, job_id: str) -> JobEnvelope | None:
        raw = self.r.get(self.k("job", job_id))
        return JobEnvelope.model_validate_json(raw) if raw else None

    def envelopes(self, job_ids: list[str]) -> list[JobEnvelope | None]:
        return [JobEnvelope.model_validate_json(r) if r else None for r in self._mget("job", job_ids, 5000)]

    def set_state(self, job_id: str, state: JobStatus, **fields: Any) -> None:
        self.r.hset(self.k("state", job_id), mapping=_state_fields(state, **fields))

    def update_progress(self, job_id: str, *, generation: int | None = None, **fields: Any) -> bool:
        """Write a running job's progress fields. With ``generation`` (the writer's lease, see ``farm.ledger``)
        the write happens only while that generation is the job's current one, checked atomically with it: a
        worker that was cut off or paused and took a while to hear it lost the job can no longer scribble its
        run's epochs and heartbeats over the state of the run that replaced it. Returns whether it was written."""
        mapping: dict[FieldT, EncodableT] = {
            **{k: ("" if v is None else v) for k, v in fields.items()},
            "updated_at": time.time(),
        }
        if generation is None:
            self.r.hset(self.k("state", job_id), mapping=mapping)
            return True
        pairs = [str(x) for item in mapping.items() for x in item]
        return bool(self._fenced_hset(keys=[self.k("state", job_id), self.k("gen", job_id)], args=[generation, *pairs]))

    def state(self, job_id: str) -> dict[str, str]:
        return cast("dict[str, str]", self.r.hgetall(self.k("state", job_id)))

    def states(self, job_ids: list[str]) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        for chunk in _chunks(job_ids, 2000):
            pipe = self.r.pipeline(transaction=False)
            for j in chunk:
                pipe.hgetall(self.k("state", j))
            out.extend(pipe.execute())
        return out

    def stamp_sent(self, pipe: redis.client.Pipeline, sent: Mapping[str, float]) -> None:
        """Queue on ``pipe`` (the ledger's, executed with its own writes) when each job's message went to the
        broker: ``sent_at`` in the job's state, the start of its dispatch latency."""
        for job_id, at in sent.items():
            pipe.hset(self.k("state", job_id), "sent_at", at)

    @cached_property
    def _fenced_hset(self) -> Script:
        return self.r.register_script(_FENCED_HSET)
