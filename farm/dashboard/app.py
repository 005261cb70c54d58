"""The dashboard's Starlette app: its routes, the guard in front of them, the headers on every answer.

Routes (GET and HEAD; anything else is 405 before it reaches one):

- ``/``: the overview: live workers and what each runs, the queues, the sweeps (newest first, a page at a time);
- ``/sweep/{id}``: a sweep's progress and a page of its jobs, with its report once it has results;
  ``/sweep/{id}/report``: the report alone, exactly as ``farm report --html`` writes it;
- ``/compare?a=SWEEP&b=SWEEP`` (``&metric=``) and ``/history?name=NAME``: ``farm compare --html``'s and
  ``farm history --html``'s pages;
- ``/api/overview`` and ``/api/sweep/{id}``: what the overview and a sweep's page show, as JSON, for scripts.

Every endpoint is a plain function: Starlette runs it in its thread pool, so the blocking Redis client never
stalls the event loop. A Redis that fails mid-request gives a 503 page of one line (URLs in it masked), never a
traceback. The guard (:class:`Guard`) applies :mod:`farm.dashboard.access`'s rule to every request and adds the
headers every answer carries: the Content-Security-Policy (no script, nothing from another origin), no sniffing,
no framing, no referrer, no caching.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import redis
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from farm.dashboard import pages
from farm.dashboard.access import Access
from farm.dashboard.reads import Reader, SweepDetail
from farm.dashboard.reports import MAX_HISTORY_SWEEPS, REDRAW_S, BadRequest, ReportPages
from farm.reports.files import OutputError
from farm.settings import mask_url
from farm.store import Store

log = logging.getLogger(__name__)

#: Headers on every answer (the policy also sits in each page's head).
SECURITY_HEADERS = [
    (b"content-security-policy", pages.CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


def one_line(e: BaseException) -> str:
    """An exception as one line, any URL in it masked (a client's message may quote the broker's)."""
    return " ".join(mask_url(w) if "://" in w else w for w in f"{type(e).__name__}: {e}".split())


def _page_number(request: Request) -> int:
    try:
        return max(1, int(request.query_params.get("page", "1")))
    except ValueError:
        return 1


class Dashboard:
    """The endpoints of one dashboard over one store."""

    def __init__(self, store: Store, *, where: str, refresh_s: int) -> None:
        self.store = store
        self.where = where
        self.refresh_s = refresh_s or None
        self.reader = Reader(store, live_s=max(1.0, float(refresh_s or 5) * 0.8))
        self.reports = ReportPages(store)

    def html(self, status: int, title: str, message: str) -> HTMLResponse:
        return HTMLResponse(pages.message_page(status, title, message, where=self.where), status_code=status)

    # -- pages ------------------------------------------------------------------------------------------------
    def overview(self, request: Request) -> Response:
        view = self.reader.overview(_page_number(request))
        return HTMLResponse(pages.overview_page(view, where=self.where, refresh_s=self.refresh_s))

    def overview_json(self, request: Request) -> Response:
        return JSONResponse(self.reader.overview(_page_number(request)).to_json())

    def sweep(self, request: Request) -> Response:
        ref = request.path_params["sweep_id"]
        sweep_id = self.reader.resolve(ref)
        if sweep_id is None:
            return self.html(404, "no such sweep", f"This farm has no sweep {ref!r}.")
        detail = self.reader.sweep(sweep_id, _page_number(request))
        counts = detail.counts
        live = not counts.settled
        refresh = self.refresh_s if live else None
        if not counts.finished:
            note = '<p class="dash-note">No job has finished yet: the report appears here with the first result.</p>'
            return self.bare_sweep(detail, live, note)
        try:
            report, drawn_at = self.reports.sweep_report(sweep_id, counts)
        except OutputError as e:  # no matplotlib here: the progress without the report
            return self.bare_sweep(detail, live, f'<p class="dash-note">{pages.esc(str(e))}</p>')
        except redis.RedisError:
            raise
        except Exception as e:  # rows a report cannot digest must not hide the sweep's progress (logged)
            log.exception("the report of sweep %s could not be drawn", sweep_id)
            why = f"The report could not be drawn: {one_line(e)}."
            return self.bare_sweep(detail, live, f'<p class="dash-note">{pages.esc(why)}</p>')
        href = pages.sweep_href(sweep_id) + "/report"
        note = (
            f'<p class="muted">The report below was drawn at {pages.esc(pages.when(drawn_at))}'
            + (f" (a live sweep's report is drawn again at most every {REDRAW_S:g} s)" if live else "")
            + f"; {pages.link(href, 'the report alone')}.</p>"
        )
        head = pages.sweep_head(detail, live=live, refresh_s=self.refresh_s, report=note)
        page = pages.splice(report, where=self.where, head=head, tail=pages.jobs_section(detail), refresh_s=refresh)
        return HTMLResponse(page)

    def bare_sweep(self, detail: SweepDetail, live: bool, note: str) -> Response:
        """A sweep's page without its report; ``note`` (markup) says why."""
        page = pages.sweep_page(detail, where=self.where, refresh_s=self.refresh_s, live=live, report=note)
        return HTMLResponse(page)

    def sweep_json(self, request: Request) -> Response:
        sweep_id = self.reader.resolve(request.path_params["sweep_id"])
        if sweep_id is None:
            return JSONResponse({"error": "no such sweep"}, status_code=404)
        return JSONResponse(self.reader.sweep(sweep_id, _page_number(request)).to_json())

    def report(self, request: Request) -> Response:
        ref = request.path_params["sweep_id"]
        sweep_id = self.reader.resolve(ref)
        if sweep_id is None:
            return self.html(404, "no such sweep", f"This farm has no sweep {ref!r}.")
        counts = self.reader.counts.get(sweep_id)
        if not counts.finished:
            return self.html(404, "no report yet", f"No job of sweep {sweep_id} has finished yet.")
        try:
            report, _ = self.reports.sweep_report(sweep_id, counts)
        except OutputError as e:
            return self.html(503, "no report here", str(e))
        return HTMLResponse(report)

    def compare(self, request: Request) -> Response:
        refs = [request.query_params.get("a", ""), request.query_params.get("b", "")]
        if not all(refs):
            return self.html(400, "two sweeps needed", "Name both sweeps: /compare?a=SWEEP&b=SWEEP.")
        ids = [self.reader.resolve(r) for r in refs]
        for ref, sid in zip(refs, ids, strict=True):
            if sid is None:
                return self.html(404, "no such sweep", f"This farm has no sweep {ref!r}.")
        a, b = str(ids[0]), str(ids[1])
        metric = request.query_params.get("metric", "steady_samples_per_s")
        try:
            page = self.reports.compare(a, b, (self.reader.counts.get(a), self.reader.counts.get(b)), metric)
        except BadRequest as e:
            return self.html(400, "cannot compare these", str(e))
        except OutputError as e:
            return self.html(503, "no comparison here", str(e))
        return HTMLResponse(pages.splice(page, where=self.where))

    def history(self, request: Request) -> Response:
        name = request.query_params.get("name", "")
        if not name:
            return self.html(400, "a name needed", "Name the sweeps to line up: /history?name=SWEEPNAME.")
        ids, total = self.reader.named(name, MAX_HISTORY_SWEEPS)
        if not ids:
            return self.html(404, "no such sweep", f"This farm has no sweep named {name!r}.")
        counts = [self.reader.counts.get(sid) for sid in ids]
        try:
            page = self.reports.history(name, ids, counts)
        except BadRequest as e:
            return self.html(400, "no history", str(e))
        except OutputError as e:
            return self.html(503, "no history here", str(e))
        head = ""
        if total > len(ids):
            head = f'<p class="dash-note">The newest {len(ids)} of the {total} sweeps named {pages.esc(name)}.</p>'
        return HTMLResponse(pages.splice(page, where=self.where, head=head))

    def favicon(self, request: Request) -> Response:
        return Response(status_code=204)  # browsers ask for one; answering keeps their consoles clean

    def not_found(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 404
        return self.html(status, "not here", f"The dashboard has no page {request.url.path!r}.")

    # -- the app ----------------------------------------------------------------------------------------------
    def routes(self) -> list[Route]:
        def route(path: str, endpoint: Callable[[Request], Response]) -> Route:
            return Route(path, self.guarded(endpoint), methods=["GET"])  # HEAD comes with GET

        return [
            route("/", self.overview),
            route("/api/overview", self.overview_json),
            route("/sweep/{sweep_id}", self.sweep),
            route("/sweep/{sweep_id}/report", self.report),
            route("/api/sweep/{sweep_id}", self.sweep_json),
            route("/compare", self.compare),
            route("/history", self.history),
            route("/favicon.ico", self.favicon),
        ]

    def guarded(self, endpoint: Callable[[Request], Response]) -> Callable[[Request], Response]:
        """``endpoint`` answering 503 with one line when Redis fails under it (a plain function: Starlette runs
        it in its thread pool)."""

        @functools.wraps(endpoint)
        def run(request: Request) -> Response:
            try:
                return endpoint(request)
            except redis.RedisError as e:
                return self.html(503, "the farm's Redis failed", one_line(e))

        return run


class Guard:
    """ASGI middleware: :class:`~farm.dashboard.access.Access`'s verdict on every request, then the security
    headers on every answer."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in have]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        raw = scope.get("raw_path") or quote(scope.get("path", "/")).encode()
        path = raw.decode("latin-1").split("?", 1)[0]
        query = scope.get("query_string", b"").decode("latin-1")
        verdict = self.access.judge(scope.get("method", "GET"), path, query, headers)
        if verdict.status == 0:
            await self.app(scope, receive, secured)
            return
        response: Response
        if verdict.status == 303:
            response = RedirectResponse(verdict.location, status_code=303)
            response.headers["set-cookie"] = verdict.set_cookie
        else:
            title = {401: "token needed", 403: "refused", 405: "read-only"}.get(verdict.status, "refused")
            body = pages.message_page(verdict.status, title, verdict.reason, home=verdict.status == 405)
            response = HTMLResponse(body, status_code=verdict.status)
            if verdict.status == 405:
                response.headers["allow"] = "GET, HEAD"
            if verdict.status == 401:
                response.headers["www-authenticate"] = 'Bearer realm="farm dashboard"'
        await response(scope, receive, secured)


def build_app(store: Store, *, where: str, token: str | None, refresh_s: int) -> Starlette:
    """The dashboard over ``store``: ``where`` names the farm on every page (a masked URL), ``token`` is the one
    requests must show (None: loopback, none needed), ``refresh_s`` how often live pages reload (0: never)."""
    dashboard = Dashboard(store, where=where, refresh_s=refresh_s)
    handlers: dict[Any, Any] = {404: dashboard.not_found, 405: dashboard.not_found}
    guard = Middleware(Guard, access=Access(token))
    return Starlette(routes=dashboard.routes(), middleware=[guard], exception_handlers=handlers)
