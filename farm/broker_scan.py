"""Looking inside the broker: which jobs have a message waiting (or in flight), and removing a sweep's.

kombu's Redis transport keeps each queue as a list of JSON messages whose ``headers.id`` is the Celery task id
(the farm sets it to the job id), and messages delivered but not yet acknowledged in the ``unacked`` hash.
``farm resume`` uses this to re-enqueue exactly the jobs that have no message anywhere; ``farm cancel`` to take
a sweep's queued messages off the queues.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

import redis

from farm import defaults
from farm.queue import is_farm_queue, queue_prefix, unacked_keys

UNACKED_KEY = "unacked"
"""kombu's hash of delivered, unacknowledged messages, for a farm with the default key prefix
(``farm.queue.unacked_keys`` names every prefix's)."""


def _task_id(raw: str | bytes) -> str | None:
    try:
        task_id: str | None = json.loads(raw)["headers"]["id"]
        return task_id
    except (ValueError, KeyError, TypeError):
        return None


def queue_keys(
    client: redis.Redis, known: Iterable[str] | None = None, key_prefix: str = defaults.KEY_PREFIX
) -> list[str]:
    """The queues of the farm with ``key_prefix`` that exist now: among ``known`` names (``Store.known_queues``),
    or found by scanning every key when the farm noted none (a scan reads the whole keyspace, a page at a time).
    Another farm's queues on the same Redis are never among them (``farm.queue.is_farm_queue``)."""
    if known is None:
        pattern = f"{queue_prefix(key_prefix)}*"
        candidates = [k.decode() if isinstance(k, bytes) else k for k in client.scan_iter(match=pattern, count=1000)]
    else:
        candidates = list(known)
    candidates = [k for k in candidates if is_farm_queue(k, key_prefix)]
    if not candidates:
        return []
    pipe = client.pipeline(transaction=False)
    for key in candidates:
        pipe.type(key)
    return sorted(k for k, kind in zip(candidates, pipe.execute(), strict=True) if kind in (b"list", "list"))


def _list_entries(client: redis.Redis, key: str, page: int = 5000) -> Iterator[str | bytes]:
    length = client.llen(key)
    for start in range(0, length, page):
        yield from client.lrange(key, start, start + page - 1)


def pending_job_ids(
    client: redis.Redis,
    *,
    include_unacked: bool = True,
    queues: Iterable[str] | None = None,
    key_prefix: str = defaults.KEY_PREFIX,
) -> set[str]:
    """Job ids with a message on a queue of the farm with ``key_prefix`` (and, with ``include_unacked``,
    delivered and not yet acknowledged: a delivery to a worker that died stays there until the visibility
    timeout). ``queues``: the queue names to look in (None: scan for them)."""
    ids: set[str] = set()
    for key in queue_keys(client, queues, key_prefix):
        ids.update(i for i in map(_task_id, _list_entries(client, key)) if i)
    if not include_unacked:
        return ids
    for raw in client.hvals(unacked_keys(key_prefix)["unacked_key"]):
        try:
            message = json.loads(raw)[0]
            ids.add(message["headers"]["id"])
        except (ValueError, KeyError, TypeError, IndexError):
            continue
    return ids


# KEYS: a queue   ARGV: job ids to remove. The queue is rewritten without their messages in one atomic step
# (LREM per message is linear in the queue's length each time: 20,000 removals from a 20,000-message queue took
# tens of seconds). Entries that are not farm messages are kept: removing them is the workers' intake's job.
_REMOVE = """
local wanted = {}
for _, id in ipairs(ARGV) do wanted[id] = true end
local entries = redis.call('LRANGE', KEYS[1], 0, -1)
local kept, removed = {}, 0
for _, raw in ipairs(entries) do
  local ok, msg = pcall(cjson.decode, raw)
  local id = ok and type(msg) == 'table' and type(msg.headers) == 'table' and msg.headers.id
  if id and wanted[id] then removed = removed + 1 else kept[#kept + 1] = raw end
end
if removed > 0 then
  redis.call('DEL', KEYS[1])
  for i = 1, #kept, 5000 do
    redis.call('RPUSH', KEYS[1], unpack(kept, i, math.min(i + 4999, #kept)))
  end
end
return removed
"""


def remove_messages(
    client: redis.Redis,
    job_ids: Iterable[str],
    queues: Iterable[str] | None = None,
    key_prefix: str = defaults.KEY_PREFIX,
) -> int:
    """Take the queued messages of these jobs off every queue of the farm with ``key_prefix`` (among ``queues``;
    None: scan for them); returns how many were removed."""
    wanted = list(set(job_ids))
    if not wanted:
        return 0
    script = client.register_script(_REMOVE)
    return sum(int(script(keys=[key], args=wanted)) for key in queue_keys(client, queues, key_prefix))
