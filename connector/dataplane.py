"""The data plane: HTTP pull and push of agreed data.

Provider: `GET /data/{transfer}` with the transfer's data token (plus token refresh and a consumer's
deletion reports); `connector.usage` decides the use and
shapes the data. Consumer: `pull` fetches from the provider's data address (refreshing an expired
data token once) and hands the stream on.
"""

from collections.abc import AsyncIterator, Mapping
from functools import partial
from typing import Any

import httpx
from sqlmodel import col, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from connector import copies, data_tokens, fast_path, transfer_consumer, transfer_provider, transfers, usage
from connector.compute import queries
from connector.runtime import Runtime, runtime_of
from connector.transfers import Transfer
from tessera import audit, dsp
from tessera.bodies import read_body
from tessera.errors import BadRequest, NotEntitled, NotFound, PeerError, TesseraError
from tessera.identity import bearer_token
from tessera.json import load_object
from tessera.labels import Labels

MAX_REPORT_BYTES = 64 * 1024  # a deletion report is a few fields
MAX_QUERY_BYTES = 64 * 1024  # a compute query: its SQL (at most 10,000 characters) and its ε


async def authorize_pull(
    runtime: Runtime, transfer_id: str, token: str, declared: usage.Declared, asked: fast_path.Asked | None = None
) -> usage.Use:
    """Check a pull request's data token, then decide the use by the usage policy."""
    claims = data_tokens.verify(runtime, token, transfer_id)
    async with runtime.db.session() as session:
        transfer = await session.get(Transfer, transfer_id)
    if transfer is None or transfer.role != "provider" or transfer.counterparty_id != claims["sub"]:
        raise NotFound(f"no transfer {transfer_id}")
    return await usage.decide_use(runtime, transfer, declared, asked)


# -- provider side: routes ----------------------------------------------------------------------------


async def data(request: Request) -> Response:
    runtime = runtime_of(request)
    token = bearer_token(request.headers.get("authorization"))
    declared, asked = usage.Declared.of(request.query_params), fast_path.Asked.of(request.headers)
    use = await authorize_pull(runtime, request.path_params["pid"], token, declared, asked)
    if use.fetch is not None:
        return fast_path.answer(use.fetch, use.headers, partial(usage.count_bytes, runtime, use))
    chunks, media_type = await usage.content(runtime, use)
    return StreamingResponse(chunks, media_type=media_type, headers=use.headers)


async def compute_query(request: Request) -> Response:
    """A compute-to-data query under the transfer's agreement, with its data token: JSON rows of aggregates."""
    runtime = runtime_of(request)
    token = bearer_token(request.headers.get("authorization"))
    body = await read_body(request, MAX_QUERY_BYTES, "the query")
    answer = await queries.answer(runtime, request.path_params["pid"], token, body)
    return JSONResponse(answer.public(), headers=answer.headers)


async def data_token(request: Request) -> Response:
    """A consumer whose data token expired trades its access token for a fresh one."""
    runtime = runtime_of(request)
    caller = await runtime.authenticate(request.headers.get("authorization"))
    token = await transfer_provider.refresh_token(runtime, caller, request.path_params["pid"])
    return JSONResponse({"token": token})


async def deletion(request: Request) -> Response:
    """A consumer reports that it deleted its copy, as a delete-after obligation required."""
    runtime = runtime_of(request)
    caller = await runtime.authenticate(request.headers.get("authorization"))
    body = await read_body(request, MAX_REPORT_BYTES, "the deletion report")
    report = load_object(body, "the deletion report", BadRequest)
    async with runtime.transaction() as session:
        transfer = await transfers.find(session, request.path_params["pid"], caller=caller, role="provider")
        await audit.append(
            session,
            actor=caller.participant_id,
            action="usage.deleted",
            subject=transfer.agreement_id,
            transfer=transfer.id,
            copy=report.get("copy"),
            deleted_at=report.get("deleted_at"),
            due=report.get("due"),
            reported_by=caller.participant_id,
        )
    return JSONResponse({"recorded": True})


async def pushed(request: Request) -> Response:
    """A provider pushes a push transfer's data to us."""
    runtime = runtime_of(request)
    token = bearer_token(request.headers.get("authorization"))
    media_type = request.headers.get("content-type", "application/octet-stream")
    delete_after = request.headers.get(usage.DELETE_AFTER_HEADER)
    labels = request.headers.get(usage.LABELS_HEADER)
    await transfer_consumer.receive_push(
        runtime, request.path_params["pid"], token, media_type, delete_after, labels, request.stream()
    )
    return JSONResponse({"received": True})


routes = [
    Route("/data/{pid}", data, methods=["GET"]),
    Route("/data/{pid}/query", compute_query, methods=["POST"]),
    Route("/data/{pid}/token", data_token, methods=["POST"]),
    Route("/data/{pid}/deletion", deletion, methods=["POST"]),
    Route("/push/{pid}", pushed, methods=["POST"]),
]


# -- consumer side ----------------------------------------------------------------------------------------


class Pull:
    """An open response from the provider's data plane; iterate it, then it closes."""

    def __init__(self, response: httpx.Response, delete_after: copies.DeleteAfter, labels: Labels | None) -> None:
        self.response = response
        self.media_type = response.headers.get("content-type", "application/octet-stream")
        self.delete_after = delete_after  # when the provider's delete-after obligation wants our copy gone
        self.labels = labels  # what the provider says the data is (None: a provider that labels nothing)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.response.aiter_raw():
                yield chunk
        finally:
            await self.response.aclose()


RANGE_HEADERS = ("range", "if-range")  # passed on to the provider as the caller sent them
ANSWERED = {200, 206, 416}  # the provider's answers handed on: the data, a range of it, no such range


async def pull(
    runtime: Runtime, transfer_id: str, declared: Mapping[str, str], headers: Mapping[str, str] | None = None
) -> Pull:
    """Open the provider's data for a started pull transfer, refreshing an expired data token once;
    `declared` are the pull's purpose, event and query parameters (`usage.Declared.PARAMETERS`), sent on,
    and so are `headers`' `Range` and `If-Range`: the answer may be 206 or 416 (`Pull.response`)."""
    async with runtime.db.session() as session:
        transfer = await session.get(Transfer, transfer_id)
    if transfer is None or transfer.role != "consumer":
        raise NotFound(f"no transfer {transfer_id} on the consumer side")
    if transfer.state != "STARTED" or not transfer.data_address:
        raise NotEntitled(f"transfer {transfer_id} is {transfer.state}; no data address yet")
    address = transfer.data_address
    params = {name: declared[name] for name in usage.Declared.PARAMETERS if name in declared}
    ranges = {name: value for name, value in (headers or {}).items() if name.lower() in RANGE_HEADERS}
    response = await _get(runtime, address, params, ranges)
    if response.status_code == 401 and _bearer(address):
        address = await _refresh(runtime, transfer, address)
        response = await _get(runtime, address, params, ranges)
    if response.status_code not in ANSWERED:
        await response.aread()
        await response.aclose()
        raise _provider_refusal(response)
    delete_after = copies.deadline(response.headers.get(usage.DELETE_AFTER_HEADER))
    try:
        labels = copies.labels_of(response.headers.get(usage.LABELS_HEADER))
    except PeerError:
        await response.aclose()
        raise
    async with runtime.transaction() as session:
        await audit.append(
            session,
            actor=runtime.participant_id,
            action="transfer.pulled",
            subject=transfer_id,
            purpose=declared.get("purpose"),
            **({"range": ranges} if ranges else {}),
        )
    return Pull(response, delete_after, labels)


def pull_headers(address: dict[str, Any]) -> dict[str, str]:
    """The headers a pull sends, as the data address says.

    `authorization` (+ `authType`, default bearer): `Authorization: <type> <token>`, as DSP connectors
    (Tessera, EDC) issue it; `authKey` + `authCode`: that header with that value (EDC's HttpData);
    neither: an open endpoint, pulled without credentials.
    """
    token = dsp.endpoint_property(address, "authorization")
    if token is not None:
        scheme = dsp.endpoint_property(address, "authType") or "bearer"
        return {"Authorization": f"{scheme.capitalize()} {token}"}
    key, code = dsp.endpoint_property(address, "authKey"), dsp.endpoint_property(address, "authCode")
    if key and code is not None:
        return {key: code}
    return {}


def _bearer(address: dict[str, Any]) -> bool:
    """Whether the address carries a data token that a 401 means is expired (refreshable at the provider)."""
    return pull_headers(address).get("Authorization", "").startswith("Bearer ")


async def _get(
    runtime: Runtime, address: dict[str, Any], params: dict[str, str], ranges: dict[str, str]
) -> httpx.Response:
    try:
        headers = pull_headers(address) | ranges
        request = runtime.http.build_request("GET", address["endpoint"], params=params, headers=headers)
        return await runtime.http.send(request, stream=True)
    except httpx.InvalidURL as exc:
        raise PeerError(f"the provider's data address is no URL we can pull from: {exc}") from exc
    except httpx.TransportError as exc:
        raise PeerError(f"the provider's data plane is unreachable: {exc}") from exc


async def _refresh(runtime: Runtime, transfer: Transfer, address: dict[str, Any]) -> dict[str, Any]:
    """Trade our access token for a fresh data token at the provider's data plane."""
    url = address["endpoint"].rstrip("/") + "/token"
    try:
        response = await runtime.http.post(url, headers=await runtime.authorization(transfer.counterparty_id))
    except httpx.TransportError as exc:
        raise PeerError(f"the provider's data plane is unreachable: {exc}") from exc
    if response.status_code != 200:
        raise _provider_refusal(response)
    fresh = dsp.data_address(address["endpoint"], response.json()["token"])
    async with runtime.transaction() as session:
        stored = await session.get(Transfer, transfer.id)
        assert stored is not None
        stored.data_address = fresh
    return fresh


def _provider_refusal(response: httpx.Response) -> TesseraError:
    try:
        problem = response.json()
    except ValueError:
        problem = {}
    detail = str(problem.get("detail") or response.text[:300])
    reasons = [str(r) for r in problem.get("reasons") or [detail]]
    error = NotEntitled(f"provider refused: {detail}", reasons=reasons)
    error.status_code = response.status_code if 400 <= response.status_code < 500 else 502
    return error


async def send_query(runtime: Runtime, agreement_id: str, body: bytes) -> httpx.Response:
    """Send a compute query to the provider under an agreement, through its started pull transfer (whose
    data token proves we are the agreement's consumer), refreshing an expired data token once."""
    async with runtime.db.session() as session:
        found = await session.exec(
            select(Transfer)
            .where(col(Transfer.agreement_id) == agreement_id, col(Transfer.role) == "consumer")
            .where(col(Transfer.state) == "STARTED", col(Transfer.data_address).is_not(None))
        )
        transfer = next((t for t in found.all() if not t.is_push), None)
    if transfer is None:
        raise NotEntitled(f"agreement {agreement_id} has no started pull transfer here; start one to query")
    address = transfer.data_address
    assert address is not None  # selected with one
    response = await _post_query(runtime, address, body)
    if response.status_code == 401 and _bearer(address):
        address = await _refresh(runtime, transfer, address)
        response = await _post_query(runtime, address, body)
    if response.status_code == 400:  # the query itself: the provider's words, as a bad request here too
        raise BadRequest(
            f"provider refused the query: {_provider_refusal(response).detail.removeprefix('provider refused: ')}"
        )
    if response.status_code != 200:
        raise _provider_refusal(response)
    return response


async def _post_query(runtime: Runtime, address: dict[str, Any], body: bytes) -> httpx.Response:
    url = address["endpoint"].rstrip("/") + "/query"
    headers = pull_headers(address) | {"Content-Type": "application/json"}
    try:
        return await runtime.http.post(url, content=body, headers=headers, timeout=60)
    except httpx.TransportError as exc:
        raise PeerError(f"the provider's data plane is unreachable: {exc}") from exc
