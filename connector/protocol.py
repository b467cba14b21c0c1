"""Dataspace Protocol 2025-1 endpoints: catalog, contract negotiation and transfer process.

Every endpoint but the version document needs an access token from the cluster's authority; the
token's subject is the participant the message speaks for. Errors are DSP error messages
(`CatalogError`, `ContractNegotiationError`, `TransferError`), never a bare 500.
"""

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from sqlmodel import col, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connector import (
    agents,
    catalog,
    grades,
    negotiation_consumer,
    negotiation_provider,
    negotiations,
    processes,
    replies,
    timeline,
    transfer_consumer,
    transfer_provider,
    transfers,
)
from connector.assets import Asset
from connector.catalog import Offer, UsagePolicy
from connector.negotiations import Negotiation
from connector.processes import Process
from connector.runtime import Runtime, runtime_of
from connector.transfers import Transfer
from tessera import bodies, dsp
from tessera.errors import InvalidMessage, TesseraError, UnknownProcess
from tessera.identity import Caller, canonical_json, content_hash

logger = logging.getLogger("tessera.protocol")
MAX_MESSAGE_BYTES = 1024 * 1024
Handler = Callable[[Request], Awaitable[Response]]


async def authenticate(request: Request) -> Caller:
    """The caller its access token proves; a participant the broker suspended is refused (403)."""
    return await runtime_of(request).authenticate(request.headers.get("authorization"))


async def read_body(request: Request) -> bytes:
    return await bodies.read_body(request, MAX_MESSAGE_BYTES, "message")


Endpoint = Callable[[Request, Caller, bytes], Awaitable[tuple[int, dict[str, Any]]]]


def dsp_endpoint(kind: str) -> Callable[[Endpoint], Handler]:
    """Authenticate the caller, answer a repeated message as the first, render errors as DSP `kind`."""

    def decorate(endpoint: Endpoint) -> Handler:
        @functools.wraps(endpoint)
        async def handler(request: Request) -> Response:
            runtime, pending = runtime_of(request), None
            try:
                caller = await authenticate(request)
                body = await read_body(request)
                key = replies.digest(caller.participant_id, request.url.path, body) if body else None
                earlier = await replies.recall(runtime.db, key) if key else None
                if earlier and await _unchanged_since(request, kind, earlier[1]):
                    return JSONResponse(earlier[1], status_code=earlier[0])
                pending = request.state.reply = replies.Pending(key, earlier) if key else None
                status, document = await endpoint(request, caller, body)
                if pending:  # usually stored already, by the transaction that made the change
                    await replies.remember(runtime.db, pending, (status, document))
                return JSONResponse(document, status_code=status)
            except TesseraError as exc:
                if pending:
                    await replies.withdraw(runtime.db, pending)
                return await _error(request, kind, exc)

        return handler

    return decorate


async def _unchanged_since(request: Request, kind: str, answer: dict[str, Any]) -> bool:
    """A repeat is a retry only while the process is still where the first answer left it.

    DSP messages carry no id: the same suspension can legitimately come again after a resumption.
    """
    if not _names_process(request, kind):
        return True
    process = await _process(request, kind)
    return process is not None and process.state == answer.get("state")


async def _error(request: Request, kind: str, exc: TesseraError) -> Response:
    if exc.status_code >= 500:
        logger.error("%s failed: %s", request.url.path, exc.detail)
    provider_pid, consumer_pid = await _pids(request, kind)
    body = dsp.error(
        kind, provider_pid=provider_pid, consumer_pid=consumer_pid, code=str(exc.status_code), reason=exc.reasons
    )
    return JSONResponse(body, status_code=exc.status_code)


async def _pids(request: Request, kind: str) -> tuple[str | None, str | None]:
    process = await _process(request, kind)
    if process is None:
        return None, None
    return process.provider_pid, process.consumer_pid


_PROCESS_OF_ERROR: dict[str, type[Process]] = {"ContractNegotiationError": Negotiation, "TransferError": Transfer}


def _names_process(request: Request, kind: str) -> bool:
    """Whether the request's path names one of our negotiations or transfers (`kind` is its DSP error)."""
    return "pid" in request.path_params and kind in _PROCESS_OF_ERROR


async def _process(request: Request, kind: str) -> Process | None:
    """The negotiation or transfer the request's path names, if it exists."""
    if not _names_process(request, kind):
        return None
    async with runtime_of(request).db.session() as session:
        return await session.get(_PROCESS_OF_ERROR[kind], request.path_params["pid"])


# Access tokens are OAuth 2 client-credentials grants (RFC 7523 private_key_jwt) from the cluster's broker.
AUTH = {"protocol": "OAuth", "version": "2", "profile": ["client_credentials", "private_key_jwt"]}


async def version(request: Request) -> Response:
    """Where a peer finds us: the DSP path (below our public URL), the catalog's DataService id, the auth."""
    dsp_url = runtime_of(request).config.dsp_url
    path = urlsplit(dsp_url).path
    return JSONResponse(dsp.version_document(path, service_id=catalog.service_id_for(dsp_url), auth=AUTH))


# -- catalog ---------------------------------------------------------------------------------------------

PAGE_SIZE = 100


async def catalog_request(request: Request) -> Response:
    try:
        caller = await authenticate(request)
        message = dsp.parse(await read_body(request), dsp.CatalogRequest, expected_type="CatalogRequestMessage")
        if message.filter:
            raise InvalidMessage("catalog filters are not supported")
        offset, limit = _paging(request)
        runtime = runtime_of(request)
        datasets = await visible_datasets(runtime, caller)
        page = datasets[offset : offset + limit]
        body = catalog.catalog(runtime.participant_id, runtime.config.dsp_url, page)
    except TesseraError as exc:
        return await _error(request, "CatalogError", exc)
    # A crawler (the broker) revalidates with If-None-Match, so an unchanged catalog costs one hash.
    etag = '"' + content_hash(canonical_json(body)).removeprefix("sha256:") + '"'
    headers = {"ETag": etag} | _links(request, offset, limit, len(datasets))
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return JSONResponse(body, headers=headers)


def _paging(request: Request) -> tuple[int, int]:
    try:
        offset = int(request.query_params.get("offset", "0"))
        limit = int(request.query_params.get("limit", str(PAGE_SIZE)))
    except ValueError as exc:
        raise InvalidMessage("offset and limit must be integers") from exc
    if offset < 0 or not 1 <= limit <= 1000:
        raise InvalidMessage("offset must be >= 0 and limit between 1 and 1000")
    return offset, limit


def _links(request: Request, offset: int, limit: int, total: int) -> dict[str, str]:
    links = []
    if offset + limit < total:
        links.append(f'<{request.url.include_query_params(offset=offset + limit, limit=limit)}>; rel="next"')
    if offset > 0:
        links.append(
            f'<{request.url.include_query_params(offset=max(0, offset - limit), limit=limit)}>; rel="previous"'
        )
    return {"Link": ", ".join(links)} if links else {}


async def dataset_request(request: Request) -> Response:
    try:
        caller = await authenticate(request)
        wanted = request.path_params["id"]
        for found in await visible_datasets(runtime_of(request), caller):
            if found["@id"] == wanted:
                return JSONResponse({"@context": [dsp.CONTEXT], **found})
        raise UnknownProcess(f"no dataset {wanted}")
    except TesseraError as exc:
        return await _error(request, "CatalogError", exc)


async def visible_datasets(runtime: Runtime, caller: Caller) -> list[dict[str, Any]]:
    """Datasets with the offers the connector's rules by grade and their access policy admit the caller to,
    in a stable order."""
    async with runtime.db.session() as session:
        query = (
            select(Offer, Asset, UsagePolicy)
            .join(Asset)
            .join(UsagePolicy, col(Offer.usage_policy_id) == col(UsagePolicy.id))
            .order_by(col(Asset.created_at), col(Asset.id), col(Offer.id))
        )
        rows = (await session.exec(query)).all()
    by_asset: dict[str, tuple[Asset, list[dict[str, Any]]]] = {}
    claims, rules = caller.to_policy_input(), runtime.config.grades
    for offer, asset, policy in rows:
        if grades.offer_refusals(rules, asset, policy, claims, runtime.participant_id):
            continue
        if (await agents.access_decision(runtime, offer, caller)).allow:
            by_asset.setdefault(asset.id, (asset, []))[1].append(catalog.odrl_offer(offer, policy))
    service_id = catalog.service_id_for(runtime.config.dsp_url)
    return [catalog.dataset(asset, offers, service_id) for asset, offers in by_asset.values()]


# -- negotiation and transfer messages -------------------------------------------------------------------

# Our side's reaction to one message: (runtime, caller, [pid from the path,] message) -> the process after it.
Answered = Negotiation | Transfer
OnMessage = Callable[..., Awaitable[Answered]]


def _on(error: str, model: type[dsp.Message], kind: str, handle: OnMessage, *, status: int = 200) -> Handler:
    """The endpoint for one DSP message: parse it as `kind`, let `handle` act, answer the process."""

    # The provider answers an initial request with the process as requested, whatever it became meanwhile.
    initial_request = status == 201 and kind.endswith("RequestMessage")

    def answer(process: Answered) -> dict[str, Any]:
        return (processes.as_requested(process) if initial_request else process).dsp()

    @dsp_endpoint(error)
    async def endpoint(request: Request, caller: Caller, body: bytes) -> tuple[int, dict[str, Any]]:
        runtime, pid = runtime_of(request), request.path_params.get("pid")
        reply: replies.Pending | None = request.state.reply
        with timeline.receiving(kind, caller.participant_id, status, reply=reply, answer=answer) as receipt:
            outcome = await _handled(runtime, caller, pid, body)
        if isinstance(outcome, TesseraError):
            if not receipt.recorded:  # nothing changed: the refusal is recorded on its own
                await _received(runtime, error, pid, kind, caller, outcome.status_code, outcome.detail)
            raise outcome
        if outcome.id not in receipt.recorded:  # answered without a change (nothing left to do)
            await _received(runtime, error, outcome.id, kind, caller, status, None)
        return status, outcome.dsp()

    async def _handled(runtime: Runtime, caller: Caller, pid: str | None, body: bytes) -> Answered | TesseraError:
        try:
            message = dsp.parse(body, model, expected_type=kind)
            return await handle(runtime, caller, *([pid] if pid is not None else []), message)
        except TesseraError as exc:
            return exc

    return endpoint


async def _received(
    runtime: Runtime, error: str, pid: str | None, kind: str, caller: Caller, status: int, detail: str | None
) -> None:
    """Record a message on our process `pid` in its own transaction, if it is the sender's process."""
    model = _PROCESS_OF_ERROR[error]
    async with runtime.transaction() as session:
        process = await session.get(model, pid) if pid is not None else None
        if process is not None and process.counterparty_id == caller.participant_id:
            timeline.record(
                session, process.id, "received", kind, party=caller.participant_id, status=status, detail=detail
            )


def _get(error: str, find: Callable[..., Awaitable[Answered]]) -> Handler:
    @dsp_endpoint(error)
    async def endpoint(request: Request, caller: Caller, _body: bytes) -> tuple[int, dict[str, Any]]:
        async with runtime_of(request).db.session() as session:
            return 200, (await find(session, request.path_params["pid"], caller=caller)).dsp()

    return endpoint


async def _on_event(runtime: Runtime, caller: Caller, pid: str, message: dsp.NegotiationEvent) -> Answered:
    """ACCEPTED is for the provider, FINALIZED for the consumer."""
    handle = negotiation_provider.on_accepted if message.eventType == "ACCEPTED" else negotiation_consumer.on_finalized
    return await handle(runtime, caller, pid, message)


async def _on_start(runtime: Runtime, caller: Caller, pid: str, message: dsp.TransferStart) -> Answered:
    """A start resumes our transfer as provider, and starts (or restarts) it as consumer."""
    async with runtime.db.session() as session:
        role = (await transfers.find(session, pid, caller=caller)).role
    handle = transfer_provider.on_resume if role == "provider" else transfer_consumer.on_start
    return await handle(runtime, caller, pid, message)


def _update(state: str) -> OnMessage:
    """Completion, suspension or termination of a transfer by the counter-party."""

    async def handle(runtime: Runtime, caller: Caller, pid: str, message: dsp.TransferUpdate) -> Answered:
        return await transfers.on_update(runtime, caller, pid, message, state=state)

    return handle


N, T = "ContractNegotiationError", "TransferError"
# path, the error a refusal is rendered as, the message model and @type, who acts on it, the success status
MESSAGES: list[tuple[str, str, type[dsp.Message], str, OnMessage, int]] = [
    ("/negotiations/request", N, dsp.ContractRequest, "ContractRequestMessage", negotiation_provider.on_request, 201),
    ("/negotiations/offers", N, dsp.ContractOffer, "ContractOfferMessage", negotiation_consumer.on_initial_offer, 201),
    (
        "/negotiations/{pid}/request",
        N,
        dsp.ContractRequest,
        "ContractRequestMessage",
        negotiation_provider.on_counter_request,
        200,
    ),
    ("/negotiations/{pid}/offers", N, dsp.ContractOffer, "ContractOfferMessage", negotiation_consumer.on_offer, 200),
    (
        "/negotiations/{pid}/agreement",
        N,
        dsp.ContractAgreement,
        "ContractAgreementMessage",
        negotiation_consumer.on_agreement,
        200,
    ),
    (
        "/negotiations/{pid}/agreement/verification",
        N,
        dsp.AgreementVerification,
        "ContractAgreementVerificationMessage",
        negotiation_provider.on_verification,
        200,
    ),
    ("/negotiations/{pid}/events", N, dsp.NegotiationEvent, "ContractNegotiationEventMessage", _on_event, 200),
    (
        "/negotiations/{pid}/termination",
        N,
        dsp.Termination,
        "ContractNegotiationTerminationMessage",
        negotiations.on_termination,
        200,
    ),
    ("/transfers/request", T, dsp.TransferRequest, "TransferRequestMessage", transfer_provider.on_request, 201),
    ("/transfers/{pid}/start", T, dsp.TransferStart, "TransferStartMessage", _on_start, 200),
    ("/transfers/{pid}/completion", T, dsp.TransferUpdate, "TransferCompletionMessage", _update("COMPLETED"), 200),
    ("/transfers/{pid}/suspension", T, dsp.TransferUpdate, "TransferSuspensionMessage", _update("SUSPENDED"), 200),
    ("/transfers/{pid}/termination", T, dsp.TransferUpdate, "TransferTerminationMessage", _update("TERMINATED"), 200),
]

routes = [
    Route("/catalog/request", catalog_request, methods=["POST"]),
    Route("/catalog/datasets/{id:path}", dataset_request, methods=["GET"]),
    Route("/negotiations/{pid}", _get(N, negotiations.find), methods=["GET"]),
    Route("/transfers/{pid}", _get(T, transfers.find), methods=["GET"]),
    *(
        Route(path, _on(error, model, kind, handle, status=status), methods=["POST"])
        for path, error, model, kind, handle, status in MESSAGES
    ),
]
