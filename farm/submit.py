"""Submitting a sweep: record it in the store, then enqueue each job not already queued, running or done.

Idempotent by job id: a job is claimed (its state set to queued) before it is sent, and only the claimer sends
it, so submitting the same sweep twice, or two people submitting it at once, enqueues each job once. What an
interrupted submit still owes is paid by the next one, but never while another process is paying it (the
ledger's debts are each payer's alone for a while): two identical submits at once send each message once.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from farm import defaults
from farm.errors import FarmUnavailable
from farm.ledger import Ledger
from farm.queue import job_queue
from farm.settings import KERAS_BACKENDS, mask_url
from farm.store import Store

if TYPE_CHECKING:
    from celery import Celery

    from farm.job import JobEnvelope
    from farm.settings import FarmSettings
    from farm.sweep import Sweep

log = logging.getLogger("farm.submit")

PUBLISH_BATCH = 1000
"""Jobs claimed and sent per round: an interrupted submit leaves at most this many messages owed at once."""


@dataclass
class SubmitOutcome:
    sweep_id: str
    jobs: int
    enqueued: int
    already: int
    per_queue: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    repaired: int = 0  # messages an interrupted earlier submit of this sweep still owed, sent now
    owed_elsewhere: int = 0  # debts another process was still paying when this submit stopped waiting for it
    taken: set[str] = field(default_factory=set)  # debts claimed or taken here: given back if interrupted


class Stop(BaseException):
    """SIGINT or SIGTERM while submitting (a BaseException, as KeyboardInterrupt: no library swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class SubmitInterrupted(Exception):
    """The submit was stopped by a signal; what it had claimed and not sent is anyone's to send again."""

    def __init__(self, signum: int, sent: int, wanted: int) -> None:
        super().__init__(signum)
        self.signum, self.sent, self.wanted = signum, sent, wanted

    def __str__(self) -> str:
        return (
            f"interrupted ({signal.Signals(self.signum).name}) after sending {self.sent} of {self.wanted} jobs: "
            "run the same submit again, and it sends exactly the missing messages"
        )

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


_signals: dict[str, Any] = {"holding": 0, "pending": None}
"""While ``holding`` is above 0 a signal is kept in ``pending`` and raised when the hold ends (:func:`_held`)."""


def _stop(signum: int, frame: object) -> None:
    if _signals["holding"]:
        _signals["pending"] = signum  # raised as soon as the step in hand knows what it took
        return
    raise Stop(signum)


@contextlib.contextmanager
def _held() -> Iterator[None]:
    """A step whose Redis reply must reach Python before a signal stops the submit: a claim (or a take of
    debts) done in Redis but not yet noted in ``SubmitOutcome.taken`` could not be given back, and its jobs
    would wait a whole ``SEND_LEASE_S`` for the re-run. A signal that comes meanwhile stops the submit right
    after the step."""
    _signals["holding"] += 1
    try:
        yield
    finally:
        _signals["holding"] -= 1
        pending = _signals["pending"]
        if not _signals["holding"] and pending is not None:
            _signals["pending"] = None
            raise Stop(pending)


def stop_on_signals() -> dict[int, Any]:
    """SIGINT and SIGTERM stop a submit between two Redis replies (:class:`Stop`) rather than kill it, so it gives
    back what it claimed and says so; returns the handlers it replaced (for :func:`restore_signals`)."""
    _signals.update(holding=0, pending=None)
    return {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}


def restore_signals(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def plan(sweep: Sweep, key_prefix: str = defaults.KEY_PREFIX) -> dict[str, int]:
    """Jobs per queue (of the farm with ``key_prefix``), for the dry run."""
    return dict(collections.Counter(job_queue(j, key_prefix) for j in sweep.jobs))


def unserved(sweep: Sweep, store: Store) -> dict[str, int]:
    """Jobs per queue that no live worker (not stopped for failures) consumes right now. A job's queue names its
    Keras backend unless it is the default one (``farm.cpu.be-jax``), and a worker consumes only the queues of the
    backends it offers, so a queue that is served is served with its jobs' backend. A worker whose registry entry
    says it lacks the backend (an older one that consumed every queue whatever it offered) serves none of them."""
    workers = [w for w in store.live_workers() if not w.get("quarantined")]
    with_backend = {(q, b) for w in workers for q in w.get("queues", []) for b in offered(w)}
    missing: collections.Counter[str] = collections.Counter()
    for job in sweep.jobs:
        queue = job_queue(job, store.p)
        if (queue, job.backend) not in with_backend:
            missing[queue] += 1
    return dict(missing)


def offered(worker: dict[str, Any]) -> tuple[str, ...]:
    """The Keras backends a live worker offers, from its registry entry (``backends``: name -> version); a
    worker that does not say (an older one) is taken to offer them all, as it did before it could say."""
    backends = worker.get("backends")
    return tuple(backends) if isinstance(backends, dict) else KERAS_BACKENDS


PROBED_SCRIPT = "return 1"
"""A script that writes nothing: queued (never run) as EVAL and EVALSHA by :func:`check_permissions`."""

WRITES = ("SET", "ZADD", "RPUSH", "INCR", "DEL", "HSET", "HSETNX", "PEXPIRE", "SADD", "SREM", "ZREM")
"""The write commands a submit runs on the farm's keys: saving the sweep (SET, ZADD, RPUSH, INCR), marking it
submitting (SET, DEL) and, inside the ledger's scripts (which Redis checks command by command), claiming and
settling jobs."""

READS = ("GET", "EXISTS", "ZSCORE")
"""The read commands the ledger's scripts run."""


def check_permissions(store: Store, queues: list[str]) -> None:
    """Raise Redis' own refusal (``NoPermissionError``, or ``OutOfMemoryError`` for a full Redis) before a submit
    writes anything, when its user may not run a command the submit needs: an ACL user without ``EVAL``/``EVALSHA``
    used to have its sweep saved and then its first claim refused, leaving a sweep with no job.

    Redis checks a command's ACL (and a full Redis its write commands) when a transaction queues it, not when it
    runs: every command is queued, on the keys it will touch (the farm's, each queue and its kombu binding), inside
    a ``MULTI`` that is then discarded, so nothing runs and nothing is written whatever the user may do. (``ACL
    DRYRUN`` needs Redis 7 and the ``ACL`` command itself, which a limited user lacks.) ``MULTI`` is one of the
    submit's commands anyway: it saves the sweep in one transaction."""
    import hashlib

    probe = store.k("probe", "submit")
    sha = hashlib.sha1(PROBED_SCRIPT.encode(), usedforsecurity=False).hexdigest()
    commands: list[tuple[Any, ...]] = [
        ("EVAL", PROBED_SCRIPT, 0),
        ("EVALSHA", sha, 0),  # redis-py runs a script by EVALSHA, then EVAL if Redis has not cached it
        *((name, probe, *_probe_args(name)) for name in (*WRITES, *READS)),
        *(cmd for q in queues for cmd in (("LPUSH", q, "x"), ("SADD", f"_kombu.binding.{q}", "x"))),  # kombu's
    ]
    pool = store.r.connection_pool
    conn: Any = pool.get_connection()  # one connection: MULTI, the commands and DISCARD must share it
    refused: Exception | None = None
    try:
        conn.send_command("MULTI")
        conn.read_response()
        for command in commands:
            conn.send_command(*command)
            try:
                conn.read_response()  # QUEUED, or the refusal
            except Exception as e:  # noqa: BLE001 - a refusal is an error reply: the first one is raised below
                refused = refused or e
        conn.send_command("DISCARD")
        conn.read_response()
    except BaseException:
        conn.disconnect()  # a reply left unread must not be the next command's
        raise
    finally:
        pool.release(conn)
    if refused is not None:
        raise refused


def _probe_args(command: str) -> tuple[Any, ...]:
    """Arguments that make ``command`` well-formed (Redis checks the arity before the ACL); never run."""
    return {
        "SET": ("x",),
        "ZADD": (0, "x"),
        "RPUSH": ("x",),
        "HSET": ("f", "x"),
        "HSETNX": ("f", "x"),
        "PEXPIRE": (1,),
        "SADD": ("x",),
        "SREM": ("x",),
        "ZREM": ("x",),
        "ZSCORE": ("x",),
    }.get(command, ())


def submit(
    sweep: Sweep,
    settings: FarmSettings,
    *,
    store: Store | None = None,
    accept: Callable[[str], bool] | None = None,
    skip: Collection[str] = (),
) -> SubmitOutcome:
    """Enqueue the sweep's jobs; ``accept(queue)`` may leave some queues out (``farm run`` on a CPU-only box), and
    ``skip`` some jobs by id (``farm submit --skip-unserved``: those whose data no live worker has). Jobs left out
    are recorded with the sweep, unsent: ``farm status`` shows them, a later submit of the sweep sends them.

    Interruptible at any point (SIGKILL of this process, Redis dying mid-way): each job is claimed with a debt
    in the ledger's outbox in the same atomic step, and the debt is settled only once its message went. Running
    the same submit again sends exactly the owed messages that are on no queue; so does any worker's reaper,
    after a grace period, if nobody submits again.
    """
    store = store or Store.from_settings(settings)
    envelopes = sweep.envelopes()
    manifest = {
        "sweep_id": sweep.sweep_id,
        "name": sweep.spec.name,
        "source": sweep.source,
        "spec": sweep.spec.model_dump(mode="json"),
        "jobs": len(envelopes),
        "submitted_at": store.now(),  # the server's clock: `farm status` on another host counts from it
    }
    queues = {e.job_id: job_queue(e.job, store.p) for e in envelopes}
    outcome = SubmitOutcome(sweep.sweep_id, len(envelopes), 0, 0)
    wanted = [e for e in envelopes if (accept is None or accept(queues[e.job_id])) and e.job_id not in skip]
    outcome.skipped = len(envelopes) - len(wanted)
    ledger = Ledger(store)
    try:
        check_permissions(store, sorted({queues[e.job_id] for e in wanted}))  # refused before anything is written
        ledger.begin_submit(sweep.sweep_id)  # until every job is claimed, `farm status` calls it interrupted
        store.save_sweep(sweep.sweep_id, manifest, envelopes)
        return _send_all(settings, store, wanted, queues, outcome)
    except Stop as stop:
        _give_back(ledger, outcome)
        raise SubmitInterrupted(stop.signum, outcome.enqueued, len(wanted)) from None
    except Exception as e:
        if not _lost_broker(e):
            raise
        _give_back(ledger, outcome, quiet=True)  # after a blip, the run again the error asks for sends them at once
        raise FarmUnavailable(
            f"lost Redis at {mask_url(settings.broker_url)} while submitting ({outcome.enqueued} of "
            f"{len(wanted)} jobs sent): {str(e).splitlines()[0][:200]}. Nothing is lost: run the same `farm "
            "submit` again when Redis is back and it sends exactly the missing messages."
        ) from None


def _lost_broker(e: BaseException) -> bool:
    """Whether ``e`` means the connection to Redis went away (redis-py's or kombu's way of saying it)."""
    import redis

    if isinstance(e, (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, ConnectionError)):
        return True
    kombu_errors = sys.modules.get("kombu.exceptions")  # loaded exactly when something was sent through kombu
    return kombu_errors is not None and isinstance(e, (kombu_errors.BatchPublishError, kombu_errors.OperationalError))


def _send_all(
    settings: FarmSettings, store: Store, wanted: list[JobEnvelope], queues: dict[str, str], outcome: SubmitOutcome
) -> SubmitOutcome:
    """Claim and send ``wanted`` a batch at a time, then pay what earlier interrupted submits still owe."""
    ledger = Ledger(store)
    app = None
    for start in range(0, len(wanted), PUBLISH_BATCH):
        part = wanted[start : start + PUBLISH_BATCH]
        with _held():
            claimed = ledger.claim([(e.job_id, queues[e.job_id]) for e in part])
            outcome.taken |= claimed
        outcome.already += len(part) - len(claimed)
        todo = [e for e in part if e.job_id in claimed]
        if not todo:
            continue
        store.restore_envelopes(todo)  # a concurrent `farm forget` of a same-name sweep may have taken some
        if app is None:
            app = _app(settings, queues, wanted)
        sent = ledger.send(app, todo)  # raises if Redis went away: the unsent stay owed, not lost
        for env in todo:
            queue = queues[env.job_id]
            outcome.per_queue[queue] = outcome.per_queue.get(queue, 0) + 1
        outcome.enqueued += len(sent)
    ledger.end_submit(outcome.sweep_id)
    # An earlier submit of this sweep that was interrupted left debts: pay them now (only those on no queue).
    owed = ledger.debts([e.job_id for e in wanted])
    if owed:
        repaired = _pay_owed(ledger, app or _app(settings, queues, wanted), owed, outcome)
        outcome.repaired = len(repaired)
        for job_id in repaired:
            outcome.per_queue[queues[job_id]] = outcome.per_queue.get(queues[job_id], 0) + 1
        outcome.already -= outcome.repaired
        outcome.enqueued += outcome.repaired
    return outcome


def _give_back(ledger: Ledger, outcome: SubmitOutcome, *, quiet: bool = False) -> None:
    """Give back the debts this submit claimed and did not send, so that the next submit sends them at once
    rather than after ``SEND_LEASE_S``. Best effort: with Redis gone too they fall due by themselves, which is
    what the error of a submit that lost Redis already says (``quiet``: it stays that one line)."""
    if not outcome.taken:
        return
    try:
        ledger.release_debts(sorted(outcome.taken))
    except Exception as e:  # noqa: BLE001 - Redis may be unreachable: the debts then fall due by themselves
        (log.debug if quiet else log.warning)("could not give back %d claimed jobs: %s", len(outcome.taken), e)


def _pay_owed(ledger: Ledger, app: Celery, owed: list[str], outcome: SubmitOutcome) -> list[str]:
    """Pay these debts: at once those nobody is paying; those another process is paying (a submit of the same
    jobs running beside this one, or one killed in the last ``SEND_LEASE_S``) once it has paid them or they fall
    due. Waits at most a little over ``SEND_LEASE_S``; what is still owed then is counted in ``owed_elsewhere``."""
    repaired: list[str] = []
    deadline = time.monotonic() + defaults.SEND_LEASE_S + 5
    while owed:
        with _held():
            repaired += ledger.pay_outbox(app, job_ids=owed, taken=outcome.taken)  # given back if interrupted
        owed = ledger.debts(owed)
        due_in = ledger.debts_due_in(owed)
        if not owed or due_in is None or time.monotonic() >= deadline:
            break
        time.sleep(min(max(due_in, 0.05), 0.5))  # its payer usually settles it long before it falls due
    outcome.owed_elsewhere = len(owed)
    return repaired


def _app(settings: FarmSettings, queues: dict[str, str], envelopes: list[JobEnvelope]) -> Celery:
    from farm.queue import make_app  # Celery: imported only to send, not to validate, plan or re-submit

    return make_app(settings, {queues[e.job_id] for e in envelopes})
