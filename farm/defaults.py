"""Every default number of the farm, in one place, each with the reason it has that value."""

BATCH_SIZE = 32
"""Keras' own default for ``fit``: the seed experiment used it without saying so."""

SEED = 0
"""Base seed; a job trains with ``seed + repeat`` so repeats are independent but reproducible."""

MAX_EPOCHS = 10_000
"""More epochs than this is a typo, not a benchmark."""

MAX_BATCH_SIZE = 65_536
MAX_DEVICES_PER_JOB = 64
"""The most devices one data-parallel job may span (a box holds 8 or 16 GPUs; virtual CPU devices are for tests)."""
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

QUARANTINE_COOLDOWN_S = 1800.0
"""A worker that stopped taking jobs takes them again after this long (a machine's trouble is often passing)."""

HAND_BACK_PAUSE_S = 1.0
"""A worker sent a job whose backend it does not offer waits this long before handing it back: a job that no
live worker can run must not spin between the workers that cannot."""

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

SEND_LEASE_S = 15.0
"""A debt in the outbox is its claimer's (or payer's) alone to send for this long: another submit of the same jobs
waits for it rather than sending the same message again. Longer than publishing one batch of 1,000 messages
takes on a busy machine; a submitter killed mid-batch leaves its debts to others after it."""

INFLIGHT_RECHECK_S = 120.0
"""A job whose message waits on its queue is looked at again this often by the reaper (a scan of the queues),
so that a message popped by a worker and lost before it took the job (Redis or the worker killed in between)
is sent again. Messages on no queue are sent again after ``OUTBOX_GRACE_S``."""

CLOCK_REFRESH_S = 30.0
"""A process measures the offset between its host's clock and the Redis server's (one ``TIME``) again after
this: the farm stamps what other hosts compare on the server's clock (see ``farm.clock``)."""

REDIS_TIMEOUT_S = 5.0
"""A Redis reply awaited longer than this fails the command: a stopped (SIGSTOP) or wedged server still accepts
connections but never answers, and without a bound every command hangs. Above kombu's 1 s BRPOP wait, which
is read under the same socket timeout."""

CONTENTION_CPU_THRESHOLD = 0.2
"""A steady epoch is disturbed when other processes used more than this share of its cores (or the hypervisor
stole it) during it, and a job whose steady epochs were all disturbed is marked contended: one busy core of a
2-core job is 0.5; a quiet machine's daemons stay near 0.01. Reports leave contended repeats out of their
statistics by default."""

CONTENTION_SLOWDOWN = 3.0
"""How much slower a CPU job's steady epochs run per unit of others' CPU on its cores, measured by
``benchmarks/contention_sensitivity.py`` on a 2-core machine: 2.8 (least squares over 5–17% of the cores used by
others; per level 8.6, 3.2 and 2.2), rounded up. Not a gentle line: a framework's threads wait for the slowest
of them, so a neighbour's short bursts can double an epoch (seen at 5%) or cost a few percent (seen at 17%).
A cell with a precision target of ±5% is marked contended above 1.7% of its cores used by others."""

CONTENTION_FLOOR = 0.01
"""The smallest contended threshold: the sampler reads /proc in clock ticks (10 ms) twice a second, so 1% of a
2-core job's window of a few seconds is a handful of ticks; below that the figure is noise."""

MIN_STEADY_S = 1.0
"""A repeat's steady window (its epochs after the first) shorter than this is too short to time: scheduler
ticks, a page fault or a timer interrupt are a few milliseconds each, a few percent of a 0.1-s window. The
repeat is invalid and its reason says how many epochs or samples would reach it (``farm.validity``)."""

MIN_STEADY_STEPS = 20
"""Fewer training steps than this in the steady window make it too short to time as well: with a handful of
steps, one slow step (a garbage collection, a page fault) moves the mean by tens of percent."""

MAX_CLOCK_CHANGE = 0.1
"""A CPU whose clock moved by more than this share within a steady window (read where cpufreq is exposed) was
throttled or re-clocked while it was measured: the repeat is invalid."""

QUIET_WAIT_S = 120.0
"""A job waits at most this long, before it trains, for a quiet host (others' CPU on its cores under the
contended threshold): long enough for a compile or a test run beside it to end, short enough that a host busy
for good costs each job two minutes, not the night (``workers.quiet``)."""

ERROR_MAX_CHARS = 8192
"""A result keeps at most this many characters of a job's error message (then says how many more there were):
a job can raise an exception of any size, and the result, its row and the CSV must stay small."""

STDERR_TAIL_BYTES = 65536
"""The supervisor keeps only the last this many bytes of a child's stderr, read in fixed chunks: a child that
writes gigabytes (with or without newlines) cannot grow its worker."""

EVENT_MAX_BYTES = 4 * 2**20
"""Longest event line a child may send (a result with thousands of epochs fits); a longer one is dropped with
a note, read in bounded pieces so it never sits whole in the worker's memory."""

JOB_MEMORY_FRACTION = 0.9
"""Share of the memory available when the worker starts that its job's process may use (divided among its
concurrent jobs: one), when ``job_memory_limit_mb`` is not set: an over-large job fails, the host stays up."""

DESCENDANT_SCAN_S = 2.0
"""How often the supervisor notes the processes a running job started, so that whatever escaped the job's
process group is still killed at its end even if the job's own process died first."""

WRONG_TYPE_RECHECK_S = 60.0
"""A queue key of the wrong Redis type that the worker could not move aside (an ACL forbids RENAME) is left out
of its poll this long, then looked at again: the worker keeps serving its other queues meanwhile."""

REDIS_ERROR_LOG_S = 60.0
"""A Redis error reply that a worker waits out (a full Redis, a refused command) is logged once per this many
seconds per kind, not once per poll."""

REDIS_ERROR_PAUSE_S = 1.0
"""A worker's poll that Redis answered with an error waits this long before the next one (kombu's own BRPOP
wait): the same error at once, in a loop, would only burn CPU and fill the log."""

SPOOL_REPLAY_S = 60.0
"""How often a worker tries again to record the results left in its spool (JSON on its disk: Redis refused them
past ``STORE_RETRY_S``, full or away) until Redis takes them."""

LOCAL_STOP_S = 30.0
"""``farm run``'s local workers get this long to finish on their own once the sweep has ended (idle, they exit at
once); then they are killed."""
