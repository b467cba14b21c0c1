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
    negotiation_consumer,
    negotiation_provider,
    negotiations,
    replies,
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
from tessera import dsp
from tessera.errors import InvalidMessage, TesseraError, UnknownProcess
from tessera.identity import Caller, bearer_token, canonical_json, content_hash

logger = logging.getLogger("tessera.protocol")
MAX_MESSAGE_BYTES = 1024 * 1024
Handler = Callable[[Request], Awaitable[Response]]


async def authenticate(request: Request) -> Caller:
    return await runtime_of(request).verifier.verify(bearer_token(request.headers.get("authorization")))


async def read_body(request: Request) -> bytes:
    body = await request.body()
    if len(body) > MAX_MESSAGE_BYTES:
        raise InvalidMessage(f"message larger than {MAX_MESSAGE_BYTES} bytes")
    return body


Endpoint = Callable[[Request, Caller, bytes], Awaitable[tuple[int, dict[str, Any]]]]


def dsp_endpoint(kind: str) -> Callable[[Endpoint], Handler]:
    """Authenticate the caller, answer a repeated message as the first, render errors as DSP `kind`."""

    def decorate(endpoint: Endpoint) -> Handler:
        @functools.wraps(endpoint)
        async def handler(request: Request) -> Response:
            runtime = runtime_of(request)
            try:
                caller = await authenticate(request)
                body = await read_body(request)
                key = replies.digest(caller.participant_id, request.url.path, body) if body else None
                earlier = await replies.recall(runtime.db, key) if key else None
                if earlier and await _unchanged_since(request, kind, earlier[1]):
                    return JSONResponse(earlier[1], status_code=earlier[0])
                status, document = await endpoint(request, caller, body)
                if key:
                    await replies.remember(runtime.db, key, status, document)
                return JSONResponse(document, status_code=status)
            except TesseraError as exc:
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
    """Datasets with the offers whose access policy admits the caller, in a stable order."""
    async with runtime.db.session() as session:
        query = (
            select(Offer, Asset, UsagePolicy)
            .join(Asset)
            .join(UsagePolicy, col(Offer.usage_policy_id) == col(UsagePolicy.id))
            .order_by(col(Asset.created_at), col(Asset.id), col(Offer.id))
        )
        rows = (await session.exec(query)).all()
    by_asset: dict[str, tuple[Asset, list[dict[str, Any]]]] = {}
    for offer, asset, policy in rows:
        if (await agents.access_decision(runtime, offer, caller)).allow:
            by_asset.setdefault(asset.id, (asset, []))[1].append(catalog.odrl_offer(offer, policy))
    service_id = catalog.service_id_for(runtime.config.dsp_url)
    return [catalog.dataset(asset, offers, service_id) for asset, offers in by_asset.values()]


# -- negotiation -------------------------------------------------------------------------------------------


@dsp_endpoint("ContractNegotiationError")
async def negotiation_get(request: Request, caller: Caller, _body: bytes) -> tuple[int, dict[str, Any]]:
    async with runtime_of(request).db.session() as session:
        negotiation = await negotiations.find(session, request.path_params["pid"], caller=caller)
    return 200, negotiation.dsp()


@dsp_endpoint("ContractNegotiationError")
async def negotiation_request(request: Request, caller: Caller, body: bytes) -> tuple[int, dict[str, Any]]:
    message = dsp.parse(body, dsp.ContractRequest, expected_type="ContractRequestMessage")
    return 201, (await negotiation_provider.on_request(runtime_of(request), caller, message)).dsp()


@dsp_endpoint("ContractNegotiationError")
async def negotiation_counter_request(request: Request, caller: Caller, body: bytes) -> tuple[int, dict[str, Any]]:
    message = dsp.parse(body, dsp.ContractRequest, expected_type="ContractRequestMessage")
    pid = request.path_params["pid"]
    return 200, (await negotiation_provider.on_counter_request(runtime_of(request), caller, pid, message)).dsp()


@dsp_endpoint("ContractNegotiationError")
async def negotiation_initial_offer(request: Request, caller: Caller, body: bytes) -> tuple[int, dict[str, Any]]:
    message = dsp.parse(body, dsp.ContractOffer, expected_type="ContractOfferMessage")
    return 201, (await negotiation_consumer.on_initial_offer(runtime_of(request), caller, message)).dsp()


@dsp_endpoint("ContractNegotiationError")
async def negotiation_offer(request: Request, caller: Caller, body: bytes) -> tuple[int, dict[str, Any]]:
    message = dsp.parse(body, dsp.ContractOffer, expected_type="ContractOfferMessage")
    return 200, (
        await negotiation_consumer.on_offer(runtime_of(request), caller, request.path_params["pid"], message)
    ).dsp()


@dsp_endpoint("ContractNegotiationError")
async def negotiation_agreement(request: Request, caller: Caller, body: bytes) -> tuple[int, dict[str, Any]]:
    message = dsp.parse(body, dsp.ContractAgreement, expected_type="ContractAgreementMessage")
    return 200, (
        await negotiation_consumer.on_agreement(runtime_of(request), caller, request.path_params["pid"], message)
    ).dsp()


@dsp_endpoint("ContractNegotiationError")
async def negotiation_verification(request: Request, caller: Caller, body: bytes) -> tuple[int, dict[str, Any]]:
    message = dsp.parse(body, dsp.AgreementVerification, expected_type="ContractAgreementVerificationMessage")
    pid = request.path_params["pid"]
    return 200, (await negotiation_provider.on_verification(runtime_of(request), caller, pid, message)).dsp()


@dsp_endpoint("ContractNegotiationError")
async def negotiation_event(request: Request, caller: Caller, body: bytes) -> tuple[int, dict[str, Any]]:
    message = dsp.parse(body, dsp.NegotiationEvent, expected_type="ContractNegotiationEventMessage")
    handle = negotiation_provider.on_accepted if message.eventType == "ACCEPTED" else negotiation_consumer.on_finalized
    return 200, (await handle(runtime_of(request), caller, request.path_params["pid"], message)).dsp()


@dsp_endpoint("ContractNegotiationError")
async def negotiation_termination(request: Request, caller: Caller, body: bytes) -> tuple[int, dict[str, Any]]:
    message = dsp.parse(body, dsp.Termination, expected_type="ContractNegotiationTerminationMessage")
    pid = request.path_params["pid"]
    return 200, (await negotiations.on_termination(runtime_of(request), caller, pid, message)).dsp()


# -- transfer ----------------------------------------------------------------------------------------------


@dsp_endpoint("TransferError")
async def transfer_get(request: Request, caller: Caller, _body: bytes) -> tuple[int, dict[str, Any]]:
    async with runtime_of(request).db.session() as session:
        transfer = await transfers.find(session, request.path_params["pid"], caller=caller)
    return 200, transfer.dsp()


@dsp_endpoint("TransferError")
async def transfer_request(request: Request, caller: Caller, body: bytes) -> tuple[int, dict[str, Any]]:
    message = dsp.parse(body, dsp.TransferRequest, expected_type="TransferRequestMessage")
    return 201, (await transfer_provider.on_request(runtime_of(request), caller, message)).dsp()


@dsp_endpoint("TransferError")
async def transfer_start(request: Request, caller: Caller, body: bytes) -> tuple[int, dict[str, Any]]:
    pid = request.path_params["pid"]
    message = dsp.parse(body, dsp.TransferStart, expected_type="TransferStartMessage")
    async with runtime_of(request).db.session() as session:
        role = (await transfers.find(session, pid, caller=caller)).role
    handle = transfer_provider.on_resume if role == "provider" else transfer_consumer.on_start
    return 200, (await handle(runtime_of(request), caller, pid, message)).dsp()


def _transfer_update(kind: str, state: str) -> Handler:
    @dsp_endpoint("TransferError")
    async def endpoint(request: Request, caller: Caller, body: bytes) -> tuple[int, dict[str, Any]]:
        message = dsp.parse(body, dsp.TransferUpdate, expected_type=kind)
        pid = request.path_params["pid"]
        return 200, (await transfers.on_update(runtime_of(request), caller, pid, message, state=state)).dsp()

    return endpoint


routes = [
    Route("/catalog/request", catalog_request, methods=["POST"]),
    Route("/catalog/datasets/{id:path}", dataset_request, methods=["GET"]),
    Route("/negotiations/request", negotiation_request, methods=["POST"]),
    Route("/negotiations/offers", negotiation_initial_offer, methods=["POST"]),
    Route("/negotiations/{pid}", negotiation_get, methods=["GET"]),
    Route("/negotiations/{pid}/request", negotiation_counter_request, methods=["POST"]),
    Route("/negotiations/{pid}/offers", negotiation_offer, methods=["POST"]),
    Route("/negotiations/{pid}/agreement", negotiation_agreement, methods=["POST"]),
    Route("/negotiations/{pid}/agreement/verification", negotiation_verification, methods=["POST"]),
    Route("/negotiations/{pid}/events", negotiation_event, methods=["POST"]),
    Route("/negotiations/{pid}/termination", negotiation_termination, methods=["POST"]),
    Route("/transfers/request", transfer_request, methods=["POST"]),
    Route("/transfers/{pid}", transfer_get, methods=["GET"]),
    Route("/transfers/{pid}/start", transfer_start, methods=["POST"]),
    Route("/transfers/{pid}/completion", _transfer_update("TransferCompletionMessage", "COMPLETED"), methods=["POST"]),
    Route("/transfers/{pid}/suspension", _transfer_update("TransferSuspensionMessage", "SUSPENDED"), methods=["POST"]),
    Route(
        "/transfers/{pid}/termination", _transfer_update("TransferTerminationMessage", "TERMINATED"), methods=["POST"]
    ),
]
