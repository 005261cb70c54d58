"""``farm dashboard``: the real command serving a throwaway, password-protected Redis, read over HTTP.

A module's dashboard runs as its own process (``python -m cli.main dashboard --port 0``, the URL read from the
line it prints) over a store filled without training: two finished sweeps of one name (so compare and history
have something to line up), a finished sweep whose name is markup, a live sweep of 150 jobs (queued, one
running), a sweep id that is markup, and three registered workers: one running a job, one quarantined for a
reason that is markup, one idle. Every page must answer, escape what it shows, never show the broker's password,
and refuse what it must: writes (405), strangers' Host names (403), and, off loopback, requests without the token
(401) or with a wrong one (403).

The rule's pieces (loopback, the token, the verdicts) and the reads' paging are checked in this process too.
"""

from __future__ import annotations

import json
import re
import select
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from farm.dashboard.access import COOKIE, Access, choose_token, host_name, is_loopback, session_value
from farm.embedded import EmbeddedRedis
from farm.job import JobEnvelope, JobSpec
from farm.result import JobStatus
from farm.store import Store
from tests.helpers import REPO, farm_env, save_finished_sweep, succeeded_job, throwaway_redis

PASSWORD = "dash-s3cret-Pw9"  # noqa: S105 - a throwaway server's password, that no page may show
HOSTILE_NAME = '<script>alert("sweep")</script><b>bold</b>'
HOSTILE_WORKER = "w<i>1</i>"
HOSTILE_REASON = "<script>alert('q')</script> GPU fell off the bus"
HOSTILE_ID = 'evil"><img src=x>-0000000001'
FIRST, SECOND, ODD, LIVE = "nightly-1111111111", "nightly-2222222222", "odd-3333333333", "live-4444444444"
#: Seconds one HTTP answer may take on a loaded 2-core machine (a report is drawn on its first request).
HTTP_TIMEOUT = 180
START_TIMEOUT = 90


# ------------------------------------------------------------------------------------------------ the store
def finished_sweep(store: Store, sweep_id: str, name: str, *, first_repeat: int, day: int, cpu_rate: float) -> None:
    """A finished sweep: fashion_mnist_mlp on CPU and GPU, four repeats each (``first_repeat`` on, so that two
    sweeps of one name share cells but no job), one hardware key per device, finished on 2026-11-``day``."""
    name_part = sweep_id.rsplit("-", 1)[0]
    envelopes, results = [], []
    for device, rate in (("cpu", cpu_rate), ("gpu", cpu_rate * 10)):
        for i in range(4):
            job = JobSpec(
                sweep=name_part,
                workload="fashion_mnist_mlp",
                device=device,
                backend="jax",
                epochs=3,
                repeat=first_repeat + i,
            )
            env, result = succeeded_job(
                job,
                sweep_id,
                1000 / (rate * (1 + 0.01 * i)),
                device_name="NVIDIA H100" if device == "gpu" else "cpu-x",
                train_samples_used=1000,
                finished_at=datetime(2026, 11, day, 3, len(results), tzinfo=UTC),
                versions={"python": "3.11.7", "keras": "3.15.1", "jax": "0.4.30"},
                environment={"hardware_key": f"{device}:box", "software_key": "py3.11.7 keras3.15.1 jax0.4.30"},
            )
            envelopes.append(env)
            results.append(result)
    save_finished_sweep(store, sweep_id, name, envelopes, results)


def live_sweep(store: Store, jobs: int = 150) -> str:
    """A sweep of ``jobs`` queued jobs, the first one running (epoch 2 of 3); returns the running job's id."""
    envelopes = [
        JobEnvelope.for_job(JobSpec(sweep="live", workload="fashion_mnist_mlp", epochs=3, repeat=i), LIVE)
        for i in range(jobs)
    ]
    store.save_sweep(LIVE, {"sweep_id": LIVE, "name": "live", "jobs": jobs}, envelopes)
    for env in envelopes[1:]:
        store.set_state(env.job_id, JobStatus.queued, queue="farm.cpu")
    running = envelopes[0].job_id
    store.set_state(running, JobStatus.running, queue="farm.cpu", worker=HOSTILE_WORKER, epoch=2, epochs=3)
    return running


def seed(store: Store) -> dict[str, Any]:
    finished_sweep(store, FIRST, "nightly", first_repeat=0, day=1, cpu_rate=100.0)
    finished_sweep(store, SECOND, "nightly", first_repeat=4, day=2, cpu_rate=120.0)
    finished_sweep(store, ODD, HOSTILE_NAME, first_repeat=0, day=3, cpu_rate=90.0)
    store.save_sweep(HOSTILE_ID, {"sweep_id": HOSTILE_ID, "name": "evil"}, [])
    running = live_sweep(store)
    store.note_queues(["farm.cpu", "farm.gpu"])
    store.r.rpush("farm.cpu", *[f"message-{i}" for i in range(7)])  # seven messages wait there
    base = {"tags": ["cpu"], "backends": {"jax": "0.4.30"}, "pid": 1, "benchfarm": "0.1.0", "gpu_ids": []}
    store.register_worker(
        HOSTILE_WORKER,
        {**base, "name": HOSTILE_WORKER, "host": "lab-<b>host</b>", "queues": ["farm.cpu"], "job": running},
        ttl_s=3600,
    )
    store.register_worker(
        "gpu-worker",
        {
            **base,
            "name": "gpu-worker",
            "host": "lab2",
            "queues": ["farm.gpu"],
            "job": None,
            "quarantined": HOSTILE_REASON,
        },
        ttl_s=3600,
    )
    store.register_worker(
        "idle-worker", {**base, "name": "idle-worker", "host": "lab3", "queues": ["farm.cpu"], "job": None}, ttl_s=3600
    )
    return {"running": running}


# ------------------------------------------------------------------------------------------------ the process
@dataclass
class Served:
    """A running ``farm dashboard`` process and the line it printed."""

    proc: subprocess.Popen[str]
    line: str
    port: int
    printed_url: str
    base: str = field(init=False)

    def __post_init__(self) -> None:
        self.base = f"http://127.0.0.1:{self.port}"

    def stop(self) -> tuple[int, str, str]:
        """Ctrl-C, as a person stops it: the exit status and what it printed after its first line."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            out, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        return self.proc.returncode, out, err


def start_dashboard(env: dict[str, str], *args: str) -> Served:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "dashboard", "--port", "0", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT)
    line = proc.stdout.readline() if ready else ""
    match = re.search(r"(http://\S+)", line)
    if match is None:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"no URL printed: {line!r} {out!r} {err[-3000:]!r}")
    url = match.group(1)
    port = int(re.search(r":(\d+)/", url).group(1))  # type: ignore[union-attr]
    return Served(proc, line, port, url)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: str


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)


def fetch(url: str, *, method: str = "GET", headers: dict[str, str] | None = None) -> Answer:
    """One request, redirects not followed, no proxy: the status, headers (lower-case names) and body."""
    request = urllib.request.Request(url, method=method, headers=headers or {})  # noqa: S310 - http to 127.0.0.1
    try:
        with _OPENER.open(request, timeout=HTTP_TIMEOUT) as response:
            return Answer(
                response.status, {k.lower(): v for k, v in response.headers.items()}, response.read().decode()
            )
    except urllib.error.HTTPError as e:
        return Answer(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read().decode())


@pytest.fixture(scope="module")
def farm() -> Iterator[dict[str, Any]]:
    with throwaway_redis(password=PASSWORD) as server, tempfile.TemporaryDirectory(prefix="dash-") as cache:
        store = Store(redis.Redis.from_url(server.url, decode_responses=True))
        facts = seed(store)
        yield {"server": server, "store": store, "env": farm_env(server.url, Path(cache)), **facts}


@pytest.fixture(scope="module")
def dashboard(farm: dict[str, Any]) -> Iterator[Served]:
    served = start_dashboard(farm["env"], "--refresh", "3")
    yield served
    served.stop()


# ------------------------------------------------------------------------------------------------ the pages
@pytest.mark.slow
def test_prints_one_line_with_the_url(dashboard: Served) -> None:
    assert dashboard.printed_url == f"http://127.0.0.1:{dashboard.port}/"
    assert "read-only" in dashboard.line and "Ctrl-C" in dashboard.line
    assert PASSWORD not in dashboard.line


@pytest.mark.slow
def test_overview_shows_workers_queues_and_sweeps(dashboard: Served, farm: dict[str, Any]) -> None:
    page = fetch(dashboard.base + "/")
    assert page.status == 200, page.body
    assert page.headers["content-type"].startswith("text/html")
    body = page.body
    assert '<meta http-equiv="refresh" content="3">' in body
    # workers: who, where, what they run (job, workload, epoch), the quarantined one with its reason, escaped
    assert "Workers (3 live, 1 quarantined)" in body
    assert "w&lt;i&gt;1&lt;/i&gt;" in body and HOSTILE_WORKER not in body
    assert "lab-&lt;b&gt;host&lt;/b&gt;" in body
    assert farm["running"][:12] in body and "fashion_mnist_mlp" in body and "<td>2/3</td>" in body
    assert "quarantined: &lt;script&gt;alert(&#x27;q&#x27;)&lt;/script&gt; GPU fell off the bus" in body
    assert "idle-worker" in body
    # queues: messages waiting, consumers (the GPU queue's only worker is quarantined)
    assert '<td>farm.cpu</td><td class="num">7</td><td class="num">2</td>' in body
    assert '<td>farm.gpu</td><td class="num">0</td><td class="num">0</td>' in body
    # sweeps, newest first, each linked, with its progress and the compare / history links
    order = [body.index(f'href="/sweep/{sid}"') for sid in (LIVE, ODD, SECOND, FIRST)]
    assert order == sorted(order)
    assert "Sweeps (5)" in body
    assert 'aria-label="0 of 150 finished: 0 done, 1 running, 149 queued' in body
    assert 'aria-label="8 of 8 finished: 8 done' in body
    assert f'href="/compare?a={FIRST}&amp;b={SECOND}"' in body
    assert 'href="/history?name=nightly"' in body


@pytest.mark.slow
def test_markup_from_redis_is_shown_never_obeyed(dashboard: Served) -> None:
    body = fetch(dashboard.base + "/").body
    assert "<script>alert" not in body and "<b>bold</b>" not in body and "<img src=x>" not in body
    assert "&lt;script&gt;alert(&quot;sweep&quot;)&lt;/script&gt;&lt;b&gt;bold&lt;/b&gt;" in body
    assert 'href="/sweep/evil%22%3E%3Cimg%20src%3Dx%3E-0000000001"' in body
    sweep = fetch(dashboard.base + f"/sweep/{ODD}").body
    assert "<script>alert" not in sweep and "<b>bold</b>" not in sweep
    assert "Sweep &lt;script&gt;" in sweep


@pytest.mark.slow
def test_a_finished_sweep_shows_its_progress_jobs_and_report(dashboard: Served, farm: dict[str, Any]) -> None:
    page = fetch(dashboard.base + f"/sweep/{FIRST}")
    assert page.status == 200, page.body
    body = page.body
    assert 'http-equiv="refresh"' not in body  # settled: it does not reload
    assert "8 of 8 finished: 8 done, 0 running, 0 queued, 0 failed" in body
    assert body.count("<tr><td><code>") == 8 and "jobs 1–8 of 8" in body
    assert f"Benchmark report: {FIRST}" in body and body.count("<svg") >= 3  # the report, charts and all
    assert body.index('id="progress"') < body.index('id="throughput"') < body.index('id="jobs"')
    assert f'href="/compare?a={FIRST}' not in body  # the first of its name: nothing before it to compare with
    second = fetch(dashboard.base + f"/sweep/{SECOND}").body
    assert f'href="/compare?a={FIRST}&amp;b={SECOND}"' in second


@pytest.mark.slow
def test_the_report_alone_is_the_page_farm_report_writes(dashboard: Served, farm: dict[str, Any]) -> None:
    from farm.reports.aggregate import aggregate, columns_frame
    from farm.reports.html_sweep import report_html
    from farm.reports.markdown import report_title
    from farm.rowstore import sweep_columns

    page = fetch(dashboard.base + f"/sweep/{FIRST}/report")
    assert page.status == 200
    frame = columns_frame(sweep_columns(farm["store"], FIRST))
    assert page.body == report_html(aggregate(frame), frame, title=report_title(frame))


@pytest.mark.slow
def test_a_live_sweep_reloads_and_pages_its_jobs(dashboard: Served, farm: dict[str, Any]) -> None:
    body = fetch(dashboard.base + f"/sweep/{LIVE}").body
    assert '<meta http-equiv="refresh" content="3">' in body
    assert "0 of 150 finished: 0 done, 1 running, 149 queued, 0 failed" in body
    assert "No job has finished yet" in body
    assert body.count("<tr><td><code>") == 100 and "jobs 1–100 of 150" in body
    assert f'href="/sweep/{LIVE}?page=2"' in body
    assert farm["running"][:16] in body and "<td>2/3</td>" in body
    second = fetch(dashboard.base + f"/sweep/{LIVE}?page=2").body
    assert second.count("<tr><td><code>") == 50 and "jobs 101–150 of 150" in second


@pytest.mark.slow
def test_json_endpoints(dashboard: Served, farm: dict[str, Any]) -> None:
    overview = json.loads(fetch(dashboard.base + "/api/overview").body)
    assert [s["sweep_id"] for s in overview["sweeps"]][:4] == [LIVE, HOSTILE_ID, ODD, SECOND]
    assert {w["name"] for w in overview["workers"]} == {HOSTILE_WORKER, "gpu-worker", "idle-worker"}
    assert {q["name"]: q["waiting"] for q in overview["queues"]} == {"farm.cpu": 7, "farm.gpu": 0}
    live = json.loads(fetch(dashboard.base + f"/api/sweep/{LIVE}").body)
    assert live["counts"]["running"] == 1 and live["counts"]["queued"] == 149 and len(live["jobs"]) == 100
    missing = fetch(dashboard.base + "/api/sweep/no-such-sweep")
    assert missing.status == 404 and json.loads(missing.body) == {"error": "no such sweep"}


@pytest.mark.slow
def test_compare_and_history_pages(dashboard: Served) -> None:
    compare = fetch(dashboard.base + f"/compare?a={FIRST}&b={SECOND}")
    assert compare.status == 200, compare.body
    assert f"farm compare: {FIRST} (A) → {SECOND} (B), steady_samples_per_s" in compare.body
    assert '<header class="dash-top">' in compare.body and "<svg" in compare.body
    history = fetch(dashboard.base + "/history?name=nightly")
    assert history.status == 200, history.body
    assert f"benchfarm history: 2 sweep(s), {FIRST} … {SECOND}" in history.body
    assert fetch(dashboard.base + "/compare?a=" + FIRST).status == 400
    assert fetch(dashboard.base + f"/compare?a={FIRST}&b=no-such-sweep").status == 404
    assert fetch(dashboard.base + f"/compare?a={FIRST}&b={SECOND}&metric=bogus").status == 400
    assert fetch(dashboard.base + "/history?name=no-such-name").status == 404


@pytest.mark.slow
def test_unknown_sweep_and_page_are_404_pages(dashboard: Served) -> None:
    missing = fetch(dashboard.base + "/sweep/no-such-sweep")
    assert missing.status == 404
    assert "This farm has no sweep &#x27;no-such-sweep&#x27;." in missing.body and 'href="/"' in missing.body
    assert fetch(dashboard.base + "/sweep/no-such-sweep/report").status == 404
    assert fetch(dashboard.base + "/no/such/page").status == 404


@pytest.mark.slow
def test_only_get_and_head_are_served(dashboard: Served) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        answer = fetch(dashboard.base + "/", method=method)
        assert answer.status == 405, method
        assert answer.headers["allow"] == "GET, HEAD"
    head = fetch(dashboard.base + "/", method="HEAD")
    assert head.status == 200 and head.body == ""


@pytest.mark.slow
def test_every_answer_carries_the_security_headers(dashboard: Served) -> None:
    for path in ("/", f"/sweep/{FIRST}", "/no/such/page", "/api/overview"):
        headers = fetch(dashboard.base + path).headers
        assert "script-src" not in headers["content-security-policy"]
        assert headers["content-security-policy"].startswith("default-src 'none'")
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "no-referrer"
        assert "server" not in headers


@pytest.mark.slow
def test_a_foreign_host_name_is_refused_on_loopback(dashboard: Served) -> None:
    """DNS rebinding: a page of evil.example that resolves its name to 127.0.0.1 reads nothing."""
    answer = fetch(dashboard.base + "/", headers={"Host": f"evil.example:{dashboard.port}"})
    assert answer.status == 403
    assert "nightly" not in answer.body
    assert fetch(dashboard.base + "/", headers={"Host": f"localhost:{dashboard.port}"}).status == 200


@pytest.mark.slow
def test_the_broker_password_never_shows(dashboard: Served, farm: dict[str, Any]) -> None:
    seen = [dashboard.line]
    for path in (
        "/",
        "/api/overview",
        f"/sweep/{FIRST}",
        f"/sweep/{LIVE}",
        f"/api/sweep/{LIVE}",
        f"/compare?a={FIRST}&b={SECOND}",
        "/history?name=nightly",
        "/sweep/no-such-sweep",
    ):
        answer = fetch(dashboard.base + path)
        seen += [answer.body, json.dumps(answer.headers)]
    text = "\n".join(seen)
    assert PASSWORD not in text
    assert ":***@" in text  # the farm is named, its password masked


# ------------------------------------------------------------------------------------------------ the token
@pytest.mark.slow
def test_off_loopback_a_token_is_required(farm: dict[str, Any]) -> None:
    served = start_dashboard(farm["env"], "--host", "0.0.0.0")  # noqa: S104 - the rule under test
    try:
        token = re.search(r"\?token=([\w-]+)", served.printed_url)
        assert token is not None, served.line
        assert "bound to 0.0.0.0" in served.line
        secret = token.group(1)
        refused = fetch(served.base + "/")
        assert refused.status == 401
        assert "nightly" not in refused.body and ":***@" not in refused.body  # nothing of the farm
        assert fetch(served.base + f"/sweep/{FIRST}").status == 401
        assert fetch(served.base + "/?token=wrong").status == 403
        assert fetch(served.base + "/", headers={"Authorization": "Bearer wrong"}).status == 403
        # ?token= once: a cookie, and the same address without the token
        shown = fetch(served.base + f"/sweep/{FIRST}?page=1&token={secret}")
        assert shown.status == 303
        assert shown.headers["location"] == f"/sweep/{FIRST}?page=1"
        cookie = shown.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and secret not in cookie
        value = cookie.split(";", 1)[0]
        assert fetch(served.base + "/", headers={"Cookie": value}).status == 200
        assert fetch(served.base + "/", headers={"Cookie": f"{COOKIE}=forged"}).status == 401
        assert fetch(served.base + "/", headers={"Authorization": f"Bearer {secret}"}).status == 200
        assert fetch(served.base + "/", method="POST", headers={"Authorization": f"Bearer {secret}"}).status == 405
    finally:
        code, _, err = served.stop()
    assert code in (0, 130), err
    assert "Traceback" not in err


@pytest.mark.slow
def test_a_given_token_is_required_and_not_printed(farm: dict[str, Any]) -> None:
    env = {**farm["env"], "FARM_DASHBOARD_TOKEN": "lab-token-123"}
    served = start_dashboard(env)
    try:
        assert "lab-token-123" not in served.line and served.printed_url.endswith(f":{served.port}/")
        assert fetch(served.base + "/").status == 401
        assert fetch(served.base + "/", headers={"Authorization": "Bearer lab-token-123"}).status == 200
    finally:
        code, _, err = served.stop()
    assert code in (0, 130) and "Traceback" not in err


# ------------------------------------------------------------------------------------------------ the command
@pytest.mark.parametrize("args", [[], ["--help"]])
def test_without_the_extra_it_fails_in_one_line(args: list[str], tmp_path: Path) -> None:
    """Starlette hidden from the interpreter: the command says what to install, in one line, exit 1 (its help
    still works: it needs nothing of the extra)."""
    code = f"""
import sys, runpy
class Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("starlette", "uvicorn"):
            raise ModuleNotFoundError(f"No module named {{name!r}}")
        return None
sys.meta_path.insert(0, Hide())
sys.argv = ["farm", "dashboard", *{args!r}]
runpy.run_module("cli.main", run_name="__main__")
"""
    env = farm_env("redis://127.0.0.1:1/0", tmp_path)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    if args:
        assert out.returncode == 0 and "--token" in out.stdout, out.stderr
        return
    assert out.returncode == 1, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr
    assert lines[0].startswith("error: ") and lines[0].endswith("pip install 'benchfarm[dashboard]'")


@pytest.mark.parametrize("args", [["--help"], ["status", "--broker", "redis://127.0.0.1:1/0"]])
def test_other_commands_never_import_the_web_stack(args: list[str], tmp_path: Path) -> None:
    code = f"""
import atexit, json, runpy, sys
atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))
sys.argv = ["farm", *{args!r}]
runpy.run_module("cli.main", run_name="__main__")
"""
    env = farm_env("redis://127.0.0.1:1/0", tmp_path)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    modules = json.loads(out.stderr.strip().splitlines()[-1])
    heavy = [
        m for m in modules if m.split(".")[0] in ("starlette", "uvicorn", "anyio") or m.startswith("farm.dashboard")
    ]
    assert heavy == []


# ------------------------------------------------------------------------------------------------ in process
@pytest.mark.parametrize(
    "host, loopback",
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),  # noqa: S104
        ("::", False),
        ("10.1.2.3", False),
        ("lab-host.example", False),
        ("", False),
    ],
)
def test_the_loopback_rule(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    token, made = choose_token(host, None)
    assert (token is None) is loopback and made is (not loopback)
    assert choose_token(host, "given") == ("given", False)


def test_host_names_from_host_headers() -> None:
    assert host_name("localhost:8765") == "localhost"
    assert host_name("[::1]:8765") == "::1"
    assert host_name("127.0.0.1") == "127.0.0.1"


def test_the_verdicts() -> None:
    open_ = Access(None)
    assert open_.judge("GET", "/", "", {"host": "127.0.0.1:1"}).status == 0
    assert open_.judge("GET", "/", "", {"host": "evil.example"}).status == 403
    assert open_.judge("POST", "/", "", {"host": "127.0.0.1:1"}).status == 405
    guarded = Access("tok")
    assert guarded.judge("GET", "/", "", {}).status == 401
    assert guarded.judge("GET", "/", "token=nope", {}).status == 403
    assert guarded.judge("GET", "/", "", {"authorization": "Bearer tok"}).status == 0
    assert guarded.judge("GET", "/", "", {"authorization": "bearer tok"}).status == 0
    assert guarded.judge("GET", "/", "", {"cookie": f"{COOKIE}={session_value('tok')}"}).status == 0
    assert guarded.judge("GET", "/", "", {"cookie": "\x00garbage;;=="}).status == 401
    assert guarded.judge("GET", "/", "", {"authorization": "Bearer tök"}).status == 403  # not ASCII: no crash
    redirect = guarded.judge("GET", "//evil.example/x", "a=1&token=tok", {})
    assert redirect.status == 303 and redirect.location == "/evil.example/x?a=1"  # stays on this origin
    assert session_value("tok") != "tok" and session_value("tok") != session_value("other")


def test_reads_page_the_sweeps_and_skip_a_damaged_worker_entry(redis_server: EmbeddedRedis) -> None:
    from farm.dashboard.reads import SWEEPS_PER_PAGE, Reader

    store = Store(redis.Redis.from_url(redis_server.url, decode_responses=True))
    for i in range(SWEEPS_PER_PAGE + 3):
        store.save_sweep(f"s{i:03d}-0", {"name": f"s{i:03d}"}, [])
    reader = Reader(store, live_s=1.0)
    first, last = reader.overview(1), reader.overview(2)
    assert (first.sweep_total, first.pages, len(first.sweeps)) == (SWEEPS_PER_PAGE + 3, 2, SWEEPS_PER_PAGE)
    assert first.sweeps[0].sweep_id == f"s{SWEEPS_PER_PAGE + 2:03d}-0"  # newest first
    assert [s.sweep_id for s in last.sweeps] == ["s002-0", "s001-0", "s000-0"]
    assert reader.overview(99).page == 2
    # a registry entry that is not JSON (a stranger's) is skipped, not a failed page
    store.register_worker("good", {"name": "good", "host": "h", "queues": []}, ttl_s=3600)
    store.register_worker("bad", {"name": "bad"}, ttl_s=3600)
    store.r.set(store.k("worker", "bad"), "{not json")
    assert [w.name for w in reader.overview(1).workers] == ["good"]


def test_counts_by_redis_and_by_pipeline_agree(redis_server: EmbeddedRedis) -> None:
    """``SORT_RO`` and the pipelined fallback count alike (a running job whose result is recorded counts as
    succeeded, a job never sent as not_enqueued); a user the ACL refuses ``SORT_RO`` gets the fallback; a job
    list of the wrong type counts as no job."""
    from farm.dashboard.counts import StateReader

    store = Store(redis.Redis.from_url(redis_server.url, decode_responses=True))
    finished_sweep(store, FIRST, "nightly", first_repeat=0, day=1, cpu_rate=100.0)
    live_sweep(store, jobs=12)
    ids = store.sweep_job_ids(FIRST)
    store.set_state(ids[0], JobStatus.running)  # its result is recorded: the state lags behind it
    store.r.delete(store.k("state", store.sweep_job_ids(LIVE)[-1]))  # never sent
    expected = {
        FIRST: {"succeeded": 8},
        LIVE: {"running": 1, "queued": 10, "not_enqueued": 1},
    }
    reader = StateReader(store)
    assert {sid: reader.counts(sid).by_state for sid in expected} == expected
    assert reader.server_side
    reader.server_side = False
    assert {sid: reader.counts(sid).by_state for sid in expected} == expected

    store.r.execute_command("ACL", "SETUSER", "looker", "on", "nopass", "~*", "+@all", "-sort_ro")
    looker = Store(redis.Redis.from_url(redis_server.url, username="looker", decode_responses=True))
    refused = StateReader(looker)
    assert refused.counts(LIVE).by_state == expected[LIVE] and not refused.server_side

    store.r.set(store.k("sweep", "broken-1", "jobs"), "not a list")
    assert StateReader(store).counts("broken-1").total == 0
