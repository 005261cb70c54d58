"""Every default number of the farm, in one place, each with the reason it has that value."""

BATCH_SIZE = 32
"""Keras' own default for ``fit``: the seed experiment used it without saying so."""

SEED = 0
"""Base seed; a job trains with ``seed + repeat`` so repeats are independent but reproducible."""

MAX_EPOCHS = 10_000
"""More epochs than this is a typo, not a benchmark."""

MAX_BATCH_SIZE = 65_536
"""Larger batches do not fit any accelerator we know for these models."""

MAX_REPEATS = 1_000
"""Statistics stop improving long before this; a larger value is a typo."""

MAX_SAMPLES = 100_000_000
"""Upper bound for train/test sample caps."""

MAX_JOBS_PER_SWEEP = 100_000
"""A sweep that expands beyond this is refused before anything is enqueued."""

MAX_MATRIX_AXES = 16
"""Axes in one sweep matrix."""

MAX_AXIS_VALUES = 1_000
"""Values on one matrix axis."""

MAX_SWEEP_FILE_BYTES = 1_000_000
"""A sweep file larger than 1 MB is refused unread."""

MAX_SWEEP_NODES = 100_000
"""Parsed YAML nodes (aliases counted every time they are used): stops anchor 'bombs'."""

MAX_STRING_LENGTH = 200
"""Longest free-text value (names, hosts, GPU models) accepted in a spec."""

MAX_UNITS = 65_536
"""Widest Dense layer a workload accepts."""

MAX_HIDDEN_LAYERS = 64
"""Deepest MLP a workload accepts."""

STEPS_PER_EXECUTION = 1
"""Keras' default."""

REDIS_URL = "redis://127.0.0.1:6379/0"
"""Where a lab's broker usually is when nothing else is configured."""

KEY_PREFIX = "farm"
"""Prefix of every Redis key the farm's store writes."""

BROKER_CONNECT_TIMEOUT_S = 3.0
"""Submit pings the broker first and fails within this many seconds when it is down."""

JOB_TIME_LIMIT_FLOOR_S = 600.0
"""The smallest default time limit of a job: start-up and data decoding alone can take minutes."""

JOB_TIME_LIMIT_PER_EPOCH_S = 600.0
"""Default time allowance per epoch; a sweep may set ``time_limit_s`` per job instead."""

MAX_TIME_LIMIT_S = 7 * 24 * 3600.0
"""No single job may be allowed to run for more than a week."""

WORKER_HEARTBEAT_S = 5.0
"""How often a worker refreshes its registry entry and the lease of its running job."""

WORKER_TTL_S = 20.0
"""A worker whose registry entry is older than this is considered gone."""

LEASE_TTL_S = 30.0
"""A running job's lease expires this long after its worker's last heartbeat."""

VISIBILITY_TIMEOUT_S = 8 * 24 * 3600.0
"""Redis redelivers an unacknowledged message after this: longer than the longest allowed job, so a
running job is never delivered twice; jobs of dead workers come back through the farm's own reaper."""

MAX_ATTEMPTS = 3
"""A job whose process dies this many times is recorded as failed instead of retried again."""

STATUS_REFRESH_S = 1.0
"""Refresh period of ``farm status --watch``."""

STALL_GAP_S = 2.0
"""A gap this long with under 10% CPU use inside a timed phase is flagged as an idle stall."""

QUARANTINE_AFTER = 3
"""A worker whose jobs fail this many times in a row stops taking jobs (a bad machine must not burn a sweep)."""

STORE_RETRY_S = 600.0
"""A worker retries writing a result this long while Redis is unreachable (a restart takes seconds)."""

CANCEL_CHECK_S = 1.0
"""A worker asks Redis whether its running job was cancelled this often: ``farm cancel`` stops a run within
about a second, at one command per second per running job."""

REAP_INTERVAL_S = 5.0
"""How often a worker looks for jobs whose worker died (their lease expired) and puts them back."""

OUTBOX_GRACE_S = 30.0
"""A job's message owed this long (claimed, never published: its submitter or worker was interrupted) is sent
by the reaper. Longer than a healthy submit needs between claiming a batch and publishing it."""

INFLIGHT_RECHECK_S = 120.0
"""A job whose message waits on its queue is looked at again this often by the reaper (a scan of the queues),
so that a message popped by a worker and lost before it took the job (Redis or the worker killed in between)
is sent again. Messages on no queue are sent again after ``OUTBOX_GRACE_S``."""

REDIS_TIMEOUT_S = 5.0
"""A Redis reply awaited longer than this fails the command: a stopped (SIGSTOP) or wedged server still accepts
connections but never answers, and without a bound every command hangs. Above kombu's 1 s BRPOP wait, which
is read under the same socket timeout."""

CONTENTION_CPU_THRESHOLD = 0.2
"""A job is marked contended when other processes used more than this share of its cores (or the hypervisor
stole it) over its steady window: one busy core of a 2-core job is 0.5; a quiet machine's daemons stay near
0.01. Reports leave contended repeats out of their statistics by default."""
