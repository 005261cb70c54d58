"""Who may read the dashboard: the bind rule, the token and its ways in, the Host check. Plain functions over
strings (no web framework here), so the rule is tested and read in one place.

The rule:

- Bound to a loopback address (``127.0.0.0/8``, ``::1``, or the name ``localhost``) the dashboard answers
  without a token, since only this machine can reach it, but only to requests whose ``Host`` names a loopback
  address: a web page elsewhere that points its own name at 127.0.0.1 (DNS rebinding) is refused, so it cannot
  read the farm through a visitor's browser.
- Bound to any other address (``0.0.0.0``, a lab interface, a host name) it requires a token: the one given
  (``--token`` or ``FARM_DASHBOARD_TOKEN``), else a random one made at start and printed in the URL. A token given
  on loopback is required as well.
- A request shows the token as ``?token=`` (once: the answer sets an HttpOnly, SameSite=Strict cookie and
  redirects to the same address without it, so it leaves the address bar and the history), as that cookie, or as
  ``Authorization: Bearer`` (scripts). Without one: 401; with a wrong one: 403. Tokens are compared with
  :func:`hmac.compare_digest` on their bytes; the cookie holds an HMAC of the token, never the token itself.
- Only GET and HEAD are served (405 otherwise), before any of this: nothing can change the farm through it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlencode

#: The environment variable that gives the token (``--token`` wins).
TOKEN_ENV = "FARM_DASHBOARD_TOKEN"  # noqa: S105 - the variable's name, not a token
#: The cookie that carries the session once the token was shown.
COOKIE = "farm_dashboard"
#: The methods served: reading only.
METHODS = frozenset({"GET", "HEAD"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name, IPv6 with or without brackets) reaches this machine only:
    ``127.0.0.0/8``, ``::1`` or ``localhost``. Any other name counts as not loopback, whatever it resolves to
    today: the rule must not depend on a resolver."""
    h = host.strip().lower()
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def choose_token(host: str, given: str | None) -> tuple[str | None, bool]:
    """The token the dashboard requires, and whether it was made here (then the printed URL carries it): the one
    given, else none on loopback, else a new random one (:func:`secrets.token_urlsafe`, 192 bits)."""
    if given:
        return given, False
    if is_loopback(host):
        return None, False
    return secrets.token_urlsafe(24), True


def session_value(token: str) -> str:
    """The cookie's value for ``token``: an HMAC of it, so the cookie does not hold the token itself."""
    return hmac.new(token.encode(), b"farm dashboard session", hashlib.sha256).hexdigest()


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def host_name(host_header: str) -> str:
    """The name in a ``Host`` header, without its port: ``[::1]:8765`` -> ``::1``, ``localhost:8765`` ->
    ``localhost``."""
    h = host_header.strip()
    if h.startswith("["):
        return h[1 : h.find("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


@dataclass(frozen=True)
class Verdict:
    """What to do with a request: serve it (``status`` 0), redirect it without its token and set the cookie
    (303), or refuse it (401, 403, 405) with a one-line ``reason``."""

    status: int
    reason: str = ""
    location: str = ""
    set_cookie: str = ""


class Access:
    """The rule for one running dashboard: its token (None: loopback without a token)."""

    def __init__(self, token: str | None) -> None:
        self.token = token
        self._session = session_value(token) if token else ""

    def judge(self, method: str, path: str, query: str, headers: dict[str, str]) -> Verdict:
        """The verdict on one request. ``path``: as it came (percent-encoded); ``query``: the raw query string;
        ``headers``: by lower-case name."""
        if method.upper() not in METHODS:
            return Verdict(405, "the dashboard is read-only: only GET and HEAD are served")
        if self.token is None:
            if not is_loopback(host_name(headers.get("host", ""))):
                return Verdict(403, "this dashboard answers only to a loopback host name (localhost, 127.0.0.1)")
            return Verdict(0)
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            if _same(auth[7:].strip(), self.token):
                return Verdict(0)
            return Verdict(403, "wrong token")
        pairs = parse_qsl(query, keep_blank_values=True)
        given = [v for k, v in pairs if k == "token"]
        if given:
            if not _same(given[-1], self.token):
                return Verdict(403, "wrong token")
            rest = urlencode([(k, v) for k, v in pairs if k != "token"])
            cookie = f"{COOKIE}={self._session}; Path=/; HttpOnly; SameSite=Strict"
            here = "/" + path.lstrip("/")  # never "//host/...": a redirect stays on this origin
            return Verdict(303, location=here + (f"?{rest}" if rest else ""), set_cookie=cookie)
        jar = SimpleCookie()
        try:
            jar.load(headers.get("cookie", ""))
        except Exception:  # noqa: BLE001 - a malformed cookie header is a stranger's: it is no session, nothing more
            jar = SimpleCookie()
        if COOKIE in jar and _same(jar[COOKIE].value, self._session):
            return Verdict(0)
        return Verdict(401, "this dashboard needs its token: open the URL it printed (with ?token=)")
