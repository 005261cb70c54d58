"""``farm dashboard``: the farm at a glance in a browser, read-only, refreshing by itself.

One idea per module:

- :mod:`~farm.dashboard.access`: who may read: the bind rule (loopback needs nothing, any other address a token),
  the token's ways in (``?token=`` once, then a cookie; or ``Authorization: Bearer``), the Host check;
- :mod:`~farm.dashboard.counts`: a sweep's jobs by state, counted by Redis itself (``SORT_RO``) and kept a few
  seconds, only for the sweeps shown;
- :mod:`~farm.dashboard.reads`: what the pages show, read from the store in a few batched round trips;
- :mod:`~farm.dashboard.pages`: the dashboard's own HTML, every stranger's text escaped;
- :mod:`~farm.dashboard.reports`: the report, compare and history pages: the very HTML ``farm report --html``,
  ``farm compare --html`` and ``farm history --html`` write, built from the same frames and kept while their
  sweeps do not move;
- :mod:`~farm.dashboard.app`: the Starlette app: the routes, GET and HEAD only, the security headers;
- :mod:`~farm.dashboard.server`: binding, the one printed line with the URL, uvicorn, Ctrl-C.

Starlette and uvicorn are the ``dashboard`` extra: only :mod:`~farm.dashboard.app` and
:mod:`~farm.dashboard.server` import them, and only ``farm dashboard`` imports those, so every other command stays
as light as it was. Nothing here writes to the farm: every read is a read (the counts use ``SORT_RO``, a read-only
command), and the app answers GET and HEAD only.
"""

from __future__ import annotations

import importlib

from farm.errors import FarmUnavailable

#: What to tell a user whose install lacks the extra (one line, exit 1).
DASHBOARD_EXTRA_MISSING = "farm dashboard needs Starlette and uvicorn: pip install 'benchfarm[dashboard]'"


class DashboardExtraMissing(FarmUnavailable):
    """Starlette or uvicorn is not installed: the dashboard cannot be served (an environment failure: one line,
    exit 1, like the HTML report without its plot extra)."""


def require_dashboard() -> None:
    """Raise :class:`DashboardExtraMissing` unless Starlette and uvicorn import; checked before the command
    touches Redis, so a missing extra is said at once. Imported, not only looked up: a half-installed package
    fails here, in one line, rather than later with a traceback."""
    for name in ("starlette", "uvicorn"):
        try:
            importlib.import_module(name)
        except ImportError:
            raise DashboardExtraMissing(DASHBOARD_EXTRA_MISSING) from None
