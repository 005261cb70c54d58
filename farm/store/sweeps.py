"""Sweeps: their manifests, job lists and order; and forgetting them (``farm forget``): a sweep's own keys and
every key of its jobs, guarded against a same-name submit saving meanwhile."""

from __future__ import annotations

import json
from functools import cached_property
from typing import Any, cast

from redis.commands.core import Script

from farm.job import JobEnvelope, sweep_name
from farm.store.base import StoreBase, _chunks

#: A job's own keys, deleted together by ``farm forget`` (:meth:`Store.delete_jobs`).
FORGET_KINDS = ("state", "result", "row", "history", "runs", "attempts", "failures", "cancel", "job")


class Sweeps(StoreBase):
    """Sweep manifests and job lists, and ``farm forget``'s deletions."""

    def save_sweep(self, sweep_id: str, manifest: dict[str, Any], envelopes: list[JobEnvelope]) -> None:
        """Record a sweep and its jobs; idempotent (a re-submitted sweep keeps its first manifest)."""
        pipe = self.r.pipeline()
        pipe.set(self.k("sweep", sweep_id), json.dumps(manifest), nx=True)
        pipe.zadd(self.k("sweeps"), {sweep_id: self.now()}, nx=True)  # the order of sweeps of every submitter
        for env in envelopes:
            pipe.set(self.k("job", env.job_id), env.model_dump_json(), nx=True)
        pipe.execute()
        jobs_key = self.k("sweep", sweep_id, "jobs")
        if not self.r.exists(jobs_key):
            ids = [e.job_id for e in envelopes]
            for i in range(0, len(ids), 10_000):
                self.r.rpush(jobs_key, *ids[i : i + 10_000])
        # After the list, before any claim: a `farm forget` of a sweep of the same name deletes nothing from here
        # on without first reading this list (see delete_jobs), and what it deleted before, submit restores.
        self.r.incr(self.k("named", sweep_name(sweep_id)))

    def add_jobs(self, sweep_id: str, envelopes: list[JobEnvelope]) -> list[str]:
        """Add jobs to a stored sweep (the repeats a precision target asks for: farm.precision), each once: its
        envelope is stored and its id appended to the sweep's job list in one atomic step, so that two workers
        adding the same repeat at once add it once, and a crash never leaves a job stored but outside its sweep.
        Returns the ids added here."""
        if not envelopes:
            return []
        keys = [self.k("sweep", sweep_id, "jobs"), *(self.k("job", e.job_id) for e in envelopes)]
        args = [v for e in envelopes for v in (e.job_id, e.model_dump_json())]
        return cast("list[str]", self._add_jobs(keys=keys, args=args))

    def sweep_manifest(self, sweep_id: str) -> dict[str, Any] | None:
        raw = self.r.get(self.k("sweep", sweep_id))
        return json.loads(raw) if raw else None

    def sweep_job_ids(self, sweep_id: str) -> list[str]:
        return cast("list[str]", self.r.lrange(self.k("sweep", sweep_id, "jobs"), 0, -1))

    def sweep_ids(self) -> list[str]:
        return cast("list[str]", self.r.zrange(self.k("sweeps"), 0, -1))

    def resolve_sweep(self, prefix: str) -> str | None:
        """A sweep id from itself, from the sweep's name (its latest submission), or from a prefix of it (the
        latest sweep it starts). A name wins over a prefix: ``by-hand`` is the sweep named so, not the later
        ``by-hand-2`` whose id it also begins."""
        ids = self.sweep_ids()
        if prefix in ids:
            return prefix
        named = [s for s in ids if s.rsplit("-", 1)[0] == prefix]  # an id is NAME-<8 hex digits of a hash>
        if named:
            return named[-1]
        matches = [s for s in ids if s.startswith(prefix)]
        return matches[-1] if matches else None

    def knows_jobs(self, job_ids: list[str]) -> list[bool]:
        """Whether each job's envelope is stored (a job of a sweep that ``farm forget`` deleted is not), in
        order (pipelined)."""
        return self._exist("job", job_ids)

    def restore_envelopes(self, envelopes: list[JobEnvelope]) -> int:
        """Store again the envelopes of these jobs that are missing (a `farm forget` of a sweep of the same name
        deleted them while this sweep was being saved); how many were missing."""
        known = self.knows_jobs([e.job_id for e in envelopes])
        missing = [e for e, k in zip(envelopes, known, strict=True) if not k]
        if missing:
            pipe = self.r.pipeline(transaction=False)
            for env in missing:
                pipe.set(self.k("job", env.job_id), env.model_dump_json(), nx=True)
            pipe.execute()
        return len(missing)

    def sweeps_named(self, name: str) -> int:
        """How many times a sweep named ``name`` was saved: :meth:`delete_jobs` deletes only while the count
        stays what it read, so a sweep of that name saved meanwhile (which may share jobs) is seen first."""
        return int(self.r.get(self.k("named", name)) or 0)

    def delete_jobs(self, job_ids: list[str], *, name: str = "", version: int = 0, chunk: int = 500) -> bool:
        """Delete everything stored of these jobs: envelope, state, result and its row, history, runs, attempts
        and cancel mark. Returns False, leaving the rest, as soon as the count of sweeps named ``name`` is no
        longer ``version`` (:meth:`sweeps_named`: a sweep of that name was saved since, and may list some of
        these jobs). Each chunk is one atomic script, so a job is gone whole or not at all. A job's generation
        counter stays, one higher, as a takeover leaves it: a worker paused since it held the job's lease can no
        longer record it, even if the same job is submitted again later."""
        for part in _chunks(job_ids, chunk):
            keys = [self.k("named", name), self.k("running")]
            keys += [k for j in part for k in (self.k("gen", j), *(self.k(kind, j) for kind in FORGET_KINDS))]
            if not int(self._delete_jobs(keys=keys, args=[version if name else "", *part])):
                return False
        return True

    def delete_sweep(self, sweep_id: str) -> None:
        """Delete the sweep's own keys (manifest, job list, cancel mark) and its entry in the list of sweeps."""
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(self.k("sweep", sweep_id), self.k("sweep", sweep_id, "jobs"), self.k("cancel", sweep_id))
        pipe.zrem(self.k("sweeps"), sweep_id)
        pipe.execute()

    @cached_property
    def _delete_jobs(self) -> Script:
        return self.r.register_script(_DELETE_JOBS)

    @cached_property
    def _add_jobs(self) -> Script:
        return self.r.register_script(_ADD_JOBS)


# KEYS: the sweep's job list, then each job's envelope key. ARGV: per job its id and envelope. Returns the ids
# whose envelope was not stored yet (stored and appended now).
_ADD_JOBS = """
local added = {}
for i = 2, #KEYS do
  local id, envelope = ARGV[2 * i - 3], ARGV[2 * i - 2]
  if redis.call('SET', KEYS[i], envelope, 'NX') then
    redis.call('RPUSH', KEYS[1], id)
    added[#added + 1] = id
  end
end
return added
"""


# KEYS: the counter of sweeps of a name, the running set, then per job its generation and its FORGET_KINDS keys.
# ARGV: the counter's expected value ("" for no check), then the job ids. Nothing is deleted if the counter moved.
_DELETE_JOBS = f"""
if ARGV[1] ~= '' and (redis.call('GET', KEYS[1]) or '0') ~= ARGV[1] then return 0 end
for i = 3, #KEYS, {1 + len(FORGET_KINDS)} do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('INCR', KEYS[i]) end
  redis.call('DEL', unpack(KEYS, i + 1, i + {len(FORGET_KINDS)}))
end
if #ARGV > 1 then redis.call('SREM', KEYS[2], unpack(ARGV, 2)) end
return 1
"""
