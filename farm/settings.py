"""One settings model for every command: flags > ``FARM_*`` environment variables > a TOML config file > defaults.

The config file is ``$FARM_CONFIG`` if set, else ``~/.config/benchfarm/config.toml`` (``$XDG_CONFIG_HOME``
honoured). Secrets (the password inside the broker URL) are masked whenever settings are shown.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource
from redis.connection import parse_url

from farm import defaults


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
    contention_cpu_threshold: float = Field(
        default=defaults.CONTENTION_CPU_THRESHOLD,
        gt=0,
        le=10,
        description="Share of a job's cores that other processes may use "
        "during its steady window before the job is marked contended.",
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
        scheme = urlsplit(v).scheme
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"must be a redis://, rediss:// or unix:// URL, not {mask_url(v)!r}")
        try:
            parse_url(v)  # what the Redis client will do with it: port range, db number, options
        except ValueError as e:
            raise ValueError(f"{mask_url(v)!r} is not a usable Redis URL: {e}") from None
        return v

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


def load_settings(**overrides: Any) -> FarmSettings:
    """Settings with the given flag values on top (``None`` means 'not given on the command line')."""
    return FarmSettings(**{k: v for k, v in overrides.items() if v is not None})
