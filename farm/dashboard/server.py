"""Serving the dashboard: the socket, the one line that says where to open it, uvicorn, and a clean stop.

The socket is bound here, before uvicorn starts, so that ``--port 0`` (the system picks a free port) can be said
in the printed URL, and a port in use or a host that does not resolve is one line (exit 1), not a traceback.
uvicorn runs quiet (warnings only, no access log, no ``Server`` header), trusts no proxy headers (a request's
address is the socket's), speaks plain HTTP/1.1 through h11 and has no websockets. Ctrl-C (SIGINT) or SIGTERM
stop it gracefully: open connections get a few seconds to finish.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from urllib.parse import quote

from farm.dashboard import require_dashboard
from farm.dashboard.access import choose_token, is_loopback
from farm.errors import FarmUnavailable
from farm.settings import FarmSettings, mask_url
from farm.store import Store

#: Seconds open connections get to finish when the dashboard is stopped.
GRACEFUL_S = 3


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free one)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise FarmUnavailable(f"cannot listen on {host!r}: {e.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as e:
        sock.close()
        raise FarmUnavailable(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock


def url_for(host: str, port: int, token: str | None = None) -> str:
    """The URL to open: the host as given (a wildcard address replaced by this machine's name), the port bound,
    and the token when it is one made here."""
    shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else host  # noqa: S104 - recognised, not bound
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/" + (f"?token={quote(token, safe='')}" if token else "")


def serve(
    store: Store,
    settings: FarmSettings,
    *,
    host: str,
    port: int,
    token: str | None,
    refresh_s: int,
    say: Callable[[str], None] = lambda line: print(line, flush=True),
) -> None:
    """Serve the dashboard of ``store`` until stopped; ``say`` prints the one line with the URL. Raises
    :class:`farm.errors.FarmUnavailable` (one line) when the socket cannot be had, KeyboardInterrupt on Ctrl-C."""
    require_dashboard()
    import uvicorn

    from farm.dashboard.app import build_app

    token, made = choose_token(host, token)
    sock = listen(host, port)
    try:
        bound = sock.getsockname()[1]
        app = build_app(store, where=mask_url(settings.broker_url), token=token, refresh_s=refresh_s)
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            server_header=False,
            proxy_headers=False,
            http="h11",
            ws="none",
            lifespan="off",
            loop="asyncio",
            timeout_graceful_shutdown=GRACEFUL_S,
        )
        server = uvicorn.Server(config)
        if token is None:
            access = "no token: loopback only"
        elif made:
            access = "the token is in the URL: open it once, the browser keeps a cookie"
        else:
            access = "token required: add ?token=YOUR_TOKEN once, or send Authorization: Bearer"
        where = "" if is_loopback(host) else f"bound to {host}:{bound}; "
        url = url_for(host, bound, token if made else None)
        say(f"farm dashboard: {url} ({where}{access}; read-only; Ctrl-C stops it)")
        server.run(sockets=[sock])
    finally:
        sock.close()
