"""A connector's configuration: one object, read once at the edge and handed to the app.

`tessera connector init` writes `connector.toml` beside the connector's private key; `serve` reads it.
Nothing else reads files or the environment for settings. Two groups are tables of their own: the
rules by data grade (`[grades]`) and the cross-border rules (`[cross_border]`), which apply to every
use whatever an offer or agreement says.
"""

import re
import secrets
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from policies.patterns import SECURITY_PROFILES
from tessera.crypto import PROFILES, CryptoProfile
from tessera.labels import LEVELS, category, jurisdiction
from tessera.logs import check_log_format
from tessera.policy.auto import ENGINE_KINDS
from tessera.store import sqlite_url
from tessera.tracing import check_tracing

CONFIG_FILE = "connector.toml"
KEY_FILE = "connector.key"
JWK_FILE = "connector.jwk.json"
SM2_KEY_FILE = "connector.sm2.key"  # the SM profile's agreement-signing key, bound to the identity key
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8181
DSP_PATH = "/dsp"
TRANSFER_START_MODES = ("immediate", "async")
DEFAULT_TRANSFER_START_DELAY = 0.5  # seconds; a TCK-style peer must see our REQUESTED answer first
AGREEMENT_SIGNATURES = ("when-offered", "required")
CRYPTO_PROFILES = tuple(PROFILES)  # "default" (ES256, SHA-256) | "sm" (SM2SM3, SM3): docs/crypto.md
DEFAULT_NEGOTIATION_DEADLINE = 600.0  # seconds a counter-party may take to answer a negotiation message
DEFAULT_TRANSFER_DEADLINE = 600.0  # seconds a provider may take to start a requested transfer
# The broker's signed participant status (tessera.participant_status): fetched again after this many
# seconds, and trusted for at most the grace period after the last one that verified.
DEFAULT_PARTICIPANT_STATUS_REFRESH = 3.0
DEFAULT_PARTICIPANT_STATUS_GRACE = 30.0
DEFAULT_AUDIT_CHECKPOINT_INTERVAL = 60.0  # seconds between checkpoints of the audit chain, when it grew
DEFAULT_SHUTDOWN_DRAIN = 30.0  # seconds in-flight requests (pulls) may take to finish after SIGTERM
# Secrets a container may pass as TESSERA_<NAME> variables instead of writing them into connector.toml.
SECRET_SETTINGS = ("database_url", "management_token")
# Seconds a replica's claim on background work (an outbox queue, a push, a sweep) lasts unrenewed: how long
# a crashed replica's work waits for another. Longer than a delivery's HTTP timeout (10 s).
DEFAULT_LEASE_SECONDS = 15.0
CORE_DATA_MODES = ("hidden", "aggregate_only")
DEFAULT_IMPORTANT_MIN_PROFILE = "trust"
DEFAULT_NEVER_LEAVE_LEVELS = ("important", "core")  # important data leaves only after a security assessment


@dataclass(frozen=True, kw_only=True)
class GradeRules:
    """What the connector does with data by its grade (GB/T 43697), whatever an offer says.

    `core`: "hidden": core data is in no other participant's catalog and every use by another is denied;
    "aggregate_only": it is offered only under usage policies built with the `aggregate_only` pattern,
    and a use is allowed only as an aggregate. `important_min_profile`: important data goes only to
    callers whose verified security profile is at least this (base < trust < trust_plus).
    """

    core: str = "hidden"
    important_min_profile: str = DEFAULT_IMPORTANT_MIN_PROFILE

    def __post_init__(self) -> None:
        if self.core not in CORE_DATA_MODES:
            raise ValueError(f"grades.core must be one of {CORE_DATA_MODES}, not {self.core!r}")
        if self.important_min_profile not in SECURITY_PROFILES:
            raise ValueError(
                f"grades.important_min_profile must be one of {SECURITY_PROFILES}, not {self.important_min_profile!r}"
            )


@dataclass(frozen=True, kw_only=True)
class ComputeLimits:
    """What one compute-to-data query may use (`[compute]`; connector.compute.engine): wall-clock seconds,
    the engine's memory limit and threads, and how many queries run at once (the rest wait)."""

    seconds: float = 10.0
    memory: str = "512MB"
    threads: int = 2
    concurrent: int = 2

    def __post_init__(self) -> None:
        if not self.seconds > 0 or self.threads < 1 or self.concurrent < 1:
            raise ValueError("compute.seconds must be > 0, compute.threads and compute.concurrent >= 1")
        if not re.fullmatch(r"\d+(\.\d+)?\s*(KB|MB|GB|KiB|MiB|GiB)", self.memory):
            raise ValueError(f"compute.memory must be a size like 512MB, not {self.memory!r}")


@dataclass(frozen=True, kw_only=True)
class CrossBorderRules:
    """Rules for a use whose caller's jurisdiction is not the data's home jurisdiction.

    Data of a level in `never_leave_levels` or a category in `never_leave_categories` never leaves its
    home; other data goes only to the `destinations` (ISO 3166-1 alpha-2; none: no cross-border use).
    `home_jurisdiction` is the home of assets created without one (none: such assets have no home and no
    use of them is cross-border).
    """

    home_jurisdiction: str | None = None
    destinations: tuple[str, ...] = ()
    never_leave_levels: tuple[str, ...] = DEFAULT_NEVER_LEAVE_LEVELS
    never_leave_categories: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("destinations", "never_leave_levels", "never_leave_categories"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        try:
            if self.home_jurisdiction is not None:
                jurisdiction(self.home_jurisdiction)
            for code in self.destinations:
                jurisdiction(code)
            for code in self.never_leave_categories:
                category(code)
        except ValueError as exc:
            raise ValueError(f"cross_border: {exc}") from exc
        if unknown := [level for level in self.never_leave_levels if level not in LEVELS]:
            raise ValueError(f"cross_border.never_leave_levels must be among {LEVELS}, not {unknown}")


@dataclass(frozen=True, kw_only=True)
class ConnectorConfig:
    """Everything a connector needs to run. `repr` never shows the management token."""

    directory: Path
    participant_id: str
    url: str  # public base URL; the DSP endpoints live under `url + DSP_PATH`
    broker_url: str  # the cluster's broker, which is also its identity authority
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    database_url: str = ""
    management_token: str = field(default="", repr=False)
    # `GET /metrics` takes this token; when empty, the management token (docs/metrics.md "Monitor").
    metrics_token: str = field(default="", repr=False)
    log_format: str = "text"  # or "json": one JSON object per line (tessera.logs)
    tracing: str = "off"  # or "otlp": OpenTelemetry spans to OTEL_EXPORTER_OTLP_ENDPOINT (tessera.tracing)
    policy_engine: str = "embedded"  # or "opa"
    opa_url: str | None = None
    # As provider, answer a transfer request REQUESTED and start it afterwards ("async"), or start it
    # within the request's transaction ("immediate").
    transfer_start: str = "immediate"
    transfer_start_delay: float = DEFAULT_TRANSFER_START_DELAY
    # "when-offered": a peer that does not sign still gets an agreement (recorded as not countersigned);
    # "required": an agreement without the counter-party's signature is refused.
    agreement_signatures: str = "when-offered"
    # What signs our agreements and links our audit chain: "default" (ES256, SHA-256) or "sm" (SM2, SM3).
    crypto_profile: str = "default"
    negotiation_deadline: float = DEFAULT_NEGOTIATION_DEADLINE
    transfer_deadline: float = DEFAULT_TRANSFER_DEADLINE
    # A caller the broker suspended is refused within `participant_status_refresh` seconds; when no status
    # document has verified for `participant_status_grace` seconds, every caller is refused (fail closed).
    participant_status_refresh: float = DEFAULT_PARTICIPANT_STATUS_REFRESH
    participant_status_grace: float = DEFAULT_PARTICIPANT_STATUS_GRACE
    # A signed checkpoint of the audit chain's head goes to the broker this often when the chain grew,
    # and to the broker and the counter-party whenever a negotiation or transfer ends (connector.anchoring).
    audit_checkpoint_interval: float = DEFAULT_AUDIT_CHECKPOINT_INTERVAL
    # On SIGTERM, requests in flight get this long to finish before they are cut (tessera.serving).
    shutdown_drain: float = DEFAULT_SHUTDOWN_DRAIN
    # Replicas on one PostgreSQL database claim background work by leases of this length (tessera.leases).
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    grades: GradeRules = field(default_factory=GradeRules)
    cross_border: CrossBorderRules = field(default_factory=CrossBorderRules)
    compute: ComputeLimits = field(default_factory=ComputeLimits)

    def __post_init__(self) -> None:
        if self.transfer_start not in TRANSFER_START_MODES:
            raise ValueError(f"transfer_start must be one of {TRANSFER_START_MODES}, not {self.transfer_start!r}")
        if self.transfer_start_delay < 0:
            raise ValueError("transfer_start_delay must be >= 0 seconds")
        if self.agreement_signatures not in AGREEMENT_SIGNATURES:
            raise ValueError(
                f"agreement_signatures must be one of {AGREEMENT_SIGNATURES}, not {self.agreement_signatures!r}"
            )
        if self.policy_engine not in ENGINE_KINDS:
            raise ValueError(f"policy_engine must be one of {ENGINE_KINDS}, not {self.policy_engine!r}")
        if self.policy_engine == "opa" and not self.opa_url:
            raise ValueError("policy_engine opa needs opa_url, the OPA server's base URL")
        check_log_format(self.log_format)
        check_tracing(self.tracing)
        if self.crypto_profile not in CRYPTO_PROFILES:
            raise ValueError(f"crypto_profile must be one of {CRYPTO_PROFILES}, not {self.crypto_profile!r}")
        for name in (
            "negotiation_deadline",
            "transfer_deadline",
            "participant_status_refresh",
            "audit_checkpoint_interval",
            "shutdown_drain",
            "lease_seconds",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be a positive number of seconds")
        if not self.participant_status_grace >= self.participant_status_refresh:
            raise ValueError("participant_status_grace must be at least participant_status_refresh seconds")
        if not self.database_url:
            object.__setattr__(self, "database_url", sqlite_url(self.directory / "connector.db"))
        if not self.management_token:
            object.__setattr__(self, "management_token", secrets.token_urlsafe(24))

    @property
    def dsp_url(self) -> str:
        return self.url.rstrip("/") + DSP_PATH

    @property
    def key_path(self) -> Path:
        return self.directory / KEY_FILE

    @property
    def sm2_key_path(self) -> Path:
        return self.directory / SM2_KEY_FILE

    @property
    def crypto(self) -> CryptoProfile:
        return PROFILES[self.crypto_profile]

    @classmethod
    def load(cls, directory: Path) -> "ConnectorConfig":
        with (directory / CONFIG_FILE).open("rb") as fh:
            values = tomllib.load(fh)
        grades = GradeRules(**values.pop("grades", {}))
        cross_border = CrossBorderRules(**values.pop("cross_border", {}))
        compute = ComputeLimits(**values.pop("compute", {}))
        return cls(directory=directory, grades=grades, cross_border=cross_border, compute=compute, **values)

    def save(self) -> Path:
        values = _without_none({k: v for k, v in asdict(self).items() if k != "directory"})
        path = self.directory / CONFIG_FILE
        path.write_text(tomli_w.dumps(values))
        path.chmod(0o600)  # holds the management token
        return path


def _without_none(values: dict[str, Any]) -> dict[str, Any]:
    """TOML has no null: leave unset values (in tables too) out."""
    return {k: _without_none(v) if isinstance(v, dict) else v for k, v in values.items() if v is not None}
