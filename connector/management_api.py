"""The management API's operations: every route of `/api` with its description, the one source of both.

`routes` (mounted at `/api` by `connector.app`) are made from `operations`, and `spec(config)` is their
OpenAPI 3.1 document (`tessera.openapi`), served at `/api/openapi.json`, `/openapi.json` and `/docs`.
A new endpoint is an `Operation` here: its request body, query and response models come with it.
"""

from importlib import metadata
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from connector import management as m
from connector.api_models import (
    AgreementOut,
    AssetOut,
    AuditEntryOut,
    AuditVerifyOut,
    CheckpointOut,
    CopyOut,
    ExplainOfferOut,
    ExplainUseOut,
    FilingOut,
    Items,
    NegotiationOut,
    OfferOut,
    PeerJson,
    PolicyOut,
    ReceiptOut,
    TimelineOut,
    TransferOut,
    UsageOut,
)
from connector.assets import AssetChange, AssetCreate
from connector.catalog import OfferCreate, PolicyCreate
from connector.config import ConnectorConfig
from connector.negotiations import Negotiation
from connector.registration import SelfDescription
from connector.transfers import Transfer
from connector.writers import FORMATS
from tessera.openapi import Operation, Reply, document, routes_of


class WaitQuery(BaseModel):
    wait_for: str | None = Field(
        default=None, description="comma-separated states: answer once the process is in one (or final)"
    )
    timeout: float | None = Field(default=None, ge=0, le=m.MAX_WAIT, description="seconds to wait at most")


class AuditQuery(BaseModel):
    limit: int = Field(default=100, ge=1, le=m.MAX_AUDIT_PAGE)
    subject: str | None = Field(default=None, description="only the entries of this subject")


class VerifyQuery(BaseModel):
    local: Literal["true", "false"] = Field(default="false", description="true: recompute the chain only")


class PullQuery(BaseModel):
    purpose: str | None = None
    event: str | None = None
    query: str | None = Field(default=None, description="a JSON object: the declared query")
    format: Literal[FORMATS] | None = None  # type: ignore[valid-type]


class ComputeQuery(BaseModel):
    """A compute-to-data query (docs/compute.md), sent on to the provider as given."""

    model_config = ConfigDict(extra="allow")


def _collection(
    noun: str, handlers: tuple[m.Handler, m.Handler], out: type[BaseModel], key: str = "{id}", **one: Any
) -> list[Operation]:
    """GET the list of a collection, and GET one of it by `key`."""
    listed = Items[out]  # type: ignore[valid-type]
    return [
        Operation("GET", f"/{noun}", handlers[0], f"List the {noun}", (noun,), responses={200: listed}),
        Operation("GET", f"/{noun}/{key}", handlers[1], f"One of the {noun}", (noun,), responses={200: out}, **one),
    ]


assets, policies, offers = ("assets",), ("policies",), ("offers",)
negotiations, transfers, audit = ("negotiations",), ("transfers",), ("audit",)
operations = [
    Operation("POST", "/assets", m.create_asset, "Create an asset", assets, AssetCreate, responses={201: AssetOut}),
    *_collection("assets", (m.list_assets, m.get_asset), AssetOut, "{id:path}"),
    Operation("PATCH", "/assets/{id:path}", m.change_asset, "Move an asset's state", assets, AssetChange,
              responses={200: AssetOut}),
    Operation("POST", "/policies", m.create_policy, "Upload a usage policy", policies, PolicyCreate,
              responses={201: PolicyOut}),
    *_collection("policies", (m.list_policies, m.get_policy), PolicyOut, "{id:path}"),
    Operation("POST", "/offers", m.create_offer, "Publish an offer", offers, OfferCreate, responses={201: OfferOut}),
    *_collection("offers", (m.list_offers, m.get_offer), OfferOut, "{id:path}"),
    Operation("POST", "/catalog/request", m.request_catalog, "Fetch a provider's catalog", ("catalog",),
              m.CatalogQuery, responses={200: PeerJson}),
    Operation("POST", "/negotiations", m.start_negotiation, "Negotiate for a provider's offer", negotiations,
              m.NegotiationStart, responses={201: NegotiationOut}),
    *_collection("negotiations", (m.list_negotiations, m.get_negotiation), NegotiationOut, query=WaitQuery),
    Operation("POST", "/negotiations/offers", m.offer_negotiation, "Offer to a consumer", negotiations,
              m.OfferTo, responses={201: NegotiationOut}),
    Operation("POST", "/negotiations/{id}/accept", m.accept_negotiation, "Accept what is on the table",
              negotiations, responses={200: NegotiationOut}),
    Operation("POST", "/negotiations/{id}/counter", m.counter_negotiation, "Counter with other terms",
              negotiations, m.Counter, responses={200: NegotiationOut}),
    Operation("POST", "/negotiations/{id}/terminate", m.terminate_negotiation, "Terminate a negotiation",
              negotiations, m.Reason, responses={200: NegotiationOut}),
    Operation("GET", "/negotiations/{id}/timeline", m.process_timeline(Negotiation), "A negotiation's timeline",
              negotiations, responses={200: TimelineOut}),
    Operation("GET", "/transfers/{id}/timeline", m.process_timeline(Transfer), "A transfer's timeline",
              transfers, responses={200: TimelineOut}),
    Operation("GET", "/timeline/{id}", m.process_timeline(Negotiation, Transfer), "A process's timeline",
              negotiations + transfers, responses={200: TimelineOut}),
    *_collection("agreements", (m.list_agreements, m.get_agreement), AgreementOut),
    Operation("POST", "/agreements/{id}/query", m.query_agreement, "Send a compute-to-data query",
              ("agreements",), ComputeQuery, responses={200: PeerJson}),
    Operation("POST", "/transfers", m.start_transfer, "Start a transfer under an agreement", transfers,
              m.TransferStart, responses={201: TransferOut}),
    *_collection("transfers", (m.list_transfers, m.get_transfer), TransferOut, query=WaitQuery),
    Operation("GET", "/transfers/{id}/data", m.pull_data, "A transfer's data", transfers, query=PullQuery,
              responses={200: Reply(media_type="*/*", description="the data"),
                         206: Reply(media_type="*/*", description="a range of the data")}),
    *(
        Operation("POST", f"/transfers/{{id}}/{verb}", m.transfer_change(state), f"{verb.title()} a transfer",
                  transfers, m.Reason, responses={200: TransferOut})
        for verb, state in (("complete", "COMPLETED"), ("terminate", "TERMINATED"), ("suspend", "SUSPENDED"))
    ),
    Operation("POST", "/transfers/{id}/resume", m.resume_transfer, "Resume a suspended transfer", transfers,
              responses={200: TransferOut}),
    Operation("PUT", "/registration", m.register, "Register with the broker", ("broker",), SelfDescription,
              responses={200: PeerJson}),
    Operation("DELETE", "/registration", m.unregister, "Unregister from the broker", ("broker",),
              responses={204: None}),
    Operation("GET", "/usage", m.usage_report, "Uses per agreement", ("usage",),
              responses={200: Items[UsageOut]}),
    Operation("GET", "/usage/cross-border", m.cross_border_filings, "Cross-border filings", ("usage",),
              responses={200: Items[FilingOut]}),
    Operation("POST", "/explain/offer", m.explain_offer, "Would a participant get an offer?", ("explain",),
              m.OfferQuestion, responses={200: ExplainOfferOut}),
    Operation("POST", "/explain/use", m.explain_use, "Would a data request be allowed?", ("explain",),
              m.UseQuestion, responses={200: ExplainUseOut}),
    Operation("GET", "/copies", m.list_copies, "Received copies", ("copies",), responses={200: Items[CopyOut]}),
    Operation("GET", "/audit", m.audit_entries, "Audit log entries", audit, query=AuditQuery,
              responses={200: Items[AuditEntryOut]}),
    Operation("GET", "/audit/verify", m.audit_verify, "Verify the audit chain", audit, query=VerifyQuery,
              responses={200: AuditVerifyOut}),
    Operation("GET", "/audit/checkpoints", m.audit_checkpoints, "Audit checkpoints we made", audit,
              responses={200: Items[CheckpointOut]}),
    Operation("GET", "/audit/receipts", m.audit_receipts, "Counter-parties' checkpoints we hold", audit,
              responses={200: Items[ReceiptOut]}),
]  # fmt: skip
routes = routes_of(operations)


def spec(config: ConnectorConfig) -> Any:
    return document(
        operations,
        title="Tessera connector management API",
        version=metadata.version("tessera"),
        server=config.url.rstrip("/") + "/api",
        description="Run the connector: assets, policies, offers, negotiations, transfers, audit. "
        "Every operation takes `Authorization: Bearer <management token>`.",
    )
