"""Monitoring: a real Flower, from its package, against a test broker lists a farm worker and a finished farm
task through its HTTP API (workers send Celery task events)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from farm.queue import kombu_url
from tests.helpers import REPO, run_farm, wait_for, write_sweep

pytestmark = pytest.mark.slow
pytest.importorskip("flower")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - localhost only
        return json.loads(r.read())


def test_flower_sees_farm_workers_and_tasks(redis_url: str, start_worker, tmp_path: Path) -> None:
    port = free_port()
    log = open(tmp_path / "flower.log", "wb")  # noqa: SIM115
    flower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            f"--broker={kombu_url(redis_url)}",
            "flower",
            f"--port={port}",
            "--address=127.0.0.1",
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "FLOWER_UNAUTHENTICATED_API": "true"},
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                get(f"{base}/api/workers?refresh=1")
                return True
            except OSError:
                return False

        wait_for(up, 60, "Flower to listen")
        worker = start_worker("flower-w")
        env = {**worker.env}
        wait_for(
            lambda: any("flower-w" in name for name in get(f"{base}/api/workers?refresh=1")),
            60,
            "Flower to list the farm worker",
        )
        sweep = write_sweep(tmp_path, "watched", samples=32, test_samples=8, units=4)
        out = run_farm(["submit", str(sweep), "--json"], env)
        assert out.returncode == 0, out.stderr

        def finished() -> bool:
            tasks = get(f"{base}/api/tasks")
            return any(t.get("name") == "farm.run_job" and t.get("state") == "SUCCESS" for t in tasks.values())

        wait_for(finished, 180, "Flower to show the finished farm task")
    finally:
        flower.terminate()
        flower.wait(10)
        log.close()
