"""Dataspace Protocol 2025-1 endpoints: catalog, contract negotiation and transfer process.

Every endpoint but the version document needs an access token from the cluster's authority; the
token's subject is the participant the message speaks for. Errors are DSP error messages
(`CatalogError`, `ContractNegotiationError`, `TransferError`), never a bare 500.
"""

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlmodel import select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connector import catalog, dsp
from connector.assets import Asset
from connector.catalog import Offer, UsagePolicy
from connector.config import DSP_PATH
from connector.errors import InvalidMessage, TesseraError, UnknownProcess
from connector.identity import Caller, bearer_token, canonical_json, content_hash
from connector.negotiation import Negotiation, agents, consumer, process, provider
from connector.runtime import Runtime
from connector.transfer import Transfer
from connector.transfer import consumer as transfer_consumer
from connector.transfer import process as transfer_process
from connector.transfer import provider as transfer_provider

logger = logging.getLogger("tessera.protocol")
MAX_MESSAGE_BYTES = 1024 * 1024
Handler = Callable[[Request], Awaitable[Response]]


def runtime_of(request: Request) -> Runtime:
    return request.app.state.runtime


async def authenticate(request: Request) -> Caller:
    return await runtime_of(request).verifier.verify(bearer_token(request.headers.get("authorization")))


async def read_body(request: Request) -> bytes:
    body = await request.body()
    if len(body) > MAX_MESSAGE_BYTES:
        raise InvalidMessage(f"message larger than {MAX_MESSAGE_BYTES} bytes")
    return body


def dsp_errors(kind: str) -> Callable[[Handler], Handler]:
    """Render our errors as the DSP error message `kind`, naming the process when we know it."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapper(request: Request) -> Response:
            try:
                return await handler(request)
            except TesseraError as exc:
                if exc.status_code >= 500:
                    logger.error("%s failed: %s", request.url.path, exc.detail)
                provider_pid, consumer_pid = await _pids(request, kind)
                body = dsp.error(
                    kind,
                    provider_pid=provider_pid,
                    consumer_pid=consumer_pid,
                    code=str(exc.status_code),
                    reason=exc.reasons,
                )
                return JSONResponse(body, status_code=exc.status_code)

        return wrapper

    return decorate


async def _pids(request: Request, kind: str) -> tuple[str | None, str | None]:
    pid = request.path_params.get("pid")
    model = {"ContractNegotiationError": Negotiation, "TransferError": Transfer}.get(kind)
    if pid is None or model is None:
        return None, None
    async with runtime_of(request).db.session() as session:
        process = await session.get(model, pid)
    if process is None:
        return None, None
    return process.provider_pid, process.consumer_pid


def ok(body: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status)


async def version(request: Request) -> Response:
    return ok(dsp.version_document(DSP_PATH))


# -- catalog ---------------------------------------------------------------------------------------------


@dsp_errors("CatalogError")
async def catalog_request(request: Request) -> Response:
    caller = await authenticate(request)
    message = dsp.parse(await read_body(request), dsp.CatalogRequest, expected_type="CatalogRequestMessage")
    if message.filter:
        raise InvalidMessage("catalog filters are not supported")
    runtime = runtime_of(request)
    datasets = await visible_datasets(runtime, caller)
    body = catalog.catalog(runtime.participant_id, runtime.config.dsp_url, datasets)
    # A crawler (the broker) revalidates with If-None-Match, so an unchanged catalog costs one hash.
    etag = '"' + content_hash(canonical_json(body)).removeprefix("sha256:") + '"'
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers={"ETag": etag})
    return JSONResponse(body, headers={"ETag": etag})


@dsp_errors("CatalogError")
async def dataset_request(request: Request) -> Response:
    caller = await authenticate(request)
    runtime = runtime_of(request)
    wanted = request.path_params["id"]
    for found in await visible_datasets(runtime, caller):
        if found["@id"] == wanted:
            return ok({"@context": [dsp.CONTEXT], **found})
    raise UnknownProcess(f"no dataset {wanted}")


async def visible_datasets(runtime: Runtime, caller: Caller) -> list[dict[str, Any]]:
    """Datasets with the offers whose access policy admits the caller."""
    async with runtime.db.session() as session:
        rows = (
            await session.exec(
                select(Offer, Asset, UsagePolicy).join(Asset).join(UsagePolicy, Offer.usage_policy_id == UsagePolicy.id)
            )
        ).all()  # type: ignore[arg-type]
    by_asset: dict[str, tuple[Asset, list[dict[str, Any]]]] = {}
    for offer, asset, policy in rows:
        if (await agents.access_decision(runtime, offer, caller)).allow:
            by_asset.setdefault(asset.id, (asset, []))[1].append(catalog.odrl_offer(offer, policy))
    service_id = catalog.service_id_for(runtime.config.dsp_url)
    return [catalog.dataset(asset, offers, service_id) for asset, offers in by_asset.values()]


# -- negotiation -------------------------------------------------------------------------------------------


@dsp_errors("ContractNegotiationError")
async def negotiation_get(request: Request) -> Response:
    caller = await authenticate(request)
    async with runtime_of(request).db.session() as session:
        negotiation = await process.find(session, request.path_params["pid"], caller=caller)
    return ok(negotiation.dsp())


@dsp_errors("ContractNegotiationError")
async def negotiation_request(request: Request) -> Response:
    caller = await authenticate(request)
    message = dsp.parse(await read_body(request), dsp.ContractRequest, expected_type="ContractRequestMessage")
    negotiation = await provider.on_request(runtime_of(request), caller, message)
    return ok(negotiation.dsp(), status=201)


@dsp_errors("ContractNegotiationError")
async def negotiation_counter_request(request: Request) -> Response:
    caller = await authenticate(request)
    message = dsp.parse(await read_body(request), dsp.ContractRequest, expected_type="ContractRequestMessage")
    negotiation = await provider.on_counter_request(runtime_of(request), caller, request.path_params["pid"], message)
    return ok(negotiation.dsp())


@dsp_errors("ContractNegotiationError")
async def negotiation_initial_offer(request: Request) -> Response:
    caller = await authenticate(request)
    message = dsp.parse(await read_body(request), dsp.ContractOffer, expected_type="ContractOfferMessage")
    negotiation = await consumer.on_initial_offer(runtime_of(request), caller, message)
    return ok(negotiation.dsp(), status=201)


@dsp_errors("ContractNegotiationError")
async def negotiation_offer(request: Request) -> Response:
    caller = await authenticate(request)
    message = dsp.parse(await read_body(request), dsp.ContractOffer, expected_type="ContractOfferMessage")
    negotiation = await consumer.on_offer(runtime_of(request), caller, request.path_params["pid"], message)
    return ok(negotiation.dsp())


@dsp_errors("ContractNegotiationError")
async def negotiation_agreement(request: Request) -> Response:
    caller = await authenticate(request)
    message = dsp.parse(await read_body(request), dsp.ContractAgreement, expected_type="ContractAgreementMessage")
    negotiation = await consumer.on_agreement(runtime_of(request), caller, request.path_params["pid"], message)
    return ok(negotiation.dsp())


@dsp_errors("ContractNegotiationError")
async def negotiation_verification(request: Request) -> Response:
    caller = await authenticate(request)
    body = await read_body(request)
    message = dsp.parse(body, dsp.AgreementVerification, expected_type="ContractAgreementVerificationMessage")
    negotiation = await provider.on_verification(runtime_of(request), caller, request.path_params["pid"], message)
    return ok(negotiation.dsp())


@dsp_errors("ContractNegotiationError")
async def negotiation_event(request: Request) -> Response:
    caller = await authenticate(request)
    message = dsp.parse(await read_body(request), dsp.NegotiationEvent, expected_type="ContractNegotiationEventMessage")
    handle = provider.on_accepted if message.eventType == "ACCEPTED" else consumer.on_finalized
    negotiation = await handle(runtime_of(request), caller, request.path_params["pid"], message)
    return ok(negotiation.dsp())


@dsp_errors("ContractNegotiationError")
async def negotiation_termination(request: Request) -> Response:
    caller = await authenticate(request)
    body = await read_body(request)
    message = dsp.parse(body, dsp.Termination, expected_type="ContractNegotiationTerminationMessage")
    negotiation = await process.on_termination(runtime_of(request), caller, request.path_params["pid"], message)
    return ok(negotiation.dsp())


# -- transfer ----------------------------------------------------------------------------------------------


@dsp_errors("TransferError")
async def transfer_get(request: Request) -> Response:
    caller = await authenticate(request)
    async with runtime_of(request).db.session() as session:
        transfer = await transfer_process.find(session, request.path_params["pid"], caller=caller)
    return ok(transfer.dsp())


@dsp_errors("TransferError")
async def transfer_request(request: Request) -> Response:
    caller = await authenticate(request)
    message = dsp.parse(await read_body(request), dsp.TransferRequest, expected_type="TransferRequestMessage")
    transfer = await transfer_provider.on_request(runtime_of(request), caller, message)
    return ok(transfer.dsp(), status=201)


@dsp_errors("TransferError")
async def transfer_start(request: Request) -> Response:
    caller = await authenticate(request)
    pid = request.path_params["pid"]
    message = dsp.parse(await read_body(request), dsp.TransferStart, expected_type="TransferStartMessage")
    async with runtime_of(request).db.session() as session:
        role = (await transfer_process.find(session, pid, caller=caller)).role
    handle = transfer_provider.on_resume if role == "provider" else transfer_consumer.on_start
    transfer = await handle(runtime_of(request), caller, pid, message)
    return ok(transfer.dsp())


def _transfer_update(kind: str, state: str) -> Handler:
    @dsp_errors("TransferError")
    async def handler(request: Request) -> Response:
        caller = await authenticate(request)
        message = dsp.parse(await read_body(request), dsp.TransferUpdate, expected_type=kind)
        transfer = await transfer_process.on_update(
            runtime_of(request), caller, request.path_params["pid"], message, state=state
        )
        return ok(transfer.dsp())

    return handler


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
