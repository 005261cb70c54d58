"""The seed sweep (tiny, synthetic) across a lab of separate hosts, over TLS with a password: two CPU hosts and
two pretend GPU boxes (a fake ``nvidia-smi``: an H100 and an A100), a Redis host and a submitter host, each with
its own address and hostname.

What it proves: jobs are routed by device (CPU jobs never reach a GPU box, GPU jobs never a CPU host), by GPU
model (the H100 job on the H100 box, the A100 job on the A100 box) and by ``host``; every job is recorded once,
with the fingerprint of the host that ran it (its name, its GPU); and ``farm workers`` and ``farm results``,
run from the submitter host, see every host. There is no GPU behind the fake ``nvidia-smi``: the GPU jobs run
on the right box and fail there with the framework's "sees no GPU" error, which is the routing check's record.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

from tests.faults.helpers import Farm
from tests.helpers import wait_for
from tests.hosts.lab import HostSpec, Lab

H100 = "0, NVIDIA H100 80GB HBM3, 81559, GPU-lab-h100-0, 550.54.15\n"
A100 = "0, NVIDIA A100-SXM4-40GB, 40960, GPU-lab-a100-0, 550.54.15\n"
LAB_WORKERS = [
    HostSpec("lab-cpu1"),
    HostSpec("lab-cpu2"),
    HostSpec("lab-h100", gpus=H100),
    HostSpec("lab-a100", gpus=A100),
]
CPU_HOSTS = {"lab-cpu1", "lab-cpu2"}
GPU_HOSTS = {"lab-h100", "lab-a100"}
WORKERS = {
    "cpu@lab-cpu1": "lab-cpu1",
    "cpu@lab-cpu2": "lab-cpu2",
    "gpu0@lab-h100": "lab-h100",
    "gpu0@lab-a100": "lab-a100",
}

# What each entry of the sweep asks for, and the hosts allowed to run it.
ENTRIES = [
    ("seed cifar10 on cpu", {"workload": "cifar10_mlp", "device": "cpu"}, CPU_HOSTS),
    ("seed fashion on cpu", {"workload": "fashion_mnist_mlp", "device": "cpu"}, CPU_HOSTS),
    ("seed cifar10 on gpu", {"workload": "cifar10_mlp", "device": "gpu"}, GPU_HOSTS),
    ("seed fashion on gpu", {"workload": "fashion_mnist_mlp", "device": "gpu"}, GPU_HOSTS),
    ("an H100", {"workload": "fashion_mnist_mlp", "device": "gpu", "requires": {"gpu_model": "H100"}}, {"lab-h100"}),
    ("an A100", {"workload": "fashion_mnist_mlp", "device": "gpu", "requires": {"gpu_model": "A100"}}, {"lab-a100"}),
    ("host cpu1", {"workload": "fashion_mnist_mlp", "device": "cpu", "requires": {"host": "lab-cpu1"}}, {"lab-cpu1"}),
    ("host cpu2", {"workload": "fashion_mnist_mlp", "device": "cpu", "requires": {"host": "lab-cpu2"}}, {"lab-cpu2"}),
]


def seed_sweep(path: Path) -> Path:
    """The seed experiment's two workloads on both devices, tiny (synthetic data, 64 samples, one epoch, JAX),
    plus entries routed by GPU model and by host."""
    spec = {
        "name": f"lab-seed-{path.parent.name}",
        "defaults": {
            "backend": "jax",
            "data": "synthetic",
            "train_samples": 64,
            "test_samples": 16,
            "epochs": 1,
        },
        "jobs": [],
    }
    for _, entry, _ in ENTRIES:
        small = {"hidden_units": [16]} if entry["workload"] == "cifar10_mlp" else {"hidden_layers": 1, "units": 16}
        spec["jobs"].append({**entry, "params": small})
    path.write_text(yaml.safe_dump(spec))
    return path


def test_seed_sweep_across_hosts_routed_and_fingerprinted(lab: Lab, tmp_path: Path) -> None:
    gpu_env = {"FARM_MAX_ATTEMPTS": "1", "FARM_QUARANTINE_AFTER": "100"}  # no real GPU: fail once, keep serving
    procs = [lab.start_worker(h) for h in sorted(CPU_HOSTS)] + [
        lab.start_worker(h, **gpu_env) for h in sorted(GPU_HOSTS)
    ]
    lab.wait_registered(list(WORKERS), procs=procs)

    # `farm workers` from the submitter host, over TLS: every host, under its own name, with its own hardware.
    live = {w["name"]: w for w in lab.farm_json("submit", "workers")}
    assert {n: w["host"] for n, w in live.items()} == WORKERS
    assert "farm.gpu.model-h100" in live["gpu0@lab-h100"]["queues"]
    assert "farm.gpu.model-a100" in live["gpu0@lab-a100"]["queues"]
    assert not any(q.startswith("farm.cpu") for n in ("gpu0@lab-h100", "gpu0@lab-a100") for q in live[n]["queues"])
    assert not any(q.startswith("farm.gpu") for n in ("cpu@lab-cpu1", "cpu@lab-cpu2") for q in live[n]["queues"])
    shown = lab.farm("submit", "workers")
    assert shown.returncode == 0 and all(h in shown.stdout for h in WORKERS.values()), shown.stdout + shown.stderr

    submitted = lab.farm_json("submit", "submit", str(seed_sweep(tmp_path / "seed.yaml")))
    sid = submitted["sweep_id"]
    assert submitted["jobs"] == len(ENTRIES)
    assert lab.redis is not None
    farm = Farm(lab.redis.local_url, tmp_path)
    job_ids = farm.jobs(sid)
    assert len(job_ids) == len(ENTRIES)

    def everything_recorded() -> bool:
        if not all(p.alive() for p in procs):
            raise AssertionError("a worker died:\n" + "\n".join(p.text()[-2000:] for p in procs if not p.alive()))
        return all(farm.result(j) for j in job_ids)

    wait_for(everything_recorded, 240, "every job of the seed sweep recorded", interval=1)

    by_entry = {}
    for job_id in job_ids:
        result = farm.result(job_id)
        assert result is not None
        spec = json.loads(farm.r.get(f"farm:job:{job_id}"))["job"]
        key = next(
            name
            for name, entry, _ in ENTRIES
            if entry["workload"] == spec["workload"]
            and entry["device"] == spec["device"]
            and (entry.get("requires") or {}) == {k: v for k, v in (spec.get("requires") or {}).items() if v}
        )
        by_entry[key] = result
    assert set(by_entry) == {name for name, _, _ in ENTRIES}

    for name, _, allowed in ENTRIES:
        result = by_entry[name]
        host = result["host"]
        assert host in allowed, (name, host, result["worker"])
        # The record carries the fingerprint of the host that ran it, not of the submitter or the test machine.
        assert result["environment"]["host"] == host
        assert WORKERS[result["worker"]] == host
        if host in CPU_HOSTS:
            assert result["status"] == "succeeded", (name, result.get("error"))
            assert result["environment"]["gpus"] == []
        else:
            gpus = result["environment"]["gpus"]
            assert [g["name"] for g in gpus] == [
                ("NVIDIA H100 80GB HBM3" if host == "lab-h100" else "NVIDIA A100-SXM4-40GB")
            ]
            assert result["environment"]["cuda_visible_devices"] == "0"
            # No real GPU behind the fake nvidia-smi: the job fails on the right box, saying why. (Where a
            # framework does see a real GPU, it runs.)
            if result["status"] != "succeeded":
                assert result["status"] == "failed" and "gpu" in (result["error"] or "").lower(), result["error"]

    # Each job recorded once, never two runs at once; and every host ran something.
    assert farm.check_ledger(sid) == {
        "jobs": len(ENTRIES),
        "recorded": len(ENTRIES),
        "lost": 0,
        "recorded_twice": 0,
        "concurrent_runs": 0,
    }
    assert {r["host"] for r in by_entry.values()} == CPU_HOSTS | GPU_HOSTS

    # `farm results` from the submitter host: one row per job, each with its host and hardware key.
    csv = tmp_path / "results.csv"
    out = lab.farm("submit", "results", sid, "-o", str(csv))
    assert out.returncode == 0, out.stderr
    rows = pd.read_csv(csv)
    assert len(rows) == len(ENTRIES) and set(rows.host) == CPU_HOSTS | GPU_HOSTS
    cpu_keys = set(rows[rows.host.isin(CPU_HOSTS) & (rows.status == "succeeded")].hardware_key)
    assert cpu_keys and all(isinstance(k, str) and k for k in cpu_keys)
    print("\ncross-host sweep (entry: host, worker, status):")
    for name, r in by_entry.items():
        print(f"  {name}: {r['host']}, {r['worker']}, {r['status']}")
