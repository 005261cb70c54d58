"""Results: each job's result (written once, ``SET NX``, fenced by the lease's generation), its tidy row and the
rows' shared parts, and the history that ``farm resume`` moves results to."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import cast

import redis

from farm.result import JobResult
from farm.rows import result_row
from farm.rowstore import compact_row
from farm.store.base import StoreBase, _chunks, _state_fields, _transaction

# KEYS: (result, history, row, attempts) per job. Moves each present result to its history, with its row.
_ARCHIVE = """
local moved = 0
for i = 1, #KEYS, 4 do
  local raw = redis.call('GET', KEYS[i])
  if raw then
    redis.call('RPUSH', KEYS[i + 1], raw)
    redis.call('DEL', KEYS[i], KEYS[i + 2], KEYS[i + 3])
    moved = moved + 1
  end
end
return moved
"""


class Results(StoreBase):
    """Each job's one result, its row, and the history of the results ``farm resume`` replaced."""

    def record_result(self, result: JobResult, *, generation: int | None = None) -> bool:
        """Write a job's result once; False (and nothing written) if it already has one or, when
        ``generation`` is given (a worker's lease, see ``farm.ledger``), if the job has been taken over since.

        The result (``SET NX``), its compact row, the row's shared part, the job's final state and its leaving
        the running set go in one ``MULTI``, watched on the result key and the job's generation: a row exists
        exactly when its result does, and describes that result; the state never says ``running`` beside a
        result; a worker that lost its lease, however late it wakes up, cannot write.

        Safe to repeat: a write whose reply was lost (Redis killed after the ``EXEC`` reached its append-only
        file, before it answered) and that is tried again finds this very result stored and returns True, so
        the worker does not log a recorded result as dropped."""
        key = self.k("result", result.job_id)
        gen_key = self.k("gen", result.job_id)
        record = result.model_dump_json()
        # The tidy row beside the full record: reports read rows with one MGET and json.loads, not a full
        # model validation per job.
        row, ref, part = compact_row(result_row(result))
        fenced = False

        def write(pipe: redis.client.Pipeline) -> bool:
            nonlocal fenced
            existing = pipe.get(key)
            if existing == record:  # this very write went through before (its reply was lost): done
                return True
            if generation is not None and pipe.get(gen_key) != str(generation):
                fenced = True  # another holder took the job over: its run is the one that counts
                return False
            if existing is not None:  # recorded already (a job that ran twice): the first result stands
                return False
            now = time.time()
            pipe.multi()
            pipe.set(key, record, nx=True)
            pipe.set(self.k("row", result.job_id), row)
            pipe.hsetnx(self.k("rowparts"), ref, part)
            pipe.hset(
                self.k("state", result.job_id),
                mapping=_state_fields(result.status, worker=result.worker, error=result.error, finished_at=now),
            )
            pipe.srem(self.k("running"), result.job_id)
            return True

        watched = (key, gen_key) if generation is not None else (key,)
        written = _transaction(self.r, write, *watched)
        if not written and not fenced:
            self.r.srem(self.k("running"), result.job_id)
        return bool(written)

    def record_results(self, results: list[JobResult], *, chunk: int = 1000) -> list[bool]:
        """:meth:`record_result` for many results (an import, a benchmark): the same writes and guarantees, a
        few round trips per ``chunk`` results. True for each result written, False where the job already had
        one (the first result stands)."""
        written: list[bool] = []
        for start in range(0, len(results), chunk):
            part = results[start : start + chunk]
            keys = [self.k("result", r.job_id) for r in part]
            records = [r.model_dump_json() for r in part]
            rows = [compact_row(result_row(r)) for r in part]
            with self.r.pipeline() as pipe:
                while True:
                    try:
                        pipe.watch(*keys)
                        # Checked after WATCH: a result written before it is seen here, one written after it
                        # makes EXEC fail and the chunk is tried again.
                        check = self.r.pipeline(transaction=False)
                        for key in keys:
                            check.exists(key)
                        seen: set[str] = set()
                        new = []
                        for r, exists in zip(part, check.execute(), strict=True):
                            new.append(not exists and r.job_id not in seen)  # a job twice: its first result
                            seen.add(r.job_id)
                        pipe.multi()
                        for r, key, record, (row, ref, shared), is_new in zip(
                            part, keys, records, rows, new, strict=True
                        ):
                            if is_new:
                                pipe.set(key, record, nx=True)
                                pipe.set(self.k("row", r.job_id), row)
                                pipe.hsetnx(self.k("rowparts"), ref, shared)
                        pipe.execute()
                        break
                    except redis.WatchError:
                        continue
            now = time.time()
            after = self.r.pipeline(transaction=False)
            for r, is_new in zip(part, new, strict=True):
                if is_new:
                    after.hset(
                        self.k("state", r.job_id),
                        mapping={
                            "state": r.status.value,
                            "updated_at": now,
                            "worker": r.worker or "",
                            "error": r.error or "",
                            "finished_at": now,
                        },
                    )
                after.srem(self.k("running"), r.job_id)
            after.execute()
            written.extend(new)
        return written

    def archive_results(self, job_ids: list[str], chunk: int = 1000) -> int:
        """:meth:`archive_result` for many jobs, one atomic script per ``chunk``; returns how many moved."""
        script = self.r.register_script(_ARCHIVE)
        moved = 0
        for part in _chunks(job_ids, chunk):
            keys = [
                k
                for j in part
                for k in (self.k("result", j), self.k("history", j), self.k("row", j), self.k("attempts", j))
            ]
            moved += int(script(keys=keys))
        return moved

    def have_results(self, job_ids: list[str]) -> list[bool]:
        """Whether each job has a result, in order (pipelined)."""
        return self._exist("result", job_ids)

    def has_result(self, job_id: str) -> bool:
        return bool(self.r.exists(self.k("result", job_id)))

    def result(self, job_id: str) -> JobResult | None:
        raw = self.r.get(self.k("result", job_id))
        return JobResult.model_validate_json(raw) if raw else None

    def results(self, job_ids: list[str]) -> list[JobResult | None]:
        return [JobResult.model_validate_json(r) if r else None for r in self._mget("result", job_ids)]

    def raw_results(self, job_ids: list[str]) -> Iterator[str | None]:
        return self._mget("result", job_ids)

    def raw_rows(self, job_ids: list[str]) -> list[str | None]:
        """The stored rows of these jobs (JSON text; None where a job has none), in order."""
        return list(self._mget("row", job_ids, 10_000))

    def row_parts(self, refs: list[str]) -> list[str | None]:
        """The shared parts of compact rows by reference (JSON text; None where one is missing), in order."""
        out: list[str | None] = []
        for chunk in _chunks(refs, 10_000):
            out.extend(cast("list[str | None]", self.r.hmget(self.k("rowparts"), chunk)))
        return out
