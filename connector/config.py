"""A connector's configuration: one object, read once at the edge and handed to the app.

`tessera connector init` writes `connector.toml` beside the connector's private key; `serve` reads it.
Nothing else reads files or the environment for settings.
"""

import secrets
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import tomli_w

from tessera.crypto import PROFILES, CryptoProfile
from tessera.store import sqlite_url

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

    def __post_init__(self) -> None:
        if self.transfer_start not in TRANSFER_START_MODES:
            raise ValueError(f"transfer_start must be one of {TRANSFER_START_MODES}, not {self.transfer_start!r}")
        if self.transfer_start_delay < 0:
            raise ValueError("transfer_start_delay must be >= 0 seconds")
        if self.agreement_signatures not in AGREEMENT_SIGNATURES:
            raise ValueError(
                f"agreement_signatures must be one of {AGREEMENT_SIGNATURES}, not {self.agreement_signatures!r}"
            )
        if self.crypto_profile not in CRYPTO_PROFILES:
            raise ValueError(f"crypto_profile must be one of {CRYPTO_PROFILES}, not {self.crypto_profile!r}")
        for name in ("negotiation_deadline", "transfer_deadline", "participant_status_refresh"):
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
        return cls(directory=directory, **values)

    def save(self) -> Path:
        values = {k: v for k, v in asdict(self).items() if k != "directory" and v is not None}
        path = self.directory / CONFIG_FILE
        path.write_text(tomli_w.dumps(values))
        path.chmod(0o600)  # holds the management token
        return path
