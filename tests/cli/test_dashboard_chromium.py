"""The dashboard as a person sees it: headless Chromium, driven over the DevTools protocol (the helper of
tests/cli/test_html_chromium.py), opens the overview and a finished sweep's page served by a real
``farm dashboard`` process. Each page must lay out what it shows, log no console error and no policy violation,
request nothing from another origin, and a screenshot of each must be a real, non-blank PNG.

Skipped, with the reason, when no Chromium binary is installed (``.ci/run`` installs it).
"""

from __future__ import annotations

import base64
import json
import re
import struct
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from farm.store import Store
from tests.cli import test_html_chromium
from tests.cli.test_dashboard import FIRST, LIVE, PASSWORD, Served, seed, start_dashboard
from tests.cli.test_html_chromium import BROWSER, DevTools
from tests.helpers import farm_env, throwaway_redis

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(BROWSER is None, reason="no chromium binary (apt-get install chromium; .ci/run installs it)"),
]


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with throwaway_redis(password=PASSWORD) as server, tempfile.TemporaryDirectory(prefix="dash-") as cache:
        seed(Store(redis.Redis.from_url(server.url, decode_responses=True)))
        # Pages reload every minute here: none reloads while the browser looks at it.
        dashboard = start_dashboard(farm_env(server.url, Path(cache)), "--refresh", "60")
        yield dashboard
        dashboard.stop()


def png_pixels(data: bytes) -> tuple[int, int, bytes]:
    """Width, height and the decompressed image data (filter bytes included) of a PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    idat, at = b"", 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind = data[at + 4 : at + 8]
        if kind == b"IDAT":
            idat += data[at + 8 : at + 8 + length]
        at += 12 + length
    return width, height, zlib.decompress(idat)


def assert_real_screenshot(data: bytes, path: Path) -> None:
    path.write_bytes(data)
    width, height, pixels = png_pixels(data)
    assert width == 1200 and height > 1000  # the window, less what headless keeps for itself
    assert len(set(pixels)) > 30  # text, tables and bars in many shades: not one flat colour


def visit(tools: DevTools, session: str, url: str, probe: str) -> tuple[dict[str, Any], bytes, list[dict[str, Any]]]:
    """Open ``url``, wait for its load, evaluate ``probe`` in it, take a screenshot: what the probe found, the
    PNG, and every event of the visit."""
    tools.events.clear()
    tools.send("Page.navigate", session, url=url)
    tools.wait_for("Page.loadEventFired")
    found = tools.send("Runtime.evaluate", session, returnByValue=True, expression=probe)
    assert "value" in found["result"], found  # the probe ran (an exception in it is shown here)
    shot = base64.b64decode(tools.send("Page.captureScreenshot", session, format="png")["data"])
    return found["result"]["value"], shot, list(tools.events)


def problems(events: list[dict[str, Any]], origin: str) -> dict[str, list[Any]]:
    """What must not happen on a visit: console errors and warnings, exceptions, failed loads, policy violations,
    requests to any other origin."""
    requests = [e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"]
    errors = [
        e["params"]
        for e in events
        if e["method"] in ("Runtime.exceptionThrown", "Network.loadingFailed")
        or (e["method"] == "Runtime.consoleAPICalled" and e["params"].get("type") in ("error", "warning", "assert"))
        or (e["method"] == "Log.entryAdded" and e["params"]["entry"].get("level") in ("error", "warning"))
    ]
    return {
        "elsewhere": [u for u in requests if not u.startswith(origin + "/")],
        "errors": errors,
        "policy": re.findall(r"Content.Security.Policy[^\"]{0,200}", json.dumps(events)),
    }


OVERVIEW_PROBE = """({
    title: document.title,
    heading: document.querySelector('h1').textContent,
    workers: document.querySelectorAll('#workers tbody tr').length,
    workerNames: [...document.querySelectorAll('#workers tbody tr td:first-child')].map(td => td.textContent),
    queues: document.querySelectorAll('#queues tbody tr').length,
    sweepLinks: [...document.querySelectorAll('#sweeps tbody a[href^="/sweep/"]')].map(a => a.getAttribute('href')),
    bars: [...document.querySelectorAll('#sweeps .dash-bar')].filter(b => b.getBoundingClientRect().width > 50).length,
    refresh: document.querySelector('meta[http-equiv="refresh"]')?.content,
    scripts: document.scripts.length,
    injected: document.querySelectorAll('#workers i, #sweeps b, img').length,
})"""

SWEEP_PROBE = """({
    heading: document.querySelector('h1').textContent,
    progress: document.querySelector('#progress').textContent,
    jobs: document.querySelectorAll('#jobs tbody tr').length,
    charts: [...document.querySelectorAll('figure > svg')].filter(s => s.getBBox().width > 100).length,
    wideBar: document.querySelector('#progress .dash-bar').getBoundingClientRect().width,
    refresh: document.querySelector('meta[http-equiv="refresh"]') !== null,
    scripts: document.scripts.length,
})"""


#: Every name resolves nowhere, as in tests/cli/test_html_chromium.py, except the dashboard's own address.
RESOLVER = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"


def test_overview_and_a_sweep_page_in_chromium(served: Served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert BROWSER is not None
    shared = test_html_chromium.flags
    monkeypatch.setattr(
        test_html_chromium,
        "flags",
        lambda profile: [RESOLVER if f.startswith("--host-resolver-rules") else f for f in shared(profile)],
    )
    tools = DevTools(BROWSER, tmp_path / "profile")
    try:
        target = tools.send("Target.createTarget", url="about:blank")["targetId"]
        session = tools.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            tools.send(f"{domain}.enable", session)
        overview, overview_shot, overview_events = visit(tools, session, served.base + "/", OVERVIEW_PROBE)
        sweep, sweep_shot, sweep_events = visit(tools, session, served.base + f"/sweep/{FIRST}", SWEEP_PROBE)
    finally:
        tools.close()

    assert overview["title"] == "farm dashboard" and overview["heading"].startswith("The farm at ")
    assert overview["workers"] == 3 and "w<i>1</i>" in overview["workerNames"]  # shown as text, not markup
    assert overview["queues"] == 2
    assert overview["sweepLinks"][0] == f"/sweep/{LIVE}" and f"/sweep/{FIRST}" in overview["sweepLinks"]
    assert overview["bars"] == 5 and overview["refresh"] == "60"
    assert overview["scripts"] == 0 and overview["injected"] == 0
    assert_real_screenshot(overview_shot, tmp_path / "overview.png")

    assert sweep["heading"] == f"Benchmark report: {FIRST}"
    assert "8 of 8 finished: 8 done" in sweep["progress"]
    assert sweep["jobs"] == 8 and sweep["charts"] >= 3 and sweep["wideBar"] > 500
    assert sweep["refresh"] is False and sweep["scripts"] == 0
    assert_real_screenshot(sweep_shot, tmp_path / "sweep.png")

    for events in (overview_events, sweep_events):
        assert problems(events, served.base) == {"elsewhere": [], "errors": [], "policy": []}
