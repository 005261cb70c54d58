#!/usr/bin/env python3
"""Health of a benchfarm worker container: exit 0 when healthy, 1 when not (one line on stdout says why).

Healthy means the farm's worker registry in Redis holds at least one worker whose host is this container's
hostname: a worker keeps its entry alive with a heartbeat every ``heartbeat_s`` and the entry expires after four
missed beats, so an entry proves that the worker process is alive *and* reaches Redis with its credentials. A
worker that stopped taking jobs after repeated failures on this machine ("quarantined") is reported unhealthy too,
unless ``--allow-quarantined`` is given (for a Kubernetes liveness probe: restarting a quarantined worker would only
let it burn more jobs).

Why not ``farm workers --json``: it lists the whole farm's workers, so it succeeds while this container's worker is
dead as long as Redis is up and some other worker is alive.

Settings come from the same place as the worker's (``FARM_BROKER_URL`` etc.), so no arguments are needed.
"""

from __future__ import annotations

import socket
import sys


def check(allow_quarantined: bool = False, host: str | None = None) -> tuple[bool, str]:
    """(healthy, reason). Never raises: any error is an unhealthy answer."""
    try:
        from farm.settings import load_settings
        from farm.store import Store

        host = host or socket.gethostname()
        store = Store.from_settings(load_settings())
        mine = [w for w in store.live_workers() if w.get("host") == host]
    except Exception as e:  # noqa: BLE001 - a health check reports, it does not crash
        return False, f"unhealthy: {type(e).__name__}: {e}"
    if not mine:
        return False, f"unhealthy: no live worker of host {host!r} in the farm's registry"
    stopped = [w for w in mine if w.get("quarantined")]
    if stopped and not allow_quarantined:
        w = stopped[0]
        return False, f"unhealthy: worker {w.get('name')} stopped taking jobs: {w['quarantined']}"
    names = ", ".join(sorted(str(w.get("name")) for w in mine))
    return True, f"healthy: {len(mine)} worker(s) of {host}: {names}"


def main(argv: list[str]) -> int:
    unknown = [a for a in argv if a != "--allow-quarantined"]
    if unknown:
        print(f"usage: healthcheck.py [--allow-quarantined] (unknown: {' '.join(unknown)})")
        return 2
    healthy, reason = check(allow_quarantined="--allow-quarantined" in argv)
    print(reason)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
