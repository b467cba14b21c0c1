"""The broker's configuration: one object, built at the edge (CLI or tests) and passed in.

A broker lives in a directory holding `broker.toml`, the authority's private key and, by default, its
SQLite database:

```toml
url = "https://broker.example.org"   # public base URL, also the issuer (`iss`) of every token
host = "127.0.0.1"
port = 8500
# database_url = "postgresql+asyncpg://…"   default: sqlite file broker.db in the directory
# key_path = "authority.key"                 default; relative paths are resolved against the directory
# crawl_interval = 900          seconds between crawls of one connector's DSP catalog
# crawl_timeout = 10            seconds one catalog request may take
# dead_after = 259200           seconds without contact before an OFFLINE entry is DEAD
# hide_dead_after = 86400       seconds a DEAD entry stays in search before it leaves
# notice_period = 0             seconds of public notice before a new data product takes effect
# registrations_per_minute = 30 write quota per participant (PUT/DELETE), bursts up to that number
# max_offerings = 10000         offerings one participant may have registered
# security_profiles = ["base", "trust", "trust_plus"]   the profiles participants may be admitted with, low to high
# participant_status_lifetime = 60   seconds a signed participant status document stays valid (`exp`)
# shutdown_drain = 30           seconds requests in flight may take to finish after SIGTERM
# metrics_token = "…"           bearer token of GET /metrics; unset: /metrics is off (docs/metrics.md)
# admin_token = "…"             the operator's key for the web console at /console; unset: nobody signs in
# log_format = "text"           or "json": one JSON object per line (`serve --log-format` overrides it)
# tracing = "off"               or "otlp": OpenTelemetry spans (on when OTEL_EXPORTER_OTLP_ENDPOINT is set)
```

In a container, `TESSERA_DATABASE_URL` and `TESSERA_ADMIN_TOKEN` (from a Secret) override `database_url`
and `admin_token` (`broker.cli`).
"""

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tomli_w
from sqlalchemy.engine.url import make_url
from sqlalchemy.exc import ArgumentError

from tessera.errors import BadRequest
from tessera.logs import check_log_format
from tessera.store import sqlite_url
from tessera.tracing import check_tracing

CONFIG_FILE = "broker.toml"
KEY_FILE = "authority.key"
DATABASE_FILE = "broker.db"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8500
DEFAULT_CRAWL_INTERVAL = 900.0
DEFAULT_CRAWL_TIMEOUT = 10.0
DEFAULT_DEAD_AFTER = 3 * 86400.0
DEFAULT_HIDE_DEAD_AFTER = 86400.0
DEFAULT_REGISTRATIONS_PER_MINUTE = 30
DEFAULT_MAX_OFFERINGS = 10_000
# The usage-policy patterns rank these, low to high (policies/usage/security_profile.rego).
DEFAULT_SECURITY_PROFILES = ("base", "trust", "trust_plus")
DEFAULT_PARTICIPANT_STATUS_LIFETIME = 60
DEFAULT_SHUTDOWN_DRAIN = 30.0
# Secrets a container may pass as TESSERA_<NAME> variables instead of writing them into broker.toml.
SECRET_SETTINGS = ("database_url", "admin_token")
_TEXTS = ("metrics_token", "admin_token", "log_format", "tracing")
_PROFILE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")
_TUNING = {
    "crawl_interval": float,
    "crawl_timeout": float,
    "dead_after": float,
    "hide_dead_after": float,
    "notice_period": float,
    "registrations_per_minute": int,
    "max_offerings": int,
    "participant_status_lifetime": int,
    "shutdown_drain": float,
}


@dataclass(frozen=True, kw_only=True, repr=False)
class BrokerConfig:
    """Where the broker keeps its state and how it is reached.

    `database_url` and `key_path` default to files inside `directory`; `url` loses any trailing slash
    so that it compares equal to the `iss` and `aud` claims built from it.
    """

    directory: Path
    url: str
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    database_url: str = field(default="")
    key_path: Path = field(default=Path(KEY_FILE))
    crawl_interval: float = DEFAULT_CRAWL_INTERVAL
    crawl_timeout: float = DEFAULT_CRAWL_TIMEOUT
    dead_after: float = DEFAULT_DEAD_AFTER
    hide_dead_after: float = DEFAULT_HIDE_DEAD_AFTER
    notice_period: float = 0.0
    registrations_per_minute: int = DEFAULT_REGISTRATIONS_PER_MINUTE
    max_offerings: int = DEFAULT_MAX_OFFERINGS
    security_profiles: tuple[str, ...] = DEFAULT_SECURITY_PROFILES
    participant_status_lifetime: int = DEFAULT_PARTICIPANT_STATUS_LIFETIME
    shutdown_drain: float = DEFAULT_SHUTDOWN_DRAIN
    metrics_token: str = ""
    admin_token: str = ""  # the console's sign-in key (`tessera broker init` makes one); "" keeps it closed
    log_format: str = "text"
    tracing: str = "off"

    def __post_init__(self) -> None:
        try:
            check_log_format(self.log_format)
            check_tracing(self.tracing)
        except ValueError as exc:
            raise BadRequest(str(exc)) from exc
        object.__setattr__(self, "security_profiles", check_security_profiles(self.security_profiles))
        if self.participant_status_lifetime < 1:
            raise BadRequest("`participant_status_lifetime` must be at least 1 second")
        # Resolved, so that joining `key_path` again (dataclasses.replace) changes nothing.
        directory = Path(self.directory).resolve()
        object.__setattr__(self, "directory", directory)
        object.__setattr__(self, "url", check_url(self.url))
        object.__setattr__(self, "key_path", directory / self.key_path)
        if not self.database_url:
            object.__setattr__(self, "database_url", sqlite_url(directory / DATABASE_FILE))

    @property
    def token_endpoint(self) -> str:
        return self.url + "/token"

    @classmethod
    def load(cls, directory: Path) -> "BrokerConfig":
        path = Path(directory) / CONFIG_FILE
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError as exc:
            raise BadRequest(f"no {CONFIG_FILE} in {directory}: run `tessera broker init` first") from exc
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise BadRequest(f"cannot read {path}: {exc}") from exc
        return cls.from_mapping(Path(directory), data)

    @classmethod
    def from_mapping(cls, directory: Path, data: dict[str, Any]) -> "BrokerConfig":
        known = {"url", "host", "port", "database_url", "key_path", "security_profiles", *_TUNING, *_TEXTS}
        if unknown := sorted(set(data) - known):
            raise BadRequest(f"unknown settings in {CONFIG_FILE}: {', '.join(unknown)}")
        if not isinstance(data.get("url"), str):
            raise BadRequest(f"{CONFIG_FILE} needs a `url` (the broker's public base URL)")
        port = data.get("port", DEFAULT_PORT)
        if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
            raise BadRequest(f"`port` must be a TCP port number, not {port!r}")
        return cls(
            directory=directory,
            url=data["url"],
            host=str(data.get("host", DEFAULT_HOST)),
            port=port,
            database_url=str(data.get("database_url", "")),
            key_path=Path(str(data.get("key_path", KEY_FILE))),
            security_profiles=_profiles(data.get("security_profiles", DEFAULT_SECURITY_PROFILES)),
            metrics_token=_text(data, "metrics_token", ""),
            admin_token=_text(data, "admin_token", ""),
            log_format=_text(data, "log_format", "text"),
            tracing=_text(data, "tracing", "off"),
            **{name: _number(data, name, kind) for name, kind in _TUNING.items() if name in data},
        )

    def save(self) -> Path:
        """Write `broker.toml`; settings still at their defaults are left out so the directory can move."""
        data: dict[str, Any] = {"url": self.url, "host": self.host, "port": self.port}
        if self.database_url != sqlite_url(self.directory / DATABASE_FILE):
            data["database_url"] = self.database_url
        if self.key_path != self.directory / KEY_FILE:
            data["key_path"] = str(self.key_path)
        defaults = BrokerConfig(directory=self.directory, url=self.url)
        changed = (*_TUNING, *_TEXTS)
        data.update({name: getattr(self, name) for name in changed if getattr(self, name) != getattr(defaults, name)})
        if self.security_profiles != DEFAULT_SECURITY_PROFILES:
            data["security_profiles"] = list(self.security_profiles)
        path = self.directory / CONFIG_FILE
        path.write_text(tomli_w.dumps(data))
        return path

    def __repr__(self) -> str:
        return (
            f"BrokerConfig(directory={str(self.directory)!r}, url={self.url!r}, host={self.host!r}, "
            f"port={self.port}, database_url={_masked(self.database_url)!r}, key_path={str(self.key_path)!r})"
        )


def _number(data: dict[str, Any], name: str, kind: type) -> Any:
    value = data[name]
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or value < 0
        or (kind is int and value != int(value))
    ):
        raise BadRequest(f"`{name}` must be a non-negative {'integer' if kind is int else 'number'}, not {value!r}")
    return kind(value)


def _text(data: dict[str, Any], name: str, default: str) -> str:
    value = data.get(name, default)
    if not isinstance(value, str):
        raise BadRequest(f"`{name}` must be a string, not {value!r}")
    return value


def _profiles(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise BadRequest(f"`security_profiles` must be a list of profile names, low to high, not {value!r}")
    return tuple(value)


def check_security_profiles(profiles: tuple[str, ...]) -> tuple[str, ...]:
    """`profiles` if they are 1-16 distinct names of lower-case letters, digits and `_ . -`, low to high."""
    if not 0 < len(profiles) <= 16 or len(set(profiles)) != len(profiles):
        raise BadRequest(f"`security_profiles` must list 1-16 distinct names, not {list(profiles)!r}")
    if bad := [p for p in profiles if not isinstance(p, str) or not _PROFILE.fullmatch(p)]:
        raise BadRequest(f"`security_profiles`: {bad!r} are not names of lower-case letters, digits and _ . -")
    return tuple(profiles)


def check_url(url: str) -> str:
    """`url` without a trailing slash, if it is an absolute http(s) URL without query or fragment."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise BadRequest(f"{url!r} is not an absolute http(s) URL")
    return url.rstrip("/")


def _masked(database_url: str) -> str:
    # A PostgreSQL URL may carry a password; never let it reach a log line.
    try:
        return make_url(database_url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable>"
