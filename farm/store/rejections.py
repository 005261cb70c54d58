"""Messages workers refused: the latest kept for inspection, and a count of all of them."""

from __future__ import annotations

import json
import time
from typing import Any

from farm.store.base import StoreBase


class Rejections(StoreBase):
    """Refused messages, kept and counted."""

    def rejections(self) -> tuple[int, dict[str, Any] | None]:
        """The total of refused messages and the newest one kept, in one round trip. The total is the
        never-trimmed counter; a store written only by older workers (a list, no counter) counts its list."""
        pipe = self.r.pipeline(transaction=False)
        pipe.get(self.k("rejected", "count"))
        pipe.llen(self.k("rejected"))
        pipe.lindex(self.k("rejected"), 0)
        count, kept, newest = pipe.execute()
        try:
            latest = json.loads(newest) if newest else None
        except ValueError:
            latest = None
        return (int(count) if count else int(kept)), (latest if isinstance(latest, dict) else None)

    def record_rejection(
        self,
        reason: str,
        *,
        worker: str,
        queue: str = "",
        raw: bytes | str = b"",
        size: int | None = None,
        keep: int = 1000,
        excerpt: int = 2048,
    ) -> int:
        """Keep a message a worker refused, for inspection, and count it; returns the total refused so far.

        ``P:rejected`` keeps the latest ``keep`` (newest first): when, which worker, which queue, why, the raw
        size and the first ``excerpt`` bytes of the raw message as escaped text (it may be anything: binary,
        not UTF-8, megabytes). ``P:rejected:count`` is never trimmed, so ``farm status`` shows the total."""
        data = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else bytes(raw)
        entry = {
            "at": time.time(),
            "worker": worker,
            "queue": queue,
            "reason": reason[:2000],
            "size": len(data) if size is None else size,
            "raw": data[:excerpt].decode("utf-8", "backslashreplace"),
        }
        pipe = self.r.pipeline()
        pipe.lpush(self.k("rejected"), json.dumps(entry))
        pipe.ltrim(self.k("rejected"), 0, keep - 1)
        pipe.incr(self.k("rejected", "count"))
        return int(pipe.execute()[-1])
