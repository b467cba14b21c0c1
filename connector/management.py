"""The management API (`/api`): what an operator or a script uses to run the connector.

JSON in and out, RFC 9457 problem details on errors, a bearer API key on every request.
Provider side: assets, usage policies (compiled on upload), offers. Consumer side: fetch a provider's
catalog, negotiate, transfer, pull data. Both: agreements and the audit log.
"""

import asyncio
import contextlib
import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any, Literal, Protocol, TypeVar

import httpx
from pydantic import AfterValidator, BaseModel, Field, ValidationError
from sqlmodel import SQLModel, col, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from connector import (
    agents,
    anchoring,
    audit_check,
    catalog,
    copies,
    cross_border,
    dataplane,
    negotiation_consumer,
    negotiation_provider,
    negotiations,
    processes,
    receipts,
    registration,
    simulate,
    source_specs,
    sources,
    timeline,
    transfer_consumer,
    transfer_provider,
    transfers,
    usage,
)
from connector.agreements import Agreement
from connector.assets import Asset, AssetChange, AssetCreate
from connector.catalog import Offer, OfferCreate, PolicyCreate, TermsIn, UsagePolicy
from connector.compute import privacy
from connector.diagnostics import outbox_pending, waiting_for
from connector.negotiations import Negotiation
from connector.processes import Process
from connector.runtime import Runtime, runtime_of
from connector.source_specs import HttpSpec, SqlSpec
from connector.sources import SourceError
from connector.transfers import Transfer
from tessera import audit
from tessera.bodies import read_body
from tessera.clock import rfc3339
from tessera.errors import BadRequest, Conflict, Gone, NotFound, PeerError, TokenRejected
from tessera.identity import bearer_token, check_participant_id
from tessera.ids import new_id
from tessera.json import nul_at, parse
from tessera.labels import Labels
from tessera.problems import problem_from_error
from tessera.terms import Terms
from tessera.urls import check_url

MAX_BODY_BYTES = 1024 * 1024
MAX_AUDIT_PAGE = 1000
Model = TypeVar("Model", bound=BaseModel)
Stored = TypeVar("Stored", bound=SQLModel)
Created = TypeVar("Created", Asset, UsagePolicy, Offer)
Listed = TypeVar("Listed", Asset, UsagePolicy, Offer, Negotiation, Agreement, Transfer)
P = TypeVar("P", bound=Process)
Handler = Callable[[Request], Awaitable[Response]]


class RequireApiKey:
    """ASGI middleware: every request must carry `Authorization: Bearer <management token>`."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            try:
                given = bearer_token(headers.get(b"authorization", b"").decode("latin-1")).encode()
                if not secrets.compare_digest(given, self.token):
                    raise TokenRejected("wrong management API key")
            except TokenRejected as exc:
                return await problem_from_error(exc)(scope, receive, send)
        await self.app(scope, receive, send)


async def read_model(request: Request, model: type[Model]) -> Model:
    body = await read_body(request, MAX_BODY_BYTES)
    document = parse(body or b"{}", "request body", BadRequest)
    try:
        validated = model.model_validate(document)
    except ValidationError as exc:
        problems = [f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()]
        raise BadRequest("invalid request body: " + "; ".join(problems), reasons=problems) from exc
    if (where := nul_at(document)) is not None:  # after the model's own checks, which name the field better
        problem = f"{where or 'body'}: must not hold U+0000 (NUL)"
        raise BadRequest("invalid request body: " + problem, reasons=[problem])
    return validated


class Public(Protocol):
    """A record as the API shows it."""

    def public(self) -> dict[str, Any]: ...


def listing(items: Sequence[Public]) -> JSONResponse:
    return JSONResponse({"items": [item.public() for item in items]})


async def _get(runtime: Runtime, model: type[Stored], key: str) -> Stored:
    async with runtime.db.session() as session:
        found = await session.get(model, key)
    if found is None:
        raise NotFound(f"no {model.__name__.lower()} {key}")
    return found


async def _all(runtime: Runtime, model: type[Stored]) -> list[Stored]:
    async with runtime.db.session() as session:
        return list(await session.exec(select(model)))


async def _create(runtime: Runtime, record: Created, key: str, **details: Any) -> JSONResponse:
    async with runtime.transaction() as session:
        if await session.get(type(record), key) is not None:
            raise Conflict(f"{type(record).__name__.lower()} {key} already exists")
        session.add(record)
        await audit.append(
            session,
            actor=runtime.participant_id,
            action=f"{type(record).__name__.lower()}.created",
            subject=key,
            **details,
        )
    return JSONResponse(record.public(), status_code=201)


# -- provider: assets, policies, offers ------------------------------------------------------------------


async def create_asset(request: Request) -> Response:
    """A file of ours, or a received copy offered on (it keeps its source's labels, or stricter ones)."""
    runtime = runtime_of(request)
    data = await read_model(request, AssetCreate)
    if data.source is not None:
        return await _create_from_backend(runtime, data, data.source)
    copy = await copies.source_of(runtime, copy_id=data.copy_id, path=data.path)
    default = Labels(home_jurisdiction=runtime.config.cross_border.home_jurisdiction)
    labels = copies.republished_labels(copy, data, default) if copy else data.labels_over(default)
    fields = data.model_dump(include={"title", "description", "keywords", "format", "state"})
    path = copy.path if copy else data.path
    assert path is not None  # AssetCreate wants a path or a copy
    asset = Asset(**fields, **labels.to_dict(), id=data.id or new_id(), path=path)
    copy_id = copy.id if copy else None
    return await _create(runtime, asset, asset.id, path=asset.path, copy=copy_id, **labels.to_dict(), state=asset.state)


async def _create_from_backend(runtime: Runtime, data: AssetCreate, spec: HttpSpec | SqlSpec) -> Response:
    """An asset read from an HTTP backend or a SQL database, which must answer now; its audit entry names the
    kind of source only (the spec holds the address and secrets)."""
    try:
        stored = await run_in_threadpool(sources.recorded, spec)
    except SourceError as exc:
        raise BadRequest(f"source: the backend cannot be read: {exc.detail}") from None
    labels = data.labels_over(Labels(home_jurisdiction=runtime.config.cross_border.home_jurisdiction))
    fields = data.model_dump(include={"title", "description", "keywords", "format", "state"})
    asset = Asset(**fields, **labels.to_dict(), id=data.id or new_id(), source=stored)
    shown = source_specs.public(stored)
    return await _create(runtime, asset, asset.id, source=shown, **labels.to_dict(), state=asset.state)


async def change_asset(request: Request) -> Response:
    """Move an asset through its lifecycle (draft, released, deprecated, withdrawn)."""
    runtime = runtime_of(request)
    change = await read_model(request, AssetChange)
    async with runtime.transaction() as session:
        asset = await session.get(Asset, request.path_params["id"])
        if asset is None:
            raise NotFound(f"no asset {request.path_params['id']}")
        was, asset.state = asset.state, change.state
        session.add(asset)
        await audit.append(
            session, actor=runtime.participant_id, action="asset.changed", subject=asset.id, state=asset.state, was=was
        )
    return JSONResponse(asset.public())


async def create_policy(request: Request) -> Response:
    runtime = runtime_of(request)
    data = await read_model(request, PolicyCreate)
    policy_id = data.id or new_id()
    source = data.rego(policy_id)  # a PatternError (400) names a bad pattern or parameter
    package = await runtime.engine.compile(source)
    policy = UsagePolicy(id=policy_id, title=data.title, source=source, package=package, hash="")
    policy.hash = policy.module.hash
    return await _create(runtime, policy, policy.id, hash=policy.hash)


async def create_offer(request: Request) -> Response:
    runtime = runtime_of(request)
    data = await read_model(request, OfferCreate)
    await _get(runtime, Asset, data.asset_id)
    await _get(runtime, UsagePolicy, data.usage_policy_id)
    for policy_id in (data.access_policy_id, data.negotiation_policy_id):
        if policy_id:
            await _get(runtime, UsagePolicy, policy_id)
    offer = Offer(**data.model_dump(exclude={"id", "terms"}), id=data.id or new_id(), terms=data.terms)
    problems = catalog.enforcement_problems(offer, await _get(runtime, UsagePolicy, data.usage_policy_id))
    if problems:  # an offer we could not enforce is not published
        raise BadRequest("the offer cannot be enforced: " + "; ".join(problems), reasons=problems)
    return await _create(runtime, offer, offer.id, asset=offer.asset_id, usage_policy=offer.usage_policy_id)


def _collection(model: type[Listed]) -> tuple[Handler, Handler]:
    async def list_all(request: Request) -> Response:
        return listing(await _all(runtime_of(request), model))

    async def get_one(request: Request) -> Response:
        runtime = runtime_of(request)
        found = await _get(runtime, model, request.path_params["id"])
        if (wanted := request.query_params.get("wait_for")) and isinstance(found, Process):
            found = await _wait_for_state(runtime, found, set(wanted.split(",")), _timeout(request))
        return JSONResponse(found.public())

    return list_all, get_one


MAX_WAIT = 60.0


def _timeout(request: Request) -> float:
    try:
        return min(MAX_WAIT, max(0.0, float(request.query_params.get("timeout", "10"))))
    except ValueError as exc:
        raise BadRequest("timeout must be a number of seconds") from exc


def _settled(process: Process, wanted: set[str]) -> bool:
    return process.state in wanted or process.final


async def _wait_for_state(runtime: Runtime, found: P, wanted: set[str], within: float) -> P:
    """Long poll: answer once the process is in one of `wanted` (or final), or when `within` seconds pass."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within):
            while not _settled(found, wanted):
                changed = runtime.watch(found.id)
                found = await _get(runtime, type(found), found.id)
                if not _settled(found, wanted):
                    await runtime.changed(changed)
    return found


# -- consumer: catalog, negotiations, transfers ------------------------------------------------------------


ProviderUrl = Annotated[str, AfterValidator(lambda url: check_url(url, "provider_url"))]
ParticipantId = Annotated[str, AfterValidator(check_participant_id)]


class CatalogQuery(BaseModel):
    provider_url: ProviderUrl = Field(description="the provider's DSP base URL")
    provider_id: ParticipantId


async def request_catalog(request: Request) -> Response:
    runtime = runtime_of(request)
    query = await read_model(request, CatalogQuery)
    body = {"@context": ["https://w3id.org/dspace/2025/1/context.jsonld"], "@type": "CatalogRequestMessage"}
    url = query.provider_url.rstrip("/") + "/catalog/request"
    try:
        response = await runtime.http.post(url, json=body, headers=await runtime.authorization(query.provider_id))
    except httpx.TransportError as exc:
        raise PeerError(f"provider unreachable at {url}: {exc}") from exc
    if response.status_code != 200:
        raise PeerError(f"provider answered {response.status_code}: {response.text[:300]}")
    return JSONResponse(response.json())


class NegotiationStart(BaseModel):
    provider_id: ParticipantId
    provider_url: ProviderUrl
    offer_id: str = Field(min_length=1)
    target: str = Field(min_length=1)
    needs: agents.Needs | None = None


async def start_negotiation(request: Request) -> Response:
    data = await read_model(request, NegotiationStart)
    runtime = runtime_of(request)
    where = data.model_dump(exclude={"needs"})
    offer = await negotiation_consumer.catalog_offer(runtime, **where)
    negotiation = await negotiation_consumer.start(runtime, **where, needs=data.needs, offer=offer)
    return JSONResponse(negotiation.public(), status_code=201)


class OfferTo(BaseModel):
    consumer_id: ParticipantId
    consumer_url: str = Field(min_length=1, description="the consumer's DSP base URL")
    offer_id: str = Field(min_length=1)


async def offer_negotiation(request: Request) -> Response:
    data = await read_model(request, OfferTo)
    negotiation = await negotiation_provider.offer_to(runtime_of(request), **data.model_dump())
    return JSONResponse(negotiation.public(), status_code=201)


class Counter(BaseModel):
    terms: TermsIn


async def _decide(request: Request, action: str, counter: Terms | None) -> Response:
    runtime = runtime_of(request)
    async with runtime.db.session() as session:
        negotiation = await negotiations.get(session, request.path_params["id"])
    role = negotiation_provider if negotiation.role == "provider" else negotiation_consumer
    decided = await role.decide_by_operator(runtime, negotiation.id, action, counter)
    return JSONResponse(decided.public())


async def accept_negotiation(request: Request) -> Response:
    return await _decide(request, "accept", None)


async def counter_negotiation(request: Request) -> Response:
    data = await read_model(request, Counter)
    return await _decide(request, "counter", Terms.from_dict(data.terms.model_dump()))


class Reason(BaseModel):
    reason: str = Field(default="terminated by the operator", max_length=1000)


async def terminate_negotiation(request: Request) -> Response:
    reason = await read_model(request, Reason)
    negotiation = await negotiations.terminate_by_operator(
        runtime_of(request), request.path_params["id"], reason.reason
    )
    return JSONResponse(negotiation.public())


def process_timeline(*models: type[Negotiation] | type[Transfer]) -> Handler:
    """Every message, delivery attempt and decision of one negotiation or transfer (of `models`), and why it
    waits. The id is our pid or the counter-party's (its providerPid or consumerPid of the same process)."""

    async def endpoint(request: Request) -> Response:
        pid = request.path_params["id"]
        async with runtime_of(request).db.session() as session:
            found: list[Negotiation | Transfer] = []
            for model in models:
                found += await processes.by_either_pid(session, model, pid)
            if not found:
                raise NotFound(f"no {' or '.join(m.noun for m in models)} {pid} (ours or the counter-party's pid)")
            if len(found) > 1:
                ours = ", ".join(sorted(p.id for p in found))
                raise Conflict(f"{pid} is the counter-party's pid of {len(found)} processes; ask by ours: {ours}")
            (process,) = found
            events = await timeline.events(session, process.id)
            pending = await outbox_pending(session, process.id)
        body = {"process": process.public(), "waiting_for": waiting_for(process, pending)}
        return JSONResponse(body | {"events": [e.public() for e in events]})

    return endpoint


class TransferStart(BaseModel):
    agreement_id: str = Field(min_length=1)
    format: Literal["HttpData-PULL", "HttpData-PUSH"] = "HttpData-PULL"
    purpose: str | None = Field(default=None, description="a push transfer's declared purpose")


async def start_transfer(request: Request) -> Response:
    data = await read_model(request, TransferStart)
    transfer = await transfer_consumer.start(
        runtime_of(request), data.agreement_id, format=data.format, purpose=data.purpose
    )
    return JSONResponse(transfer.public(), status_code=201)


def transfer_change(state: str) -> Handler:
    async def handler(request: Request) -> Response:
        reason = await read_model(request, Reason)
        transfer = await transfers.change_by_operator(
            runtime_of(request), request.path_params["id"], state, reason.reason
        )
        return JSONResponse(transfer.public())

    return handler


async def resume_transfer(request: Request) -> Response:
    runtime = runtime_of(request)
    async with runtime.db.session() as session:
        transfer = await transfers.get(session, request.path_params["id"])
    role = transfer_provider if transfer.role == "provider" else transfer_consumer
    return JSONResponse((await role.resume_by_operator(runtime, transfer.id)).public())


async def pull_data(request: Request) -> Response:
    """The data of a transfer: pulled from the provider now, or what a push delivered."""
    runtime = runtime_of(request)
    async with runtime.db.session() as session:
        transfer = await transfers.get(session, request.path_params["id"])
    if transfer.is_push:
        return await _pushed_copy(runtime, transfer)
    pulled = await dataplane.pull(runtime, transfer.id, request.query_params, request.headers)
    status = pulled.response.status_code
    # Only a whole pull is kept as a copy: a range (206) is passed on, never kept half (docs/dataplane.md).
    body = aiter(pulled)
    if status == 200:
        body = copies.keep(runtime, transfer, body, pulled.media_type, pulled.delete_after, pulled.labels)
    headers = _obligation_headers(pulled.response) | _entity_headers(pulled.response)
    return StreamingResponse(body, status_code=status, media_type=pulled.media_type, headers=headers)


def _obligation_headers(response: httpx.Response) -> dict[str, str]:
    names = (usage.DELETE_AFTER_HEADER, usage.NEXT_POLICY_HEADER, usage.LABELS_HEADER, "Tessera-Masked-Fields")
    return {name: response.headers[name] for name in names if name in response.headers}


def _entity_headers(response: httpx.Response) -> dict[str, str]:
    """What the provider said of the bytes, passed on so a client can resume as it would from the provider."""
    names = ("Content-Length", "Content-Range", "ETag", "Accept-Ranges")
    return {name: response.headers[name] for name in names if name in response.headers}


async def _pushed_copy(runtime: Runtime, transfer: Transfer) -> Response:
    copy = await copies.latest(runtime, transfer.id)
    if copy is None:
        raise NotFound(f"transfer {transfer.id} has received no data yet")
    if copy.deleted_at:
        raise Gone(f"the copy was deleted at {rfc3339(copy.deleted_at)}, as its delete-after obligation required")
    return FileResponse(copy.path)


async def list_copies(request: Request) -> Response:
    async with runtime_of(request).db.session() as session:
        found = await session.exec(select(copies.ReceivedCopy).order_by(col(copies.ReceivedCopy.received_at)))
        return listing(list(found))


# -- explain and simulate ---------------------------------------------------------------------------------


class OfferQuestion(BaseModel):
    participant_id: ParticipantId
    offer_id: str = Field(min_length=1)


class UseQuestion(BaseModel):
    agreement_id: str = Field(min_length=1)
    purpose: str | None = None
    event: str | None = None
    query: dict[str, Any] | None = None


async def explain_offer(request: Request) -> Response:
    """Would participant X get offer Y? No side effects."""
    question = await read_model(request, OfferQuestion)
    return JSONResponse(await simulate.would_get_offer(runtime_of(request), question.participant_id, question.offer_id))


async def explain_use(request: Request) -> Response:
    """Would this data request be allowed, and with which obligations? No side effects."""
    question = await read_model(request, UseQuestion)
    declared = usage.Declared(question.purpose, question.event, question.query)
    answer = await simulate.would_use(runtime_of(request), question.agreement_id, declared)
    return JSONResponse(answer)


# -- broker registration ---------------------------------------------------------------------------------


async def register(request: Request) -> Response:
    description = await read_model(request, registration.SelfDescription)
    return JSONResponse(await registration.register(runtime_of(request), description))


async def unregister(request: Request) -> Response:
    await registration.unregister(runtime_of(request))
    return Response(status_code=204)


# -- audit ------------------------------------------------------------------------------------------------


async def audit_entries(request: Request) -> Response:
    raw = request.query_params.get("limit", "100")
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_AUDIT_PAGE):
        raise BadRequest(f"limit must be an integer from 1 to {MAX_AUDIT_PAGE}")
    limit = int(raw)
    async with runtime_of(request).db.session() as session:
        found = await audit.entries(session, subject=request.query_params.get("subject"), limit=limit)
    return JSONResponse({"items": [e.content() | {"hash": e.hash} for e in found]})


async def audit_verify(request: Request) -> Response:
    """The chain recomputed and checked against the checkpoints others hold (`?local=true`: recomputed only)."""
    runtime = runtime_of(request)
    local = request.query_params.get("local", "false")
    if local not in ("true", "false"):
        raise BadRequest("local must be true or false")
    anchors = audit_check.Anchors()
    if local == "false":
        anchors = await audit_check.ask_holders(
            runtime.db,
            runtime.http,
            runtime.tokens,
            participant_id=runtime.participant_id,
            broker_url=runtime.config.broker_url,
            own_jwk=runtime.signer.jwk,
        )
    return JSONResponse((await audit_check.verify(runtime.db, anchors)).to_dict())


async def audit_checkpoints(request: Request) -> Response:
    """The checkpoints we made, newest first, and whom they went to."""
    async with runtime_of(request).db.session() as session:
        query = select(anchoring.MadeCheckpoint).order_by(col(anchoring.MadeCheckpoint.id).desc()).limit(100)
        made = await session.exec(query)
        return JSONResponse({"items": [checkpoint.public() for checkpoint in made]})


async def audit_receipts(request: Request) -> Response:
    """The checkpoints counter-parties filed with us (their chains' receipts we hold), newest first."""
    runtime = runtime_of(request)
    async with runtime.db.session() as session:
        query = select(receipts.HeldReceipt).order_by(col(receipts.HeldReceipt.id).desc()).limit(100)
        held = await session.exec(query)
        return JSONResponse({"items": [receipt.public(runtime.participant_id) for receipt in held]})


async def usage_report(request: Request) -> Response:
    async with runtime_of(request).db.session() as session:
        counters = await session.exec(select(usage.UsageCounter).order_by(col(usage.UsageCounter.agreement_id)))
        spent = {b.agreement_id: b.spent for b in await session.exec(select(privacy.PrivacyBudget))}
        items = [c.model_dump(mode="json") | {"epsilon_spent": spent.get(c.agreement_id, 0.0)} for c in counters]
        return JSONResponse({"items": items})


async def query_agreement(request: Request) -> Response:
    """A compute-to-data query, sent to the provider under the agreement; its answer as the provider gave it."""
    runtime = runtime_of(request)
    body = await read_body(request, dataplane.MAX_QUERY_BYTES, "the query")
    answer = await dataplane.send_query(runtime, request.path_params["id"], body)
    headers = {name: answer.headers[name] for name in (usage.LABELS_HEADER,) if name in answer.headers}
    return JSONResponse(answer.json(), headers=headers)


async def cross_border_filings(request: Request) -> Response:
    """The filing records of cross-border uses (出境 存证备案), oldest first."""
    async with runtime_of(request).db.session() as session:
        return JSONResponse({"items": await cross_border.filings(session)})


list_assets, get_asset = _collection(Asset)
list_policies, get_policy = _collection(UsagePolicy)
list_offers, get_offer = _collection(Offer)
list_negotiations, get_negotiation = _collection(Negotiation)
list_agreements, get_agreement = _collection(Agreement)
list_transfers, get_transfer = _collection(Transfer)
