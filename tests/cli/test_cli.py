"""The ``farm`` command through typer's CliRunner: help, dry runs, user errors, a broker that is down, and a
real throwaway Redis (farm.embedded.EmbeddedRedis on a unix socket) for submit / status / results / report.

No worker is started and nothing trains: the jobs just sit on their queues.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import redis
from typer.testing import CliRunner, Result

import cli.main
from cli.main import app
from farm.job import JobEnvelope
from farm.ledger import Ledger
from farm.store import Store
from farm.sweep import load_sweep
from tests.helpers import REPO, run_farm_together, throwaway_redis

SEED = REPO / "examples" / "seed.yaml"
HEAVY = ("tensorflow", "keras", "jax", "torch")
SEED_SWEEP = load_sweep(SEED)


def clean_env(config: Path) -> dict[str, str | None]:
    """Environment overrides for CliRunner.invoke: no FARM_* from the caller, a config file that is absent,
    and a wide console so rich does not wrap what the tests look for."""
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("FARM_")}
    env.update(FARM_CONFIG=str(config), COLUMNS="250")
    return env


# conftest's isolated_env: no FARM_* setting of the caller, no config file, never the machine's shared Redis.
pytestmark = pytest.mark.usefixtures("isolated_env")


def invoke(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(app, list(args), env=env)


def flat(text: str) -> str:
    return " ".join(text.split())


# -- help --------------------------------------------------------------------------------------------------------

COMMANDS = sorted(cli.main.COMMANDS)


def test_commands_registered() -> None:
    assert set(COMMANDS) == {
        "devices",
        "worker",
        "workloads",
        "history",
        "dashboard",
        "workers",
        "submit",
        "status",
        "results",
        "report",
        "run",
        "config",
        "compare",
        "cancel",
        "resume",
        "forget",
    }


def test_app_help() -> None:
    result = invoke("--help")
    assert result.exit_code == 0, result.output
    for name in COMMANDS:
        assert name in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help(command: str) -> None:
    result = invoke(command, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_help_reads_as_prose_at_any_width(command: str) -> None:
    """The help flows to the terminal's width: on a wide one each paragraph of the command's description is one
    line (the source's line breaks cut sentences in half); a flag shows no ``<bool>`` type."""
    import re

    from cli.main import command_function, flowing

    result = CliRunner().invoke(cli.main.app, [command, "--help"], env={"COLUMNS": "1000"}, terminal_width=1000)
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    lines = [re.sub(r"\s+", " ", line).strip(" │") for line in result.output.splitlines()]
    for paragraph in flowing(command_function(command).__doc__ or "").split("\n\n"):
        for line in paragraph.splitlines():
            assert re.sub(r"\s+", " ", line).strip() in lines, (line, result.output)


# -- dry run -----------------------------------------------------------------------------------------------------


def test_submit_dry_run_table() -> None:
    result = invoke("submit", str(SEED), "--dry-run")
    assert result.exit_code == 0, result.output
    out = flat(result.output)
    assert "jobs per queue: farm.cpu 10, farm.gpu 10" in out
    assert SEED_SWEEP.sweep_id in out
    assert "20 jobs = 4 cells × 5 repeats to start; each cell grows until ±2.0% or 20 valid" in out
    assert "nothing enqueued" in out


def test_submit_dry_run_json() -> None:
    result = invoke("submit", str(SEED), "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["sweep_id"] == SEED_SWEEP.sweep_id
    assert data["jobs"] == 20
    assert data["cells"] == 4 and data["precision"]["min_repeats"] == 5
    assert data["per_queue"] == {"farm.cpu": 10, "farm.gpu": 10}
    assert data["dry_run"] is True
    assert data["job_ids"] == [j.job_id for j in SEED_SWEEP.jobs]


def test_submit_dry_run_with_name() -> None:
    result = invoke("submit", str(SEED), "--dry-run", "--json", "--name", "again")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["sweep_id"].startswith("again-")
    assert not set(data["job_ids"]) & {j.job_id for j in SEED_SWEEP.jobs}


def test_dry_run_needs_no_broker() -> None:
    # A dead broker does not matter for a dry run: nothing is sent.
    result = invoke("submit", str(SEED), "--dry-run", "--broker", "redis://127.0.0.1:1/0")
    assert result.exit_code == 0, result.output


# -- user errors -------------------------------------------------------------------------------------------------


def test_bad_sweep_file_exits_2_with_located_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: s\njobs:\n  - workload: cifar10_mlp\n  - workload: nope\n    epochs: 0\n")
    result = invoke("submit", str(bad), "--dry-run")
    assert result.exit_code == 2, result.output
    out = flat(result.output)
    assert f"{bad}: jobs[1].workload:" in out, result.output
    assert f"{bad}: jobs[1].epochs:" in out, result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


def test_bad_sweep_file_without_dry_run_exits_2_before_connecting(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: my sweep\njobs:\n  - workload: cifar10_mlp\n")
    started = time.monotonic()
    result = invoke("submit", str(bad), "--broker", "redis://127.0.0.1:1/0")
    assert result.exit_code == 2, result.output
    assert f"{bad}: name:" in flat(result.output)
    assert "Traceback" not in result.output
    assert time.monotonic() - started < 5


def test_malformed_yaml_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: s\njobs: [\n")
    result = invoke("submit", str(bad), "--dry-run")
    assert result.exit_code == 2, result.output
    assert "malformed YAML" in result.output and str(bad) in flat(result.output)
    assert "Traceback" not in result.output


def test_missing_sweep_file_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    result = invoke("submit", str(missing), "--dry-run")
    assert result.exit_code == 2, result.output
    assert str(missing) in flat(result.output)
    assert "Traceback" not in result.output


def test_bad_name_override_exits_2() -> None:
    result = invoke("submit", str(SEED), "--dry-run", "--name", "my sweep")
    assert result.exit_code == 2, result.output
    assert "name:" in result.output


# -- broker down -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ("submit", str(SEED)),
        ("status",),
        ("results",),
        ("report",),
        ("workers",),
    ],
)
@pytest.mark.timeout(120)  # a command that kept retrying would hang here: the limit only catches that
def test_broker_down_fails_fast(command: tuple[str, ...]) -> None:
    result = invoke(*command, "--broker", "redis://127.0.0.1:1/0")
    assert result.exit_code == 1, result.output
    out = flat(result.output)
    assert "cannot reach Redis" in out
    assert "redis://127.0.0.1:1/0" in out
    assert "Traceback" not in result.output


def test_broker_down_message_masks_the_password() -> None:
    started = time.monotonic()
    result = invoke("submit", str(SEED), "--broker", "redis://:s3cret@127.0.0.1:1/0")
    assert time.monotonic() - started < 10
    assert result.exit_code == 1, result.output
    assert "cannot reach Redis" in flat(result.output)
    assert "s3cret" not in result.output
    assert "redis://:***@127.0.0.1:1/0" in flat(result.output)


def test_broker_down_from_environment_masks_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FARM_BROKER_URL", "redis://alice:s3cret@127.0.0.1:1/0")
    result = invoke("workers")
    assert result.exit_code == 1, result.output
    assert "s3cret" not in result.output
    assert "alice:***@" in result.output


# -- the submit side stays light ---------------------------------------------------------------------------------


def test_submit_side_never_imports_frameworks(tmp_path: Path) -> None:
    code = f"""
import json, sys
from typer.testing import CliRunner
import cli.main
result = CliRunner().invoke(cli.main.app, ["submit", {str(SEED)!r}, "--dry-run"])
result_json = CliRunner().invoke(cli.main.app, ["submit", {str(SEED)!r}, "--dry-run", "--json"])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
print(json.dumps({{"exit": [result.exit_code, result_json.exit_code], "heavy": heavy}}))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    env["FARM_CONFIG"] = str(tmp_path / "no-such-config.toml")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout.strip().splitlines()[-1])
    assert data["exit"] == [0, 0]
    assert data["heavy"] == []


@pytest.mark.parametrize(
    "command, keeps_python_defaults, collects",
    [  # each a real process: the fast loop runs one long command and one short one
        ("worker", True, True),
        pytest.param("run", True, True, marks=pytest.mark.slow),
        pytest.param("report", False, False, marks=pytest.mark.slow),
        ("status", False, False),
        pytest.param("submit", False, False, marks=pytest.mark.slow),
    ],
)
def test_only_short_commands_change_the_garbage_collector(
    command: str, keeps_python_defaults: bool, collects: bool
) -> None:
    code = f"""
import atexit, gc, json, sys
import cli.main
default = gc.get_threshold()
atexit.register(lambda: print(json.dumps([default, gc.get_threshold(), gc.isenabled()])))
sys.argv = ["farm", {command!r}, "--help"]
cli.main.main()
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    default, after, enabled = json.loads(out.stdout.strip().splitlines()[-1])
    # A worker forks the processes that train: they must run with Python's own collector settings.
    assert (after == default) is keeps_python_defaults
    assert enabled is collects


def test_status_watch_collects_garbage(seeded: dict) -> None:
    """`farm status --watch` may run for hours: the collector is back on while it watches."""
    code = f"""
import gc, sys
import rich.live
def stop_at_the_first_look(live):
    print("collector", gc.isenabled(), flush=True)
    raise SystemExit(0)
rich.live.Live.__enter__ = stop_at_the_first_look
sys.argv = ["farm", "status", {seeded["first"]["sweep_id"]!r}, "--watch", "--broker", {seeded["url"]!r}]
import cli.main
cli.main.main()
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    env.update({k: v for k, v in seeded["env"].items() if v is not None})
    env["TTY_COMPATIBLE"] = "1"  # rich treats the pipe as a terminal: the live view, not progress lines
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "collector True" in out.stdout


# -- a real Redis ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A throwaway redis-server with the seed sweep submitted once; stopped at the end of the module."""
    base = tmp_path_factory.mktemp("farm")
    env = clean_env(base / "no-such-config.toml")
    with throwaway_redis() as server:
        first = invoke("submit", str(SEED), "--broker", server.url, "--json", "--allow-unserved", env=env)
        assert first.exit_code == 0, first.output
        client = redis.Redis.from_url(server.url)
        yield {"url": server.url, "env": env, "first": json.loads(first.stdout), "dir": base, "client": client}
        client.close()
    assert server.proc is None, "redis-server left running"


def test_submit_enqueues_every_job(seeded: dict) -> None:
    data = seeded["first"]
    assert data["sweep_id"] == SEED_SWEEP.sweep_id
    assert data["jobs"] == 20
    assert data["enqueued"] == 20
    assert data["already_queued_or_done"] == 0
    assert data["per_queue"] == {"farm.cpu": 10, "farm.gpu": 10}


def test_resubmit_is_idempotent(seeded: dict) -> None:
    again = invoke("submit", str(SEED), "--broker", seeded["url"], "--json", "--allow-unserved", env=seeded["env"])
    assert again.exit_code == 0, again.output
    data = json.loads(again.stdout)
    assert data["sweep_id"] == seeded["first"]["sweep_id"]
    assert data["jobs"] == 20
    assert data["enqueued"] == 0
    assert data["already_queued_or_done"] == 20
    r = seeded["client"]
    assert r.llen("farm.cpu") == 10 and r.llen("farm.gpu") == 10


def test_plain_submit_prints_the_sweep_id(seeded: dict) -> None:
    result = invoke("submit", str(SEED), "--broker", seeded["url"], "--allow-unserved", env=seeded["env"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == SEED_SWEEP.sweep_id
    assert "0 jobs enqueued" in flat(result.output)


def queue_messages(r: redis.Redis, queue: str) -> list[dict]:
    return [json.loads(raw) for raw in r.lrange(queue, 0, -1)]


@pytest.mark.parametrize("queue, device", [("farm.cpu", "cpu"), ("farm.gpu", "gpu")])
def test_queue_messages_are_json_envelopes(seeded: dict, queue: str, device: str) -> None:
    messages = queue_messages(seeded["client"], queue)
    assert len(messages) == 10
    seen = set()
    for msg in messages:
        assert msg["content-type"] == "application/json"  # never pickle
        assert msg["content-encoding"] == "utf-8"
        assert msg["properties"]["body_encoding"] == "base64"
        assert msg["properties"]["delivery_info"]["routing_key"] == queue
        assert msg["headers"]["task"] == "farm.run_job"
        body = json.loads(base64.b64decode(msg["body"]))
        # Celery message protocol 2: body = [args, kwargs, embed]; args = [envelope]
        assert isinstance(body, list)
        args, kwargs = body[0], body[1]
        assert isinstance(args, list) and len(args) == 1 and kwargs == {}
        envelope = args[0]
        assert isinstance(envelope, dict)
        assert set(envelope) == {"job_id", "sweep_id", "job", "time_limit_s"}
        assert envelope["sweep_id"] == SEED_SWEEP.sweep_id
        assert msg["headers"]["id"] == envelope["job_id"]
        env = JobEnvelope.model_validate(envelope)
        assert env.job.device == device
        seen.add(env.job_id)
    assert seen == {j.job_id for j in SEED_SWEEP.jobs if j.device == device}


def test_no_pickle_anywhere_in_redis(seeded: dict) -> None:
    r = seeded["client"]
    for key in r.scan_iter(count=1000):
        if r.type(key) == b"list":
            for raw in r.lrange(key, 0, -1):
                assert b"application/x-python-serialize" not in raw
                assert not raw.startswith(b"\x80"), f"pickle protocol header in {key!r}"


def test_status_json(seeded: dict) -> None:
    sid = seeded["first"]["sweep_id"]
    result = invoke("status", sid, "--broker", seeded["url"], "--json", env=seeded["env"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["sweep_id"] == sid
    assert data["name"] == "seed-cpu-vs-gpu"
    assert data["total"] == 20 and data["finished"] == 0
    assert len(data["jobs"]) == 20
    assert {j["state"] for j in data["jobs"]} == {"queued"}
    assert data["counts"] == {"queued": 20}
    assert data["unserved_queues"] == {"farm.cpu": 10, "farm.gpu": 10}
    assert data["live_workers"] == 0
    assert [j["job_id"] for j in data["jobs"]] == [j.job_id for j in SEED_SWEEP.jobs]


def test_status_by_prefix_name_and_latest(seeded: dict) -> None:
    sid = seeded["first"]["sweep_id"]
    for ref in (sid[:-3], "seed-cpu-vs-gpu"):
        result = invoke("status", ref, "--broker", seeded["url"], "--json", env=seeded["env"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["sweep_id"] == sid
    latest = invoke("status", "--broker", seeded["url"], "--json", env=seeded["env"])
    assert latest.exit_code == 0, latest.output
    assert json.loads(latest.stdout)["sweep_id"] == sid


def imported_by(args: list[str], env: dict[str, str | None]) -> list[str]:
    """The modules that the real ``farm`` command line imports to run ``args`` (it must succeed)."""
    # An exit handler reports the modules: short commands end without tearing the interpreter down, but they
    # run the exit handlers first.
    code = f"""
import atexit, json, runpy, sys
atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))
sys.argv = ["farm", *{args!r}]
runpy.run_module("cli.main", run_name="__main__")
"""
    full = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    full.update({k: v for k, v in env.items() if v is not None})
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=full, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stderr.strip().splitlines()[-1])


# What one command must not pay for: the other commands' modules, Celery (only sending needs it), pandas.
# farm.queue is light (it names queues; Celery is imported only to send), so status may use it to name a
# job's queue: celery and kombu themselves stay on the list.
NOT_FOR_STATUS = (
    "celery",
    "kombu",
    "pandas",
    "numpy",
    "workers",
    "cli.results",
    "cli.compare",
    "cli.run",
    "cli.worker",
    "cli.submit",
    "cli.devices",
    "farm.lifecycle",
    "farm.reports.aggregate",
    "farm.reports.stats",
    "farm.sweep",
)


@pytest.mark.parametrize("extra", [[], pytest.param(["--json"], marks=pytest.mark.slow)])  # a real process each
def test_status_imports_only_what_it_needs(seeded: dict, extra: list[str]) -> None:
    modules = imported_by(["status", seeded["first"]["sweep_id"], "--broker", seeded["url"], *extra], seeded["env"])
    assert "cli.status" in modules
    unwanted = [m for m in modules if m in NOT_FOR_STATUS or m.split(".")[0] in NOT_FOR_STATUS]
    assert unwanted == []


def test_dry_run_imports_no_celery_nor_pandas(seeded: dict) -> None:
    modules = imported_by(["submit", str(SEED), "--dry-run", "--json", "--broker", seeded["url"]], seeded["env"])
    assert [m for m in modules if m.split(".")[0] in ("celery", "kombu", "pandas")] == []


def test_real_command_output_and_exit_codes(seeded: dict) -> None:
    """The command line as a user runs it (it ends without the interpreter's teardown): all of its output
    arrives, and the exit status is the command's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    env.update({k: v for k, v in seeded["env"].items() if v is not None})
    sid, url = seeded["first"]["sweep_id"], seeded["url"]
    out = run_farm_together(
        {
            "ok": (["status", sid, "--broker", url, "--json"], env),
            "table": (["status", sid, "--broker", url], env),
            "missing": (["status", "no-such-sweep", "--broker", url], env),
            "down": (["status", "--broker", "redis://127.0.0.1:1/0"], env),
            "usage": (["status", "--no-such-flag"], env),
            "help": (["--help"], env),
        }
    )
    ok, table, missing, down, usage = (out[k] for k in ("ok", "table", "missing", "down", "usage"))
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["total"] == 20
    assert table.returncode == 0 and "0/20 finished" in flat(table.stdout)
    assert missing.returncode == 2 and "no-such-sweep" in missing.stderr and missing.stdout == ""
    assert down.returncode == 1 and "cannot reach Redis" in flat(down.stderr)
    assert usage.returncode == 2 and "No such option" in usage.stderr
    assert out["help"].returncode == 0


def test_status_unknown_sweep_exits_2(seeded: dict) -> None:
    result = invoke("status", "no-such-sweep", "--broker", seeded["url"], env=seeded["env"])
    assert result.exit_code == 2, result.output
    assert "no-such-sweep" in result.output
    assert "Traceback" not in result.output


def test_status_table_says_no_live_worker(seeded: dict) -> None:
    result = invoke("status", seeded["first"]["sweep_id"], "--broker", seeded["url"], env=seeded["env"])
    assert result.exit_code == 0, result.output
    out = flat(result.output)
    assert "no live worker" in out
    assert "0/20 finished" in out
    assert "farm.cpu" in out and "farm.gpu" in out  # the queues nobody serves are named


def test_results_csv(seeded: dict) -> None:
    out_file = seeded["dir"] / "tmp" / "raw.csv"
    out_file.parent.mkdir(exist_ok=True)
    result = invoke(
        "results", seeded["first"]["sweep_id"], "--broker", seeded["url"], "-o", str(out_file), env=seeded["env"]
    )
    assert result.exit_code == 0, result.output
    assert "wrote 20 rows" in flat(result.output)
    df = pd.read_csv(out_file)
    assert len(df) == 20
    assert set(df["status"]) == {"queued"}
    assert set(df["job_id"]) == {j.job_id for j in SEED_SWEEP.jobs}
    assert set(df["sweep_id"]) == {SEED_SWEEP.sweep_id}
    assert sorted(df["device"].value_counts().items()) == [("cpu", 10), ("gpu", 10)]


def test_results_to_stdout(seeded: dict) -> None:
    result = invoke("results", seeded["first"]["sweep_id"], "--broker", seeded["url"], env=seeded["env"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 21  # header + 20 jobs
    assert "job_id" in lines[0]


def test_report_without_results(seeded: dict) -> None:
    result = invoke("report", seeded["first"]["sweep_id"], "--broker", seeded["url"], env=seeded["env"])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    out_file = seeded["dir"] / "report.csv"
    result = invoke(
        "report", seeded["first"]["sweep_id"], "--broker", seeded["url"], "-o", str(out_file), env=seeded["env"]
    )
    assert result.exit_code == 0, result.output
    assert out_file.exists()


def test_workers_json_empty_on_a_fresh_redis() -> None:
    with throwaway_redis() as server:
        result = invoke("workers", "--broker", server.url, "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == []
        table = invoke("workers", "--broker", server.url)
        assert table.exit_code == 0, table.output
        assert "0 live worker(s)" in table.output
        none = invoke("status", "--broker", server.url)
        assert none.exit_code == 2, none.output
        assert "no sweep has been submitted" in flat(none.output)
    assert server.proc is None


def test_submit_refuses_jobs_no_live_worker_can_run(tmp_path: Path) -> None:
    with throwaway_redis() as server:
        env = clean_env(tmp_path / "none.toml")
        result = invoke("submit", str(SEED), "--broker", server.url, env=env)
        assert result.exit_code == 2, result.output
        out = flat(result.output)
        assert "farm.cpu" in out and "farm.gpu" in out and "--allow-unserved" in out
        client = redis.Redis.from_url(server.url)
        assert client.llen("farm.cpu") == 0 and client.llen("farm.gpu") == 0 and not client.keys("farm:state:*")
        # A live CPU worker (its registry entry) makes the CPU jobs feasible; the dry run shows what is left.
        client.set("farm:worker:cpu@x", json.dumps({"name": "cpu@x", "queues": ["farm.cpu"], "heartbeat_at": 0}))
        dry = json.loads(invoke("submit", str(SEED), "--broker", server.url, "--dry-run", "--json", env=env).stdout)
        assert dry["unserved"] == {"farm.gpu": 10}
        text = flat(invoke("submit", str(SEED), "--broker", server.url, "--dry-run", env=env).output)
        assert "10 job(s) on farm.gpu: no live worker serves it" in text
        client.close()


# -- submitting in batches: every job once, nothing half-done ---------------------------------------------------


def test_submit_in_batches_sends_each_job_once(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import farm.submit
    from farm.settings import FarmSettings

    monkeypatch.setattr(farm.submit, "PUBLISH_BATCH", 5)
    out = farm.submit.submit(load_sweep(SEED), FarmSettings(broker_url=redis_url))
    assert out.enqueued == 20 and out.per_queue == {"farm.cpu": 10, "farm.gpu": 10}
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    ids = [m["headers"]["id"] for q in ("farm.cpu", "farm.gpu") for m in queue_messages(r, q)]
    assert sorted(ids) == sorted(j.job_id for j in SEED_SWEEP.jobs)
    assert all(r.hget(f"farm:state:{j}", "sent_at") for j in ids)
    again = farm.submit.submit(load_sweep(SEED), FarmSettings(broker_url=redis_url))
    assert again.enqueued == 0 and again.already == 20
    assert r.llen("farm.cpu") + r.llen("farm.gpu") == 20
    r.close()


def test_a_failed_batch_stays_owed_and_the_next_submit_sends_it(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kombu.transport.redis

    import farm.submit
    from farm.settings import FarmSettings

    flush = kombu.transport.redis.PublishBatch.flush
    calls = []

    def failing_second_flush(self) -> None:  # type: ignore[no-untyped-def]
        calls.append(self._buffered)
        if len([n for n in calls if n]) == 2:  # the second flush that has messages to send
            raise redis.ConnectionError("connection lost mid-batch")
        flush(self)

    monkeypatch.setattr(farm.submit, "PUBLISH_BATCH", 5)
    monkeypatch.setattr(kombu.transport.redis.PublishBatch, "flush", failing_second_flush)
    from farm.errors import FarmUnavailable

    with pytest.raises(FarmUnavailable, match="run the same `farm submit` again"):
        farm.submit.submit(load_sweep(SEED), FarmSettings(broker_url=redis_url))
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    first = [j.job_id for j in SEED_SWEEP.jobs[:5]]
    on_queues = [m["headers"]["id"] for q in ("farm.cpu", "farm.gpu") for m in queue_messages(r, q)]
    assert sorted(on_queues) == sorted(first)  # the first batch went, the failed one did not
    assert all(r.hget(f"farm:state:{j}", "sent_at") for j in first)
    failed = {j.job_id for j in SEED_SWEEP.jobs[5:10]}
    assert set(r.zrange("farm:outbox", 0, -1)) == failed  # owed, not lost
    # ... and given back: the run again that the error asks for sends them at once, not after SEND_LEASE_S.
    assert Ledger(Store(r)).debts_due_in(sorted(failed)) == 0.0
    assert not any(Store(r).states([j.job_id for j in SEED_SWEEP.jobs[10:]]))  # never claimed
    monkeypatch.setattr(kombu.transport.redis.PublishBatch, "flush", flush)
    again = farm.submit.submit(load_sweep(SEED), FarmSettings(broker_url=redis_url))
    assert again.enqueued == 15 and again.already == 5
    on_queues = [m["headers"]["id"] for q in ("farm.cpu", "farm.gpu") for m in queue_messages(r, q)]
    assert sorted(on_queues) == sorted(j.job_id for j in SEED_SWEEP.jobs)
    assert r.zcard("farm:outbox") == 0
    r.close()


def test_resubmit_needs_no_celery(redis_url: str, tmp_path: Path) -> None:
    env = {"FARM_CONFIG": str(tmp_path / "none.toml"), "FARM_BROKER_URL": redis_url}
    first = imported_by(["submit", str(SEED), "--allow-unserved", "--json"], env)
    assert "celery" in first
    again = imported_by(["submit", str(SEED), "--allow-unserved", "--json"], env)
    assert [m for m in again if m.split(".")[0] in ("celery", "kombu", "pandas")] == []
