"""One settings model for every command: flags > ``FARM_*`` environment variables > a TOML config file > defaults.

The config file is ``$FARM_CONFIG`` if set, else ``~/.config/benchfarm/config.toml`` (``$XDG_CONFIG_HOME``
honoured). Secrets (the password inside the broker URL) are masked whenever settings are shown.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from farm import defaults
from farm.errors import escape

if TYPE_CHECKING:
    from pydantic import ValidationError


WORKER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}")
"""What a worker's name may hold: it is part of Redis keys (``P:worker:NAME``) and of Celery's node name."""


def config_path() -> Path:
    if os.environ.get("FARM_CONFIG"):
        return Path(os.environ["FARM_CONFIG"]).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "benchfarm" / "config.toml"


def cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "benchfarm"


class FarmSettings(BaseSettings):
    """The farm's effective configuration."""

    model_config = SettingsConfigDict(env_prefix="FARM_", extra="ignore")

    broker_url: str = Field(
        default=defaults.REDIS_URL, description="Redis URL of the broker and store (redis://, rediss://, unix://)."
    )
    key_prefix: str = Field(default=defaults.KEY_PREFIX, description="Prefix of the farm's Redis keys.")
    data_dir: Path | None = Field(default=None, description="Where the dataset archives are, for offline machines.")
    cache_dir: Path = Field(
        default_factory=lambda: cache_home() / "datasets",
        description="Decoded datasets, shared by the jobs of one machine.",
    )
    allow_download: bool = Field(default=True, description="Fetch missing dataset archives with Keras' get_file.")
    worker_name: str | None = Field(default=None, description="Name of this worker (default: host and device).")
    max_attempts: int = Field(
        default=defaults.MAX_ATTEMPTS,
        ge=1,
        le=100,
        description="Starts of a job before a lost or failing job is recorded failed.",
    )
    quarantine_after: int = Field(
        default=defaults.QUARANTINE_AFTER,
        ge=1,
        le=1000,
        description="A worker whose jobs fail this many times in a row stops taking jobs.",
    )
    quarantine_cooldown_s: float = Field(
        default=defaults.QUARANTINE_COOLDOWN_S,
        ge=0,
        description="A worker that stopped taking jobs takes them again after this long (0: only a restart lifts it).",
    )
    backends: str | None = Field(
        default=None,
        description="The Keras backends this worker offers, comma-separated (tensorflow, jax, torch); "
        "default: every one installed. One left out is never sent here.",
    )
    store_retry_s: float = Field(
        default=defaults.STORE_RETRY_S,
        gt=0,
        description="How long a worker keeps retrying a result write while Redis is down.",
    )
    lease_ttl_s: float = Field(default=defaults.LEASE_TTL_S, gt=0)
    heartbeat_s: float = Field(default=defaults.WORKER_HEARTBEAT_S, gt=0)
    visibility_timeout_s: float = Field(default=defaults.VISIBILITY_TIMEOUT_S, gt=0)
    warm_start: bool = Field(
        default=True,
        description="Fork each job's process from a fork server that imported "
        "Keras once (it touches no device); off: a fresh interpreter imports per job.",
    )
    compile_cache: bool = Field(
        default=True,
        description="Reuse XLA compilations across jobs (JAX backend) from "
        "a cache under cache_dir; steady epochs are unaffected, first epochs compile less.",
    )
    compile_cache_dir: Path | None = Field(
        default=None,
        description="Where the compilation cache lives; unset: cache_dir/compiled. Several workers (and farms) "
        "of one host may share one: an entry is keyed by the computation, its options, the versions and the device.",
    )
    prices: dict[str, float] = Field(
        default_factory=dict,
        description="US dollars per hour of each kind of hardware, keyed by hardware key, device name, host or "
        "device kind (gpu, cpu): reports show what a cell's samples cost (farm.reports.cost).",
    )
    contention_cpu_threshold: float = Field(
        default=defaults.CONTENTION_CPU_THRESHOLD,
        gt=0,
        le=10,
        description="Share of a job's cores that other processes may use during a steady epoch before the "
        "epoch counts as disturbed (all disturbed: the job is contended). Unset, a cell measured to a precision gets "
        "a tighter one derived from its target (farm.precision.contention_threshold); set, it rules every cell.",
    )
    min_steady_s: float = Field(
        default=defaults.MIN_STEADY_S,
        ge=0,
        le=3600,
        description="Seconds a repeat's steady window (its epochs after the first) must last to be valid; with "
        "min_steady_steps 0 as well, no window is judged too short.",
    )
    min_steady_steps: int = Field(
        default=defaults.MIN_STEADY_STEPS,
        ge=0,
        le=10**6,
        description="Training steps a repeat's steady window must hold to be valid.",
    )
    max_clock_change: float = Field(
        default=defaults.MAX_CLOCK_CHANGE,
        gt=0,
        le=1,
        description="Share by which the CPU clock may move within a steady window (where cpufreq is readable) "
        "before the repeat is invalid.",
    )
    quiet_wait_s: float = Field(
        default=defaults.QUIET_WAIT_S,
        ge=0,
        le=86400,
        description="Seconds a job may wait, before it trains, for other processes to leave its cores below the "
        "contended threshold; 0: no wait.",
    )
    job_memory_limit_mb: int | None = Field(
        default=None,
        ge=0,
        le=2**30,
        description="Memory (MiB) a job's process may use: past it the job fails as out of memory and the host "
        "stays up. Unset: 90% of the memory available when the worker starts; 0: no limit.",
    )
    reap_interval_s: float = Field(
        default=defaults.REAP_INTERVAL_S, gt=0, description="How often workers look for jobs whose worker died."
    )
    redis_timeout_s: float = Field(
        default=defaults.REDIS_TIMEOUT_S,
        ge=2,
        le=600,
        description="Seconds to wait for a Redis reply before giving up (at least 2: "
        "the workers' 1 s queue polls are read under it).",
    )

    @field_validator("broker_url")
    @classmethod
    def _known_scheme(cls, v: str) -> str:
        check_broker_url(v)
        return v

    @field_validator("prices")
    @classmethod
    def _prices(cls, v: dict[str, float]) -> dict[str, float]:
        for key, price in v.items():
            if not key.strip() or not math.isfinite(price) or price < 0:
                raise ValueError(f"{key!r}: a price is a finite, non-negative number of US dollars per hour")
        return v

    @field_validator("worker_name")
    @classmethod
    def _plain_name(cls, v: str | None) -> str | None:
        if v is not None and not WORKER_NAME.fullmatch(v):
            raise ValueError(
                f"{escape(ascii(v)[:60])} is not a worker name: 1 to 100 ASCII letters, digits and . _ @ + - "
                "(it becomes part of Redis keys and of Celery's node name)"
            )
        return v

    @model_validator(mode="after")
    def _timings_agree(self) -> FarmSettings:
        """The timings a worker lives by, checked together: each is fine alone and harmful in some company."""
        for problem in timing_problems(self):
            raise ValueError(problem)
        return self

    @field_validator("backends")
    @classmethod
    def _known_backends(cls, v: str | None) -> str | None:
        if v is None:
            return None
        names = [b.strip() for b in v.split(",") if b.strip()]
        unknown = [b for b in names if b not in KERAS_BACKENDS]
        if unknown or not names:
            raise ValueError(f"expected a comma-separated list of {', '.join(KERAS_BACKENDS)}, got {v!r}")
        return ",".join(names)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=config_path()))

    def shown(self) -> dict[str, Any]:
        """Settings as a user may see them: secrets masked."""
        d = self.model_dump(mode="json")
        d["broker_url"] = mask_url(self.broker_url)
        return d


KERAS_BACKENDS = ("tensorflow", "jax", "torch")
"""The Keras backends a job may ask for and a worker may offer."""

MASK = "***"

_URL_OPTIONS = (
    "db",
    "username",
    "password",
    "virtual_host",
    "protocol",
    "client_name",
    "health_check_interval",
    "socket_timeout",
    "socket_connect_timeout",
    "socket_keepalive",
    "retry_on_timeout",
    "max_connections",
    "ssl_cert_reqs",
    "ssl_ca_certs",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_check_hostname",
    "ssl_ca_path",
    "ssl_validate_ocsp",
    "ssl_validate_ocsp_stapled",
    "ssl_min_version",
    "socket_read_size",
    "retry_on_error",
    "legacy_responses",
)
_USERNAME = re.compile(r"[\w.~!$&'()*+,;=%-]*")
"""What a user name may hold unencoded (RFC 3986 userinfo); anything else means a mangled URL: mask it all."""
_QUERY_PASSWORD = re.compile(r"(?<=[?&]password=).*?(?=&(?:" + "|".join(_URL_OPTIONS) + r")=|$)", re.S)


def mask_url(url: str) -> str:
    """``redis://user:secret@host/0`` -> ``redis://user:***@host/0``; ``?password=secret`` -> ``?password=***``.

    Masks the whole password whatever characters it holds, percent-encoded or not, so no fragment ever shows:
    a raw ``/``, ``#``, ``?`` or ``@`` in a password ends urllib's idea of the userinfo early, so the userinfo
    here runs from ``scheme://`` to the *last* ``@`` (a query password is masked first: it may hold an ``@``),
    and a query password runs to the next option redis-py knows (``&db=``, ...). A userinfo without ``:``, or
    whose name holds what a name cannot (``/``, ``#``, ...), is masked whole: some clients read a lone name as
    the password, and a mangled one may be a piece of it. This errs towards masking too much, never too
    little. Works on text that is not a well-formed URL too (no scheme, say): that is when it ends up in an error.
    """
    masked = _QUERY_PASSWORD.sub(MASK, url)
    scheme, sep, rest = masked.partition("://")
    if not sep:  # no scheme (a mistyped URL): the userinfo starts the text
        scheme, rest = "", masked
    at = rest.rfind("@")
    if at < 0:
        return masked
    user, colon, _ = rest[:at].partition(":")
    if colon and _USERNAME.fullmatch(user):
        return f"{scheme}{sep}{user}:{MASK}{rest[at:]}"
    return f"{scheme}{sep}{MASK}{rest[at:]}"


SCHEMES = ("redis", "rediss", "unix")
_USERINFO = re.compile(r"(?:[A-Za-z0-9._~!$&'()*+,;=:-]|%[0-9A-Fa-f]{2})*")
"""What a user name and password may hold (RFC 3986 userinfo): anything else must be percent-encoded."""
_HOST = re.compile(r"[A-Za-z0-9._~%-]*")
_IPV6 = re.compile(r"\[([^\[\]]*)\](?::(.*))?")
_ENCODE = "percent-encode it (/ as %2F, # as %23, ? as %3F, @ as %40, % as %25, a space as %20)"
_COMMON_OPTIONS = frozenset(
    {
        "db",
        "username",
        "password",
        "client_name",
        "protocol",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_read_size",
        "retry_on_timeout",
        "retry_on_error",
        "max_connections",
        "health_check_interval",
        "legacy_responses",
    }
)
_TLS_OPTIONS = frozenset(
    {
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "ssl_ca_path",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_check_hostname",
        "ssl_validate_ocsp",
        "ssl_validate_ocsp_stapled",
        "ssl_min_version",
    }
)
URL_OPTIONS = {
    "redis": _COMMON_OPTIONS | {"socket_keepalive"},
    "rediss": _COMMON_OPTIONS | {"socket_keepalive"} | _TLS_OPTIONS,
    "unix": _COMMON_OPTIONS,
}
"""The query options a broker URL may carry, per scheme: what redis-py's connection of that kind accepts."""


def check_broker_url(url: str) -> None:
    """Refuse, with a ValueError whose text never holds the password or any piece of the user name or password,
    a broker URL that the Redis client or kombu would misread or choke on later (when its error would show the
    piece of the password it took for a port, a host or a database).

    Checked in this order, so that each later message may name what it saw: the scheme; a query ``password``
    holding an unencoded ``&`` or ``#``; an ``@`` anywhere but the one ending the user info (the sign of a raw
    ``/``, ``?``, ``#`` or ``@`` in the user name or password); characters the user info may not hold raw; the
    host (an IPv6 address in brackets) and port; the database in the path; the query's option names for the
    scheme; then the client itself builds a connection from it (option values).
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        shown = f", not {scheme}://" if sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]{0,15}", scheme) else ""
        raise ValueError(f"must be a redis://, rediss:// or unix:// URL{shown} (as redis://:PASSWORD@host:6379/0)")
    scheme = scheme.lower()
    for found in _QUERY_PASSWORD.finditer(url):
        if "&" in found.group() or "#" in found.group():
            raise ValueError(f"the password in its query holds an unencoded '&' or '#': {_ENCODE}")
    rest = _QUERY_PASSWORD.sub("", rest)  # the query password's value, checked: nothing below may show it
    end = re.search(r"[/?#]", rest)
    authority, tail = (rest[: end.start()], rest[end.start() :]) if end else (rest, "")
    if "@" in tail or authority.count("@") > 1:
        raise ValueError(f"its user name or password holds an unencoded '/', '#', '?' or '@': {_ENCODE}")
    userinfo, at, hostport = authority.rpartition("@")
    if at and not _USERINFO.fullmatch(userinfo):
        raise ValueError(f"its user name or password holds a character that must be percent-encoded: {_ENCODE}")
    if "#" in tail:
        raise ValueError("it has a '#' fragment, which no Redis URL has: a '#' anywhere in it must be written %23")
    path, _, query = tail.partition("?")
    _check_host(scheme, hostport, path)
    options = [name for name, _ in parse_qsl(query, keep_blank_values=True)]
    for name in options:
        if name not in URL_OPTIONS[scheme]:
            where = " (TLS options need rediss://)" if name in _TLS_OPTIONS else ""
            raise ValueError(
                f"unknown option {name[:40]!r} in its query{where}; known: {', '.join(sorted(URL_OPTIONS[scheme]))}"
            )
    _client_accepts(url)
    missing = tls_files_missing(url)
    if missing:
        raise ValueError(missing)


TLS_FILES = {"ssl_ca_certs": "CA file", "ssl_certfile": "client certificate", "ssl_keyfile": "client key"}
"""The files a ``rediss://`` URL may name, as its query names them and as the user reads them."""


def tls_files_missing(url: str) -> str | None:
    """Which file a ``rediss://`` URL names that cannot be read, in words; None when all can. Checked before
    connecting: the TLS library's own error on a missing file reads as an unreachable server."""
    if not url.startswith("rediss://"):
        return None
    for key, value in parse_qsl(url.partition("?")[2]):
        what = TLS_FILES.get(key)
        if what is None:
            continue
        path = Path(value).expanduser()
        if not path.is_file():
            return f"the TLS {what} {escape(value)} ({key} in the broker URL) does not exist or is not a file"
        if not os.access(path, os.R_OK):
            return f"the TLS {what} {escape(value)} ({key} in the broker URL) cannot be read by this user"
    return None


def _check_host(scheme: str, hostport: str, path: str) -> None:
    """The host, port and path of a URL whose user info is well-formed (so none of them is a piece of it)."""
    if scheme == "unix":
        if hostport:
            raise ValueError("a unix:// URL names a socket file and no host: unix:///run/redis.sock?db=0")
        if len(path) < 2:
            raise ValueError("a unix:// URL needs the socket file's path: unix:///run/redis.sock?db=0")
        return
    if hostport.startswith("["):
        bracketed = _IPV6.fullmatch(hostport)
        try:
            ipaddress.IPv6Address(bracketed.group(1) if bracketed else "")
        except ValueError:
            raise ValueError(
                f"its host {hostport[:60]!r} is not an IPv6 address in brackets, as redis://[::1]:6379/0"
            ) from None
        port = bracketed.group(2) if bracketed else None
    else:
        if hostport.count(":") > 1:
            raise ValueError("an IPv6 address must be in brackets, as redis://[::1]:6379/0")
        host, colon, port_text = hostport.partition(":")
        if not _HOST.fullmatch(host):
            raise ValueError(f"its host {host[:60]!r} is not a host name or address")
        port = port_text if colon else None
    if port is not None and not (port.isascii() and port.isdigit() and 0 < int(port) <= 65535):
        raise ValueError(f"its port must be a number from 1 to 65535, not {port[:20]!r}")
    if path not in ("", "/") and not (path[1:].isascii() and path[1:].isdigit()):
        raise ValueError(f"its path must be the database number, as /0, not {path[:40]!r}")


def _client_accepts(url: str) -> None:
    """The Redis client builds a connection from the URL (nothing is opened): option values are its to judge.
    Its message is shown only if it holds no piece of the user info or query password."""
    import redis

    try:
        redis.Redis.from_url(url).connection_pool.make_connection()
    except Exception as e:  # noqa: BLE001 - whatever the client says, it becomes one safe line
        text = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise ValueError(
            f"the Redis client cannot use it: {text if _no_secret(text, url) else type(e).__name__}"
        ) from None


def _no_secret(text: str, url: str) -> bool:
    """Whether ``text`` holds no run of 4 characters of the URL's user info or query password (raw or decoded)."""
    rest = url.partition("://")[2]
    secrets = [rest.rpartition("@")[0], *(m.group() for m in _QUERY_PASSWORD.finditer(url))]
    secrets += [unquote(s) for s in secrets]
    return not any(s[i : i + 4] in text for s in secrets for i in range(max(len(s) - 3, 0)))


MIN_HEARTBEAT_S = 0.1
"""A worker's heartbeat below this would keep Redis busy renewing, and expiries in whole milliseconds turn 0."""


def timing_problems(s: FarmSettings) -> list[str]:
    """What is wrong with the timing settings taken together, one sentence each naming where each value came from:

    - the lease must outlast three heartbeats: one late heartbeat keeps it, and the job's process, which stops
      itself after ``max(2 heartbeats, lease - heartbeat)`` without word from its worker (the keep-alive), is
      gone before the lease expires and another worker may take the job. ``heartbeat_s >= lease_ttl_s`` made a
      worker reap its own running job;
    - the reaper runs on the worker's heartbeat, so a shorter reap interval is not possible;
    - the broker's visibility timeout must exceed the lease: Redis must not hand a running job's message to another
      worker before the farm could even tell that its worker died.
    """
    beat, lease = setting_origin("heartbeat_s"), setting_origin("lease_ttl_s")
    problems = []
    if s.heartbeat_s < MIN_HEARTBEAT_S:
        problems.append(f"{beat} is {s.heartbeat_s:g}: at least {MIN_HEARTBEAT_S:g} s")
    if 3 * s.heartbeat_s > s.lease_ttl_s:
        problems.append(
            f"{lease} ({s.lease_ttl_s:g} s) must be at least three heartbeats ({beat} = {s.heartbeat_s:g} s): "
            "a shorter lease expires while its worker is alive and the job is taken from it (and its process "
            "outlives the lease)"
        )
    if s.reap_interval_s < s.heartbeat_s:
        problems.append(
            f"{setting_origin('reap_interval_s')} ({s.reap_interval_s:g} s) is shorter than the heartbeat "
            f"({beat} = {s.heartbeat_s:g} s), on which the reaper runs"
        )
    if s.visibility_timeout_s <= s.lease_ttl_s:
        problems.append(
            f"{setting_origin('visibility_timeout_s')} ({s.visibility_timeout_s:g} s) must exceed {lease} "
            f"({s.lease_ttl_s:g} s), and the longest job: Redis would hand a running job's message to another worker"
        )
    return problems


_FLAGS = {"broker_url": "--broker", "worker_name": "--name", "data_dir": "--data-dir", "cache_dir": "--cache-dir"}


def setting_origin(name: str, flags: Iterable[str] = ()) -> str:
    """Where the value of setting ``name`` came from, as the user wrote it: the flag, ``FARM_NAME``, or the
    config file's key (the order in which settings win)."""
    if name in flags:
        return f"{_FLAGS[name]} ({name})" if name in _FLAGS else name
    env = f"FARM_{name.upper()}"
    if any(key.upper() == env for key in os.environ):
        return env
    return f"{name} in {config_path()}" if config_path().is_file() else name


def settings_problem(err: ValidationError, flags: Iterable[str] = ()) -> str:
    """A settings error as one line, each problem located at its origin (:func:`setting_origin`). Pydantic's
    own rendering is never used: it repeats the input, the broker URL's password included."""
    given = set(flags)
    lines = []
    for e in err.errors(include_url=False):
        msg = e["msg"].removeprefix("Value error, ")
        loc = [str(p) for p in e["loc"]]
        lines.append(f"{setting_origin(loc[0], given)}{''.join('.' + p for p in loc[1:])}: {msg}" if loc else msg)
    return escape("; ".join(lines))


def load_settings(**overrides: Any) -> FarmSettings:
    """Settings with the given flag values on top (``None`` means 'not given on the command line')."""
    return FarmSettings(**{k: v for k, v in overrides.items() if v is not None})
