"""Resolving the sweep a command names (an id, a unique prefix, a name, or nothing for the latest): shared by
every command that reads one sweep."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cli.common import fail

if TYPE_CHECKING:
    from farm.store import Store


def resolve(store: Store, sweep_id: str | None) -> str:
    if sweep_id is None:
        ids = store.sweep_ids()
        if not ids:
            fail("no sweep has been submitted to this farm yet")
        return ids[-1]
    sid = store.resolve_sweep(sweep_id)
    if sid is None:
        fail(f"no sweep matches {sweep_id!r}")
    return sid
