"""``farm dashboard``: the farm at a glance in a browser, read-only, refreshing by itself (``farm.dashboard``).

Starlette and uvicorn are the ``dashboard`` extra, imported by this command only: without them it says what to
install in one line.
"""

from __future__ import annotations

from pathlib import Path

import typer

from cli.common import BrokerOption, RunDirOption, friendly_errors, settings

EXIT_INTERRUPTED = 130


@friendly_errors
def dashboard_cmd(
    host: str = typer.Option(
        "127.0.0.1",
        "--host",
        help="Address to listen on. Loopback (127.0.0.0/8, ::1, localhost) needs no token; any other address "
        "(0.0.0.0, a lab interface) requires one.",
    ),
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="Port to listen on; 0 picks a free one."),
    token: str = typer.Option(
        None,
        "--token",
        envvar="FARM_DASHBOARD_TOKEN",
        help="The token requests must show (required off loopback; default: a random one, printed in the URL). "
        "Prefer the environment variable: a flag shows in the process list.",
        show_default=False,
    ),
    refresh: int = typer.Option(
        5, "--refresh", min=0, help="Seconds between reloads of the live pages (0: they do not reload)."
    ),
    broker: str = BrokerOption,
    run_dir: Path = RunDirOption,
) -> None:
    """Serve a read-only web page of the farm: live workers and what each runs, the queues and how many messages
    wait in each, every sweep's progress (newest first), a sweep's jobs and its report, and the pages of farm
    compare --html and farm history --html. Live pages reload every --refresh seconds.

    It listens on 127.0.0.1:8765 by default and prints one line with the URL to open. Off loopback it requires a
    token (--token, FARM_DASHBOARD_TOKEN, or a random one printed in the URL). It only reads: nothing on the
    pages changes the farm. Ctrl-C stops it.
    """
    from farm.dashboard import require_dashboard

    require_dashboard()  # before Redis: a missing extra is said at once
    cfg = settings(run_dir, broker_url=broker)
    from farm.dashboard.server import serve
    from farm.store import Store

    store = Store.from_settings(cfg)
    try:
        serve(store, cfg, host=host, port=port, token=token, refresh_s=refresh)
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
