"""What the broker's HTTP API answers, as typed models: the OpenAPI document's response schemas.

They mirror the `TypedDict`s the handlers build (`broker.entries`, `broker.registry`, `broker.authority`)
field for field and forbid extra fields, so schemathesis (`tests/broker/test_openapi.py`) fails when an
answer grows a field its model does not name. Records whose shape belongs to the kernel or carries
snapshots (receipts, products) name their fixed fields and allow the rest.
"""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Liveness(Out):
    state: str
    last_seen_at: str | None
    last_changed_at: str | None
    state_changed_at: str | None


class OfferingOut(Out):
    id: str
    dataset_id: str = Field(description="the @id of the DSP dataset that holds this offer (a negotiation's target)")
    title: str
    description: str
    keywords: list[str]
    format: str
    theme: str
    license: str
    classification: str
    region: str
    language: str
    product_code: str
    content_hash: str
    pushed: bool
    in_catalog: bool
    created_at: str | None
    changed_at: str | None


class RegistrationOut(Out):
    """A connector's registry entry and its offerings."""

    participant_id: str
    endpoint: str
    title: str
    description: str
    liveness: Liveness
    created_at: str | None
    updated_at: str | None
    offerings: list[OfferingOut]


class Changes(Out):
    added: list[str]
    changed: list[str]
    removed: list[str]
    withdrawn: list[str]


class Issue(Out):
    offering: str | None = Field(description="None: the registration's own self-description")
    field: str
    severity: str
    message: str


class Quality(Out):
    """What the metadata lacks (DCAT-AP 3), and a score."""

    score: float
    issues: list[Issue]


class PushedOut(RegistrationOut):
    """The entry as a registration left it, what changed, and what its metadata lacks."""

    created: bool
    changes: Changes
    quality: Quality


class SearchResult(Out):
    participant_id: str
    endpoint: str
    product_code: str
    score: float
    liveness: Liveness
    offering: OfferingOut


class FacetCount(Out):
    value: str
    count: int


class SearchOut(Out):
    """A page of search results, with facet counts unless `facets=false`."""

    total: int
    results: list[SearchResult]
    next_cursor: str | None
    facets: dict[str, list[FacetCount]] | None = None


class ParticipantOut(Out):
    """What anyone may read of a participant: enough to verify its signatures."""

    id: str
    org: str
    region: str
    security_profile: str
    jurisdiction: str | None
    roles: list[str]
    industry: str | None
    registry_type: str | None
    registry_id: str | None
    suspended: bool
    jwk: dict[str, str]
    claims: dict[str, Any]


class TokenForm(BaseModel):
    """RFC 6749 client credentials with an RFC 7523 client assertion (a JWT the participant signed)."""

    grant_type: str = Field(examples=["client_credentials"])
    client_assertion_type: str = Field(examples=["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"])
    client_assertion: str
    audience: str | None = Field(default=None, description="whom the token is for: the broker or a participant")


class TokenOut(Out):
    """An RFC 9068 access token (RFC 6749 §5.1)."""

    access_token: str
    token_type: str
    expires_in: int


class OAuthErrorOut(Out):
    """RFC 6749 §5.2."""

    error: str
    error_description: str


class Jwks(Out):
    """The authority's public keys (RFC 7517)."""

    keys: list[dict[str, Any]]


class EventOut(Out):
    seq: int
    at: str
    actor: str
    action: str
    participant_id: str
    offering_id: str | None
    product_code: str | None
    detail: dict[str, str | list[str]]


class ChangesOut(Out):
    """Events after `since`, and the `since` of the next call."""

    events: list[EventOut]
    next: int
    more: bool


class DcatCatalog(Open):
    """A DCAT 3 catalog (JSON-LD) of the searchable offerings."""


class ReceiptOut(Open):
    """A checkpoint the broker holds for its signer."""

    type: str
    checkpoint: str
    held_by: str
    received_at: str


class ReceiptsOut(Out):
    items: list[ReceiptOut]
    next: int | None


class CheckpointIn(BaseModel):
    checkpoint: str = Field(description="the signed checkpoint (a JWS)")


class ProductOut(Open):
    """A registered data product, and its history."""

    code: str
    status: str


class CertificateOut(Out):
    certificate: str
    product: dict[str, Any]


class HealthOut(Out):
    status: str
    crawler: str | None = None
    entries: int | None = None
    offerings: int | None = None
    database: str | None = None


class ConnectorStatus(Out):
    participant_id: str
    endpoint: str
    offerings: int
    state: str
    last_seen_at: str | None
    last_changed_at: str | None
    state_changed_at: str | None
    crawled_at: str | None
    status: str
    error: str
    failures: int
    next_crawl_at: str | None


class StatusOut(Out):
    """The crawl status of every registered connector."""

    connectors: list[ConnectorStatus]
