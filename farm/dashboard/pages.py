"""The dashboard's own HTML: the overview, a sweep's progress and jobs, the pages that say no, and the strip that
tops the report, compare and history pages when the dashboard serves them.

Every value read from Redis is a stranger's text (a worker's name, a sweep's name, a job's error): it reaches
the page only through :func:`esc` (the same escaping as :func:`farm.reports.html_page.esc`, without importing
pandas for it), attributes included. Links are built here from ids quoted for a URL, then escaped.

The pages carry no script: the live ones reload themselves with ``<meta http-equiv="refresh">``, and their
Content-Security-Policy (also sent as a header by :mod:`farm.dashboard.app`) forbids every script and every
request to another origin. Progress bars are spans whose widths are inline styles.
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from urllib.parse import quote, urlencode

from farm.dashboard.counts import Counts
from farm.dashboard.reads import JOBS_PER_PAGE, JobRow, Overview, QueueRow, SweepDetail, SweepRow, WorkerRow

#: The page's own policy: its inline styles, links and images of its own origin; no script, no other origin.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'none'"

#: The dashboard's styles, prefixed ``dash-`` where they could meet a report's own.
CSS = """
:root{color-scheme:light}
body{font-family:'DejaVu Sans',Arial,Helvetica,sans-serif;margin:0;color:#1b1b1b;background:#fff;line-height:1.45}
main{max-width:1200px;margin:0 auto;padding:1rem 1.5rem 3rem}
h1{font-size:1.5rem;margin:.5rem 0 .6rem}h2{font-size:1.2rem;margin-top:1.8rem;border-bottom:1px solid #ddd}
.scroll{overflow-x:auto}table{border-collapse:collapse;font-size:.85rem;margin:.6rem 0}
caption{text-align:left;font-size:.9rem;color:#444;padding:.2rem 0}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}tbody tr:nth-child(even){background:#fafafa}td.num{text-align:right}
.muted{color:#666}.flag{color:#C0392B;font-weight:bold}code{background:#f4f4f4;padding:0 .2rem}
"""
DASH_CSS = """
.dash-top{background:#16324f;color:#fff;padding:.45rem 1.5rem;font-size:.9rem;display:flex;flex-wrap:wrap;
gap:.3rem 1.2rem;align-items:baseline}
.dash-top a{color:#fff;font-weight:bold;text-decoration:none}.dash-top .dash-where{color:#c8d6e5}
.dash-bar{display:flex;width:16rem;max-width:100%;height:.9rem;background:#e9ecef;border-radius:3px;overflow:hidden}
.dash-bar.dash-wide{width:100%;height:1.3rem}.dash-bar span{display:block;height:100%}
.dash-done{background:#009E73}.dash-failed{background:#C0392B}.dash-cancelled{background:#7f8c8d}
.dash-running{background:#0072B2}.dash-queued{background:#b8c4d0}
.dash-key span{display:inline-block;width:.8rem;height:.8rem;margin:0 .25rem 0 .8rem;vertical-align:middle}
.dash-pager{margin:.4rem 0}.dash-pager a,.dash-pager span{margin-right:1rem}
.dash-note{background:#f4f7fb;border-left:4px solid #0072B2;padding:.5rem 1rem;margin:.8rem 0}
td.num{text-align:right}
"""


def esc(v: object) -> str:
    """Escaped text of a value ("" for None), quotes included, for text and attributes alike."""
    return "" if v is None else html.escape(str(v), quote=True)


def sweep_href(sweep_id: str) -> str:
    return "/sweep/" + quote(sweep_id, safe="")


def history_href(name: str) -> str:
    return "/history?" + urlencode({"name": name})


def compare_href(a: str, b: str) -> str:
    return "/compare?" + urlencode({"a": a, "b": b})


def link(href: str, text: object) -> str:
    return f'<a href="{esc(href)}">{esc(text)}</a>'


def when(epoch: float | None) -> str:
    """Epoch seconds as ``2026-11-08 03:02:11 UTC`` ("" when unknown)."""
    if epoch is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def ago(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} days ago"


def top_strip(where: str, extra: str = "") -> str:
    """The dark strip at the top of every page the dashboard serves: home, which farm (its URL, masked by the
    caller), and ``extra`` (already markup)."""
    return (
        f'<header class="dash-top"><a href="/">farm dashboard</a>'
        f'<span class="dash-where">{esc(where)}</span>{extra}</header>\n'
    )


def document(title: str, body: str, *, where: str, refresh_s: int | None = None) -> str:
    """A whole dashboard page: head (charset, policy, styles, the refresh when live), the strip, ``body``."""
    refresh = f'<meta http-equiv="refresh" content="{int(refresh_s)}">\n' if refresh_s else ""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n{refresh}'
        f"<title>{esc(title)}</title>\n<style>{CSS}{DASH_CSS}</style>\n</head>\n<body>\n"
        f"{top_strip(where)}<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def splice(page: str, *, where: str, head: str = "", refresh_s: int | None = None, tail: str = "") -> str:
    """A report, compare or history page (``farm.reports.html_page.page_html``'s document, unchanged) with the
    dashboard's strip before its ``<main>``, ``head`` markup after its title, summary and contents, ``tail``
    before its footer, and the dashboard's styles (and the refresh, when live) in its head. Markup of another
    shape gets what fits: the strip first in its body, ``head`` at the top of its main part."""
    meta = f'<meta http-equiv="refresh" content="{int(refresh_s)}">\n' if refresh_s else ""
    page = page.replace("</head>", f"{meta}<style>{DASH_CSS}</style>\n</head>", 1)
    page = page.replace("<body>\n", "<body>\n" + top_strip(where), 1)
    if head:
        contents = page.find('<nav aria-label="contents">')
        end = page.find("</nav>\n", contents) if contents >= 0 else -1
        if end >= 0:
            at = end + len("</nav>\n")
            page = page[:at] + head + page[at:]
        else:
            page = page.replace("<main>\n", "<main>\n" + head, 1)
    if tail:
        at = page.rfind('<footer class="muted">')
        page = page[:at] + tail + page[at:] if at >= 0 else page.replace("</main>", tail + "</main>", 1)
    return page


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, caption: str = "", numeric: int = 0) -> str:
    """A table of cells that are already markup (escaped by the caller); ``numeric``: a bit mask of the columns
    aligned right."""
    head = "".join(f'<th scope="col">{esc(h)}</th>' for h in headers)
    body = []
    for row in rows:
        cells = "".join(f'<td class="num">{c}</td>' if numeric >> i & 1 else f"<td>{c}</td>" for i, c in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    cap = f"<caption>{caption}</caption>" if caption else ""
    return f'<div class="scroll"><table>{cap}<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


# ------------------------------------------------------------------------------------------------- progress
#: The bar's segments, in its order (the rest of the bar: jobs never sent).
SEGMENTS = ("done", "failed", "cancelled", "running", "queued")


def counts_text(c: Counts) -> str:
    parts = [f"{c.done:,} done", f"{c.running:,} running", f"{c.queued:,} queued", f"{c.failed:,} failed"]
    if c.cancelled:
        parts.append(f"{c.cancelled:,} cancelled")
    if c.not_enqueued:
        parts.append(f"{c.not_enqueued:,} not sent")
    return f"{c.finished:,} of {c.total:,} finished: " + ", ".join(parts)


def bar(c: Counts, *, wide: bool = False) -> str:
    """A stacked bar of the sweep's jobs: done, failed, cancelled, running, queued (the rest: not sent)."""
    total = c.total or 1
    spans = []
    for css, n in (
        ("done", c.done),
        ("failed", c.failed),
        ("cancelled", c.cancelled),
        ("running", c.running),
        ("queued", c.queued),
    ):
        if n:
            spans.append(f'<span class="dash-{css}" style="width:{100 * n / total:.3f}%"></span>')
    cls = "dash-bar dash-wide" if wide else "dash-bar"
    return f'<div class="{cls}" role="img" aria-label="{esc(counts_text(c))}">{"".join(spans)}</div>'


def bar_key() -> str:
    keys = "".join(f'<span class="dash-{name}"></span>{name}' for name in SEGMENTS)
    return f'<p class="dash-key muted">{keys}</p>'


def pager(path: str, page: int, pages: int, total: int, what: str, **params: str) -> str:
    """``« previous page  page 2 of 5 (240 sweeps)  next page »`` (nothing when one page holds everything)."""
    if pages <= 1:
        return ""

    def href(p: int) -> str:
        return path + "?" + urlencode({**params, "page": str(p)})

    parts = [link(href(page - 1), "« previous page") if page > 1 else ""]
    parts.append(f"<span>page {page:,} of {pages:,} ({total:,} {esc(what)})</span>")
    parts.append(link(href(page + 1), "next page »") if page < pages else "")
    return f'<nav class="dash-pager" aria-label="pages">{"".join(p for p in parts if p)}</nav>'


# ------------------------------------------------------------------------------------------------- overview
def _worker_doing(w: WorkerRow) -> str:
    if w.quarantined:
        return f'<span class="flag">quarantined: {esc(w.quarantined)}</span>'
    if not w.job_id:
        return '<span class="muted">idle</span>'
    what = esc(w.workload or "?") + (f" ({esc(w.device)}, {esc(w.backend)})" if w.device else "")
    job = f"<code>{esc(w.job_id[:12])}</code>"
    sweep = f" of {link(sweep_href(w.sweep_id), w.sweep_id)}" if w.sweep_id else ""
    note = f' <span class="muted">{esc(w.note)}</span>' if w.note else ""
    return f"{what} · job {job}{sweep}{note}"


def workers_section(workers: list[WorkerRow]) -> str:
    if not workers:
        body = '<p class="muted">No live worker: jobs wait in their queues until one starts (farm worker).</p>'
    else:
        rows = [
            [
                esc(w.name),
                esc(w.host),
                _worker_doing(w),
                esc(f"{w.epoch}/{w.epochs}") if w.job_id and not w.quarantined else "",
                esc(ago(w.heartbeat_age_s)),
                esc(", ".join(w.queues)),
            ]
            for w in workers
        ]
        body = table(["worker", "host", "running", "epoch", "heartbeat", "queues"], rows)
    quarantined = sum(1 for w in workers if w.quarantined)
    note = f", {quarantined} quarantined" if quarantined else ""
    return f'<section id="workers"><h2>Workers ({len(workers)} live{note})</h2>{body}</section>'


def queues_section(view: Overview) -> str:
    c = view.counters
    figures = (
        f"{c.outbox:,} owed to a queue (outbox) · {c.in_flight:,} published, not yet taken · {c.running:,} "
        f"running · {c.unacked:,} delivered, not yet acknowledged · {c.refused:,} messages refused by workers"
    )
    if not view.queues:
        body = '<p class="muted">No queue noted yet: a submit makes them.</p>'
    else:
        rows = [_queue_row(q) for q in view.queues]
        more = f" ({view.queues_left_out:,} more not shown)" if view.queues_left_out else ""
        body = table(["queue", "messages waiting", "live workers consuming"], rows, numeric=0b110, caption=esc(more))
    return f'<section id="queues"><h2>Queues</h2>{body}<p class="muted">{esc(figures)}</p></section>'


def _queue_row(q: QueueRow) -> list[str]:
    waiting = "not a list" if q.waiting is None else f"{q.waiting:,}"
    consumers = f"{q.consumers}" if q.consumers else '<span class="flag">0: no live worker serves it</span>'
    if q.consumers == 0 and not q.waiting:
        consumers = "0"
    return [esc(q.name), esc(waiting), consumers]


def _sweep_links(s: SweepRow) -> str:
    links = [link(history_href(s.name), "history")]
    if s.previous:
        links.append(link(compare_href(s.previous, s.sweep_id), "compare with previous"))
    return " · ".join(links)


def sweeps_section(view: Overview) -> str:
    if not view.sweeps:
        return '<section id="sweeps"><h2>Sweeps</h2><p class="muted">No sweep submitted yet.</p></section>'
    rows = []
    for s in view.sweeps:
        c = s.counts
        rows.append(
            [
                link(sweep_href(s.sweep_id), s.sweep_id),
                esc(s.name),
                esc(when(s.submitted_at)),
                bar(c),
                esc(f"{c.done:,}"),
                esc(f"{c.running:,}"),
                esc(f"{c.queued:,}"),
                esc(f"{c.failed:,}"),
                esc(f"{c.total:,}"),
                _sweep_links(s),
            ]
        )
    shown = f"newest first; {len(view.sweeps):,} of {view.sweep_total:,} shown"
    if view.pages > 1:
        shown += f" (page {view.page} of {view.pages}: {view.sweep_total - len(view.sweeps):,} more on other pages)"
    body = table(
        ["sweep", "name", "submitted", "progress", "done", "running", "queued", "failed", "jobs", "see also"],
        rows,
        numeric=0b0111110000,
        caption=esc(shown),
    )
    return (
        f'<section id="sweeps"><h2>Sweeps ({view.sweep_total:,})</h2>{bar_key()}{body}'
        f"{pager('/', view.page, view.pages, view.sweep_total, 'sweeps')}</section>"
    )


def overview_page(view: Overview, *, where: str, refresh_s: int | None) -> str:
    again = f"; refreshes every {refresh_s} s" if refresh_s else ""
    body = (
        f'<h1>The farm at {esc(when(view.read_at))}</h1><p class="muted">Read-only{esc(again)}. '
        f"{link('/api/overview', 'as JSON')}</p>"
        + workers_section(view.workers)
        + queues_section(view)
        + sweeps_section(view)
    )
    return document("farm dashboard", body, where=where, refresh_s=refresh_s)


# ------------------------------------------------------------------------------------------------- a sweep
#: States listed one per row on a sweep's page (the farm has seven).
MAX_STATES = 12


def sweep_head(d: SweepDetail, *, live: bool, refresh_s: int | None, report: str) -> str:
    """The top of a sweep's page: its name and links, its progress bar and per-state counts, and ``report``, a
    note about its report (already markup)."""
    links = [link(history_href(d.name), f"history of {d.name}")]
    if d.previous:
        links.append(link(compare_href(d.previous, d.sweep_id), f"compare with the previous {d.name}"))
    links.append(link("/api/sweep/" + quote(d.sweep_id, safe=""), "as JSON"))
    c = d.counts
    by_count = sorted(c.by_state.items(), key=lambda kv: -kv[1])
    rows = [[esc(s), esc(f"{n:,}")] for s, n in by_count[:MAX_STATES]]
    if len(by_count) > MAX_STATES:  # a state hash says what its writer wrote: a stranger's may say anything
        rest = sum(n for _, n in by_count[MAX_STATES:])
        rows.append([esc(f"{len(by_count) - MAX_STATES} other states"), esc(f"{rest:,}")])
    states = table(["state", "jobs"], rows, numeric=0b10)
    status = "settled: nothing queued or running"
    if live:
        status = f"live: refreshes every {refresh_s} s" if refresh_s else "live"
    return (
        f'<section id="progress" class="dash-progress"><h2>Sweep {esc(d.name)}: progress</h2>'
        f"<p><code>{esc(d.sweep_id)}</code> · submitted {esc(when(d.submitted_at))} · {' · '.join(links)}</p>"
        f'{bar(c, wide=True)}{bar_key()}<p>{esc(counts_text(c))} <span class="muted">({esc(status)}; '
        f"read at {esc(when(d.read_at))})</span></p>{states}{report}</section>\n"
    )


def _job_row(j: JobRow) -> list[str]:
    epoch = f"{j.epoch}/{j.epochs}" if j.epochs else ""
    state = esc(j.state) if j.state not in ("failed", "timed_out") else f'<span class="flag">{esc(j.state)}</span>'
    beat = ago(j.heartbeat_age_s)
    return [
        f"<code>{esc(j.job_id[:16])}</code>",
        esc(j.workload),
        esc(j.device),
        esc(j.backend),
        esc(j.batch_size or ""),
        esc(j.repeat),
        state,
        esc(j.worker),
        esc(epoch),
        esc(beat),
        esc(j.error),
    ]


JOB_HEADERS = [
    "job",
    "workload",
    "device",
    "backend",
    "batch",
    "repeat",
    "state",
    "worker",
    "epoch",
    "heartbeat",
    "error",
]


def jobs_section(d: SweepDetail) -> str:
    rows = [_job_row(j) for j in d.jobs]
    first = (d.page - 1) * JOBS_PER_PAGE + 1
    caption = f"jobs {first:,}–{first + len(d.jobs) - 1:,} of {d.job_total:,}, in queue order" if d.jobs else ""
    body = (
        table(
            JOB_HEADERS,
            rows,
            caption=esc(caption),
            numeric=0b110000,
        )
        if rows
        else '<p class="muted">This sweep lists no job.</p>'
    )
    pages = pager(sweep_href(d.sweep_id), d.page, d.pages, d.job_total, "jobs")
    return f'<section id="jobs"><h2>Jobs</h2>{pages}{body}{pages}</section>\n'


def sweep_page(d: SweepDetail, *, where: str, refresh_s: int | None, live: bool, report: str) -> str:
    """A sweep's page without its report (none yet, or it cannot be drawn here: ``report`` says why)."""
    body = f"<h1>Sweep {esc(d.name)}</h1>" + sweep_head(d, live=live, refresh_s=refresh_s, report=report)
    return document(f"sweep {d.sweep_id}", body + jobs_section(d), where=where, refresh_s=refresh_s if live else None)


# ------------------------------------------------------------------------------------------------- refusals
def message_page(status: int, title: str, message: str, *, where: str = "", home: bool = True) -> str:
    """A page that says no in one sentence (not found, bad request, unauthorized, the farm unreachable)."""
    back = f"<p>{link('/', 'Back to the overview')}</p>" if home else ""
    body = f"<h1>{esc(status)}: {esc(title)}</h1><p>{esc(message)}</p>{back}"
    return document(f"{status} {title}", body, where=where)
