"""What the management API answers, as typed models: the OpenAPI document's response schemas.

Each mirrors a record's `public()` (or the dict a handler builds) field for field. They forbid extra
fields, so the schema says `additionalProperties: false` and `tests/connector/test_openapi.py`
(schemathesis) fails when a handler answers a field its model does not name. Free-form JSON (ODRL
documents, a policy's input, a peer's answer) stays `dict[str, Any]`.
"""

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from connector.agents import Needs
from connector.assets import Format
from tessera.labels import Level, State

Item = TypeVar("Item", bound=BaseModel)
JsonObject = dict[str, Any]


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Items(Out, Generic[Item]):
    items: list[Item]


class TermsOut(Out):
    """Negotiable terms: None is no limit."""

    purposes: list[str] | None
    duration_days: int | None
    uses: int | None


class SourceShown(Out):
    """What anyone sees of an asset's backend: its kind (and an HTTP body's format), never its address."""

    kind: Literal["http", "sql"]
    format: str | None = None


class AssetOut(Out):
    """An asset."""

    id: str
    title: str
    description: str
    keywords: list[str]
    format: Format
    source: SourceShown | None = None
    classification: Level
    category: str | None
    personal_information: bool
    home_jurisdiction: str | None
    state: State
    created_at: str


class PolicyOut(Out):
    """A usage policy: a compiled Rego module and its content hash."""

    id: str
    title: str
    source: str
    package: str
    hash: str
    created_at: str


class OfferOut(Out):
    """An offer: an asset under a usage policy."""

    id: str
    asset_id: str
    usage_policy_id: str
    access_policy_id: str | None
    negotiation_policy_id: str | None
    terms: TermsOut
    approval: Literal["auto", "manual"]
    constraints: list[JsonObject]
    created_at: str


class ProcessOut(Out):
    id: str = Field(description="our pid: providerPid as provider, consumerPid as consumer")
    role: Literal["provider", "consumer"]
    provider_pid: str | None
    consumer_pid: str | None
    counterparty_id: str
    counterparty_address: str
    state: str
    reasons: list[str]
    created_at: str
    updated_at: str


class NegotiationOut(ProcessOut):
    """A contract negotiation."""

    offer_id: str
    target: str
    terms: TermsOut
    policy: JsonObject | None
    needs: Needs | None
    rounds: int
    waiting: str | None
    agreement_id: str | None


class TransferOut(ProcessOut):
    """A transfer process."""

    agreement_id: str
    format: str
    purpose: str | None
    pushed: bool
    received: bool


class AgreementOut(Out):
    """A finalized agreement: the ODRL document both sides signed, and what binds it."""

    id: str
    role: Literal["provider", "consumer"]
    negotiation_id: str
    provider_id: str
    consumer_id: str
    provider_address: str
    target: str
    offer_id: str
    usage_policy_id: str | None
    usage_policy_hash: str | None
    provider_signature: str | None
    consumer_signature: str | None
    countersigned: bool
    signed_at: str
    agreement: JsonObject
    terms: TermsOut


class TimelineEventOut(Out):
    at: str
    kind: str
    message_type: str | None
    party: str | None
    status: int | None
    detail: str | None


class TimelineOut(Out):
    """A process, what it waits for, and every message, delivery attempt and decision of it."""

    process: NegotiationOut | TransferOut
    waiting_for: str | None
    events: list[TimelineEventOut]


class CopyOut(Out):
    """A received copy of data, and its deletion."""

    id: str
    transfer_id: str
    agreement_id: str
    path: str
    bytes: int
    received_at: str
    delete_at: str | None
    due_now_because: str | None
    deleted_at: str | None
    sweep_error: str | None
    sweep_failures: int
    retry_at: str | None
    labels: JsonObject | None


class AuditEntryOut(Out):
    seq: int
    at: str
    actor: str
    action: str
    subject: str
    details: JsonObject
    prev_hash: str
    hash_alg: str | None = Field(default=None, description="present unless sha-256")
    hash: str


class CheckpointOut(Out):
    """An audit checkpoint we signed."""

    seq: int
    hash: str
    hash_alg: str
    at: str
    jws: str
    reason: str
    recipients: list[str]


class ReceiptDocument(Out):
    """A checkpoint receipt as `tessera audit verify-receipt` reads it."""

    type: str
    checkpoint: str = Field(description="the counter-party's signed checkpoint (JWS)")
    signer_jwk: dict[str, str]
    held_by: str
    received_at: str


class ReceiptOut(Out):
    """A counter-party's audit checkpoint we hold."""

    id: int
    participant_id: str = Field(description="whose chain")
    seq: int
    hash: str
    hash_alg: str
    at: str
    received_at: str
    receipt: ReceiptDocument


class LatestCheckpoint(Out):
    held_by: str
    seq: int
    at: str


class AuditVerifyOut(Out):
    """The audit chain recomputed, and checked against the checkpoints others hold."""

    ok: bool
    entries: int
    first_broken: int | None
    problem: str | None
    hashes: list[str]
    anchored: bool
    checkpoints: int
    latest_checkpoint: LatestCheckpoint | None
    unreachable: list[str]
    refused: list[str]


class UsageOut(Out):
    agreement_id: str
    uses: int
    denials: int
    bytes: int
    last_used_at: str | None
    epsilon_spent: float


class FilingOut(BaseModel):
    """A cross-border filing record; the details recorded with it beside these fields."""

    model_config = ConfigDict(extra="allow")

    id: str
    at: str
    seq: int
    bytes: int | None


class PatternAnswer(Out):
    pattern: str
    allow: bool
    reasons: list[str]
    obligations: list[JsonObject]
    inputs: JsonObject
    params: JsonObject


class Explained(Out):
    allow: bool
    reasons: list[str]
    obligations: list[JsonObject]
    mask: list[str] = []
    patterns: list[PatternAnswer]


class ExplainOfferOut(Explained):
    """Would the participant see the offer and be able to contract for it (no side effects)?"""

    participant: JsonObject
    offer: str
    terms: TermsOut
    access_policy: str | None


class ModuleOut(Out):
    id: str
    hash: str
    problems: list[str]


class ExplainUseOut(Explained):
    """Would the next data request under the agreement be allowed, with which obligations (no side effects)?"""

    agreement: str
    input: JsonObject
    policy: str | None
    agreement_module: ModuleOut


class PeerJson(BaseModel):
    """A peer's JSON answer, passed on as it came (a provider's DCAT catalog, a query's answer, the broker's
    registration)."""

    model_config = ConfigDict(extra="allow")
