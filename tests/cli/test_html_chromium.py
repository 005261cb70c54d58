"""The HTML report as a person sees it: headless Chromium (Debian's ``chromium``) opens the generated file from
disk. It must load with no console error and no network request, its charts must be there once it has loaded,
and a screenshot is taken.

Two ways in, both plain stdlib:

* the command line (``--dump-dom``, ``--screenshot``): the DOM after load has every chart and table, and the
  screenshot is a real PNG of the page;
* the DevTools protocol over ``--remote-debugging-pipe`` (NUL-separated JSON on file descriptors 3 and 4): every
  console message, exception, log entry and network request of the load is seen, so "no error, no request" is
  checked, not assumed. Name resolution is pointed nowhere (``--host-resolver-rules``) as well, so a request
  could not leave the machine even if one were made.

Skipped, with the reason, when no Chromium binary is installed (``.ci/run`` installs it).
"""

from __future__ import annotations

import base64
import json
import os
import re
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from farm.reports.aggregate import aggregate
from farm.reports.ratios import ratios
from tests.farm.test_html_report import HOSTILE, seed_like

BROWSER = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(
    BROWSER is None, reason="no chromium binary (apt-get install chromium; .ci/run installs it)"
)

#: Seconds any one browser step may take on a loaded 2-core machine before the test gives up.
TIMEOUT = 90


def flags(profile: Path) -> list[str]:
    """Headless, isolated (a profile of its own), offline, and quiet about what a container lacks."""
    return [
        "--headless",
        "--no-sandbox",  # tests may run as root, where Chromium's sandbox refuses to start
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--metrics-recording-only",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={profile}",
        "--window-size=1200,1600",
    ]


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seed-like report with every section, a hostile device name and a ratio chart, written to disk."""
    from farm.reports.html_sweep import write_report_html

    df = seed_like(backends=("tensorflow", "jax"), gpu_name=f"H100 {HOSTILE}")
    path = tmp_path_factory.mktemp("html") / "report.html"
    write_report_html(aggregate(df), df, path, title="seed sweep", ratios=ratios(df, "backend", "tensorflow"))
    return path


def test_dom_after_load_has_every_chart(page: Path, tmp_path: Path) -> None:
    assert BROWSER is not None
    out = subprocess.run(
        [BROWSER, *flags(tmp_path / "profile"), "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    dom = out.stdout
    assert dom.count("<svg") == 5 and dom.count("<figure>") == 5 and dom.count("<figcaption>") == 5
    assert dom.count("<table>") >= 4
    assert "the GPU trains cifar10_mlp" in dom
    assert "<script" not in dom  # the hostile name stayed text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom


def test_screenshot_is_taken(page: Path, tmp_path: Path) -> None:
    assert BROWSER is not None
    shot = tmp_path / "report.png"
    out = subprocess.run(
        [BROWSER, *flags(tmp_path / "profile"), f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1200, 1600)
    assert len(data) > 20_000  # charts and text, not a blank page


# --------------------------------------------------------------------------------------------- DevTools pipe
class DevTools:
    """Chromium driven over ``--remote-debugging-pipe``: it reads commands on fd 3 and writes replies and events
    on fd 4, each a JSON message ended by a NUL byte."""

    def __init__(self, browser: str, profile: Path) -> None:
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def wire() -> None:  # in the child, before exec: its fds 3 and 4 are the pipes' ends
            a, b = os.dup(to_child_r), os.dup(from_child_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [browser, *flags(profile), "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            # Kept open through exec: 3 and 4 as wire() sets them (Popen closes the other fds after preexec_fn).
            pass_fds=(3, 4, to_child_r, from_child_w),
            preexec_fn=wire,  # not thread-safe in general; this test starts no threads
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send a command and wait for its reply (events that arrive meanwhile are kept in ``events``)."""
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        for reply in self._messages(time.monotonic() + TIMEOUT):
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
        raise TimeoutError(f"no reply to {method}")

    def wait_for(self, method: str) -> dict[str, Any]:
        for event in list(self.events):
            if event.get("method") == method:
                return event
        for _ in self._messages(time.monotonic() + TIMEOUT):
            if self.events and self.events[-1].get("method") == method:
                return self.events[-1]
        raise TimeoutError(f"no {method} event")

    def _messages(self, deadline: float) -> Iterator[dict[str, Any]]:
        while time.monotonic() < deadline:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "method" in msg:
                    self.events.append(msg)
                yield msg
            ready, _, _ = select.select([self._from_child], [], [], 0.5)
            if ready:
                chunk = os.read(self._from_child, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the pipe")
                self._buf += chunk
            elif self.proc.poll() is not None:
                raise RuntimeError(
                    f"chromium exited: {self.proc.stderr.read().decode()[-2000:] if self.proc.stderr else ''}"
                )

    def close(self) -> None:
        try:
            os.write(self._to_child, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0")
            self.proc.wait(timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        finally:
            os.close(self._to_child)
            os.close(self._from_child)
            if self.proc.stderr:
                self.proc.stderr.close()


def test_loads_with_no_console_error_and_no_network_request(page: Path, tmp_path: Path) -> None:
    assert BROWSER is not None
    tools = DevTools(BROWSER, tmp_path / "profile")
    try:
        target = tools.send("Target.createTarget", url="about:blank")["targetId"]
        session = tools.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            tools.send(f"{domain}.enable", session)
        tools.send("Page.navigate", session, url=page.as_uri())
        tools.wait_for("Page.loadEventFired")
        found = tools.send(
            "Runtime.evaluate",
            session,
            returnByValue=True,
            expression="""({
                svgs: document.querySelectorAll('figure > svg').length,
                drawn: [...document.querySelectorAll('figure > svg')].filter(s => s.getBBox().width > 100).length,
                texts: document.querySelectorAll('svg text').length,
                tables: document.querySelectorAll('table').length,
                summary: document.getElementById('summary').textContent,
                scripts: document.scripts.length,
                resources: performance.getEntriesByType('resource').length,
            })""",
        )["result"]["value"]
        shot = base64.b64decode(tools.send("Page.captureScreenshot", session, format="png")["data"])
        (tmp_path / "devtools.png").write_bytes(shot)
    finally:
        tools.close()

    assert found["svgs"] == 5 and found["drawn"] == 5, found  # every chart laid out with a real size
    assert found["texts"] > 50 and found["tables"] >= 4
    assert "faster than the CPU" in found["summary"]
    assert found["scripts"] == 0 and found["resources"] == 0
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"

    events = tools.events
    requests = [e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"]
    assert requests == [page.as_uri()], requests  # the page itself, nothing else
    errors = [
        e["params"]
        for e in events
        if e["method"] in ("Runtime.exceptionThrown", "Network.loadingFailed")
        or (e["method"] == "Runtime.consoleAPICalled" and e["params"].get("type") in ("error", "warning", "assert"))
        or (e["method"] == "Log.entryAdded" and e["params"]["entry"].get("level") in ("error", "warning"))
    ]
    assert errors == [], errors
    console = [e for e in events if e["method"] == "Runtime.consoleAPICalled"]
    assert console == []
    assert not re.search(r"Content.Security.Policy", json.dumps(events))  # the CSP had nothing to refuse
