"""The broker's operations: every endpoint with its description, and the OpenAPI 3.1 document of them.

The app's routes are made from this list (`routes`), as the connector's management API is, so an endpoint
cannot be served without being described. `spec(config)` is served at `/openapi.json`, its page at `/docs`.
"""

from importlib import metadata
from typing import Any, Literal

from pydantic import BaseModel, Field

from broker import authority, checkpoints, feeds, operations, products, registry, search
from broker import metrics as broker_metrics
from broker.api_models import (
    CertificateOut,
    ChangesOut,
    CheckpointIn,
    DcatCatalog,
    HealthOut,
    Jwks,
    OAuthErrorOut,
    ParticipantOut,
    ProductOut,
    PushedOut,
    ReceiptOut,
    ReceiptsOut,
    RegistrationOut,
    SearchOut,
    StatusOut,
    TokenForm,
    TokenOut,
)
from broker.config import BrokerConfig
from broker.registry import RegistrationIn
from tessera.openapi import Operation, Reply, document, routes_of
from tessera.participant_status import STATUS_MEDIA_TYPE, STATUS_PATH

Sort = Literal["relevance", "participant", "title", "changed"]


class SearchQuery(BaseModel):
    q: str = Field(default="", max_length=registry.MAX_QUERY_LENGTH, description="full-text query")
    keyword: str | None = None
    sort: Sort | None = None
    limit: int = Field(default=search.DEFAULT_LIMIT, ge=1, le=search.MAX_LIMIT)
    offset: int = Field(default=0, ge=0, le=10_000)
    cursor: str | None = Field(default=None, description="the next_cursor of the previous page")
    facets: Literal["true", "false"] = "true"
    participant: str | None = None
    theme: str | None = None
    format: str | None = None
    license: str | None = None
    classification: str | None = None
    region: str | None = None
    liveness: str | None = None


class ChangesQuery(BaseModel):
    since: int = Field(default=0, ge=0, le=2**62, description="the `next` of the previous call")
    limit: int = Field(default=100, ge=1, le=1000)


class CatalogPage(BaseModel):
    after: int = Field(default=0, ge=0, le=2**62)
    limit: int = Field(default=500, ge=1, le=5000)


class CheckpointPage(BaseModel):
    after: int = Field(default=0, ge=0, le=2**62)
    limit: int = Field(default=checkpoints.PAGE_SIZE, ge=1, le=checkpoints.PAGE_SIZE)


health = ("operations",)
described = [
    Operation("GET", "/health", operations.health, "Liveness: the database and the crawler", health,
              responses={200: HealthOut, 503: HealthOut}, secured=False),
    Operation("GET", "/ready", operations.ready, "Readiness: the database answers", health,
              responses={200: HealthOut, 503: HealthOut}, secured=False),
    Operation("GET", "/status", operations.status, "The crawl status of every connector", health,
              responses={200: StatusOut}, secured=False),
    Operation("GET", "/metrics", broker_metrics.scrape, "Prometheus metrics (the metrics token)", health,
              responses={200: Reply(media_type="text/plain", description="Prometheus text format")}),
    Operation("POST", "/token", authority.token, "An access token for a participant", ("identity",),
              TokenForm, "application/x-www-form-urlencoded",
              responses={200: TokenOut, 400: OAuthErrorOut, 401: OAuthErrorOut}, secured=False),
    Operation("GET", "/.well-known/jwks.json", authority.jwks, "The authority's public keys", ("identity",),
              responses={200: Jwks}, secured=False),
    Operation("GET", STATUS_PATH, authority.participant_status, "The signed status list of participants",
              ("identity",), responses={200: Reply(media_type=STATUS_MEDIA_TYPE, description="a signed JWT")},
              secured=False),
    Operation("GET", "/participants/{participant_id}", authority.participant, "A participant's public record",
              ("identity",), responses={200: ParticipantOut}, secured=False),
    Operation("PUT", "/registrations/{participant_id}", registry.put_registration, "Register (or update) a "
              "connector's entry (the participant's access token)", ("registry",), RegistrationIn,
              responses={200: PushedOut, 201: PushedOut}),
    Operation("DELETE", "/registrations/{participant_id}", registry.delete_registration, "Unregister",
              ("registry",), responses={204: None}),
    Operation("GET", "/registrations/{participant_id}", registry.get_registration, "A connector's entry",
              ("registry",), responses={200: RegistrationOut}, secured=False),
    Operation("GET", "/search", registry.search_route, "Search the offerings", ("registry",), query=SearchQuery,
              responses={200: SearchOut}, secured=False),
    Operation("GET", "/products/{code}", products.product_route, "A data product and its history",
              ("products",), responses={200: ProductOut}, secured=False),
    Operation("GET", "/products/{code}/certificate", products.certificate_route, "A product's signed certificate",
              ("products",), responses={200: CertificateOut}, secured=False),
    Operation("GET", "/changes", feeds.changes, "The change feed", ("feeds",), query=ChangesQuery,
              responses={200: ChangesOut}, secured=False),
    Operation("GET", "/catalog", feeds.catalog, "Every searchable offering as DCAT 3", ("feeds",), query=CatalogPage,
              responses={200: Reply(DcatCatalog, media_type=feeds.JSON_LD)}, secured=False),
    Operation("POST", "/checkpoints/{participant_id}", checkpoints.file_checkpoint, "File an audit checkpoint",
              ("checkpoints",), CheckpointIn, responses={200: ReceiptOut, 201: ReceiptOut}),
    Operation("GET", "/checkpoints/{participant_id}", checkpoints.list_checkpoints, "A participant's checkpoints",
              ("checkpoints",), query=CheckpointPage, responses={200: ReceiptsOut}, secured=False),
    Operation("GET", "/checkpoints/{participant_id}/latest", checkpoints.latest_checkpoint,
              "A participant's latest checkpoint", ("checkpoints",), responses={200: ReceiptOut}, secured=False),
]  # fmt: skip

routes = routes_of(described)


def spec(config: BrokerConfig) -> Any:
    return document(
        described,
        title="Tessera broker API",
        version=metadata.version("tessera"),
        server=config.url.rstrip("/"),
        description="The cluster's identity authority, registry, search, feeds and checkpoint store.",
    )
