"""A command names a sweep by its id, its name or a prefix of its id: a name wins over a prefix, so that
``farm compare by-hand by-hand-2`` compares the two sweeps the user named."""

from __future__ import annotations

import redis

from farm.embedded import EmbeddedRedis
from farm.store import Store
from farm.sweep import load_sweep_data


def test_a_name_wins_over_a_prefix_and_the_latest_submission_wins(redis_server: EmbeddedRedis) -> None:
    store = Store(redis.Redis.from_url(redis_server.url, decode_responses=True))
    ids = {}
    for name, units in (("by-hand", 8), ("by-hand-2", 8), ("by-hand", 16)):
        job = {"workload": "fashion_mnist_mlp", "data": "synthetic", "params": {"hidden_layers": 1, "units": units}}
        sweep = load_sweep_data({"name": name, "jobs": [job]})
        store.save_sweep(sweep.sweep_id, {"sweep_id": sweep.sweep_id, "name": name}, sweep.envelopes())
        ids[(name, units)] = sweep.sweep_id
    assert store.resolve_sweep("by-hand") == ids[("by-hand", 16)]  # the latest sweep named so
    assert store.resolve_sweep("by-hand-2") == ids[("by-hand-2", 8)]
    assert store.resolve_sweep(ids[("by-hand", 8)]) == ids[("by-hand", 8)]  # an id is itself
    assert store.resolve_sweep(ids[("by-hand-2", 8)][:12]) == ids[("by-hand-2", 8)]  # a prefix of an id
    assert store.resolve_sweep("nothing") is None
