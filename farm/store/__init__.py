"""The farm's system of record, on Redis: sweep manifests, job specs and states, results, live workers.

One :class:`Store` for callers, made of parts split by concern: :mod:`~farm.store.connection` (connecting, and
one line for each way it fails), :mod:`~farm.store.sweeps` (sweeps, and forgetting them), :mod:`~farm.store.jobs`
(envelopes, states, progress), :mod:`~farm.store.results` (results, rows, history), :mod:`~farm.store.runlog`,
:mod:`~farm.store.registry` (workers, queues) and :mod:`~farm.store.rejections`; key names are made in one place,
:meth:`~farm.store.base.StoreBase.k`.

Keys (``P`` is the key prefix, ``farm`` by default), each with one owner that writes it; nothing here expires
except worker heartbeats:

- ``P:sweeps``                 zset of sweep ids by submission time (sweeps)
- ``P:sweep:SID``              the sweep's manifest (JSON: name, source, spec, submitted_at) (sweeps)
- ``P:sweep:SID:jobs``         list of its job ids in queue order (sweeps)
- ``P:named:NAME``             how many times a sweep of that name was saved: guards ``farm forget`` (sweeps)
- ``P:job:JID``                the job's envelope (JSON), written once (sweeps)
- ``P:state:JID``              hash: state, queue, worker, attempt, epoch k/N, loss/accuracy, heartbeat, error,
                               sent_at (jobs; the ledger sets it only inside its own atomic claim and requeue)
- ``P:result:JID``             the job's result (JSON), written once: ``SET NX`` (results)
- ``P:row:JID``                the result's tidy row (compact JSON, see ``farm.rows``), for fast reports;
                               written in the same transaction as the result and deleted with it (results)
- ``P:rowparts``               hash: part reference → the values many rows share (cell, hardware, software);
                               content-addressed, so it only grows by distinct combinations (results)
- ``P:history:JID``            earlier results that ``farm resume`` replaced (failed, timed out, cancelled) (results)
- ``P:runs:JID``               one entry per run of the job: worker, attempt, start, end, how it ended (runlog)
- ``P:rejected``               the latest 1,000 messages workers refused, with the reason (rejections)
- ``P:rejected:count``         how many messages workers have refused in all (never trimmed) (rejections)
- ``P:worker:NAME``            a live worker's registration (JSON), expiring unless its heartbeat renews it (registry)
- ``P:workers``                zset: the registry's index, worker name by when its entry expires (registry)
- ``P:queues``                 set of the queue names that hold, or may hold, farm messages (registry)

The job ledger's (``farm.ledger``), deleted with the rest of a job by ``farm forget``:

- ``P:attempts:JID``           how many times the job has been started (survives crashes; reset by resume)
- ``P:failures:JID``           hash: worker -> where and how the job failed there (a job failing the same way
                               on two workers is blamed, not the workers; reset by resume)
- ``P:lease:JID``              ``worker#generation`` of the run holding the job; expires unless renewed
- ``P:gen:JID``                the job's lease generation (fencing token): results are written only by its holder
- ``P:outbox``                 zset of jobs whose message is owed to a queue (claimed, not yet published)
- ``P:inflight``               zset of jobs whose message was published and that no worker has taken yet
- ``P:running``                set of jobs that a worker has started and not yet recorded or handed back
- ``P:cancel:SID`` / ``:JID``  present while a sweep (or job) is cancelled

Results are written with ``SET NX`` so a job that ran twice (at-least-once delivery) is recorded once.
"""

from __future__ import annotations

from farm.settings import FarmSettings
from farm.store.connection import connect, not_redis, tcp_reachable, tls_trouble
from farm.store.jobs import Jobs
from farm.store.registry import Registry
from farm.store.rejections import Rejections
from farm.store.results import Results
from farm.store.runlog import RunLog
from farm.store.sweeps import FORGET_KINDS, Sweeps

__all__ = ["FORGET_KINDS", "Store", "connect", "not_redis", "tcp_reachable", "tls_trouble"]


class Store(Sweeps, Jobs, Results, RunLog, Registry, Rejections):
    """Typed access to the farm's keys, one object for every part. Every write that must happen once uses NX."""

    @classmethod
    def from_settings(cls, settings: FarmSettings) -> Store:
        return cls(connect(settings), settings.key_prefix)
