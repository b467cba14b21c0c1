"""The connector application: DSP endpoints, the data plane and the management API in one ASGI app.

```
/.well-known/dspace-version   DSP version metadata (no token)
/dsp/...                      Dataspace Protocol 2025-1 (access token from the cluster's authority)
/data/{transfer}              data plane (the transfer's data token)
/api/...                      management API (the connector's API key)
/health                       liveness
```
"""

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route

from connector import audit, copies, dataplane, management, protocol, usage
from connector.config import DSP_PATH, ConnectorConfig
from connector.errors import BadRequest
from connector.identity import bearer_token
from connector.negotiation import Negotiation
from connector.negotiation import process as negotiations
from connector.outbox import OutboxMessage
from connector.problems import problem_handlers
from connector.runtime import Runtime
from connector.transfer import Transfer, consumer, provider
from connector.transfer import process as transfer_process


async def health(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def data(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    token = bearer_token(request.headers.get("authorization"))
    purpose = request.query_params.get("purpose")
    use = await dataplane.authorize_pull(runtime, request.path_params["pid"], token, purpose, _query(request))
    chunks, media_type = await usage.content(runtime, use)
    return StreamingResponse(chunks, media_type=media_type, headers=use.headers)


def _query(request: Request) -> dict[str, Any] | None:
    """An aggregate query, `?query={"group_by": [...], "metrics": [...]}`, for aggregate-only data."""
    text = request.query_params.get("query")
    if text is None:
        return None
    try:
        query = json.loads(text)
    except ValueError as exc:
        raise BadRequest(f"query is not JSON: {exc}") from exc
    if not isinstance(query, dict):
        raise BadRequest("query must be a JSON object")
    return query


async def data_token(request: Request) -> Response:
    """A consumer whose data token expired trades its access token for a fresh one."""
    runtime: Runtime = request.app.state.runtime
    caller = await runtime.verifier.verify(bearer_token(request.headers.get("authorization")))
    token = await provider.refresh_token(runtime, caller, request.path_params["pid"])
    return JSONResponse({"token": token})


async def deletion(request: Request) -> Response:
    """A consumer reports that it deleted its copy, as a delete-after obligation required."""
    runtime: Runtime = request.app.state.runtime
    caller = await runtime.verifier.verify(bearer_token(request.headers.get("authorization")))
    try:
        report = json.loads(await request.body())
    except ValueError as exc:
        raise BadRequest(f"the deletion report is not JSON: {exc}") from exc
    if not isinstance(report, dict):
        raise BadRequest("the deletion report must be a JSON object")
    async with runtime.transaction() as session:
        transfer = await transfer_process.find(session, request.path_params["pid"], caller=caller, role="provider")
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
    runtime: Runtime = request.app.state.runtime
    token = bearer_token(request.headers.get("authorization"))
    media_type = request.headers.get("content-type", "application/octet-stream")
    delete_at = request.headers.get(usage.DELETE_AFTER_HEADER)
    await consumer.receive_push(runtime, request.path_params["pid"], token, media_type, delete_at, request.stream())
    return JSONResponse({"received": True})


async def abandon_process(runtime: Runtime, message: OutboxMessage) -> None:
    """A message the counter-party will never receive ends its process on our side."""
    reason = f"the counter-party could not be told: {message.last_error}"
    await negotiations.abandon(runtime, message.process_id, reason)
    await transfer_process.abandon(runtime, message.process_id, reason)


INITIAL_REQUESTS = ("ContractRequestMessage", "TransferRequestMessage")


async def learn_pids(runtime: Runtime, message: OutboxMessage, reply: Any) -> None:
    """The answer to an initial request names the counter-party's pid; remember it."""
    initial = (
        message.kind in ("ContractRequestMessage", "TransferRequestMessage") and '"providerPid"' not in message.body
    )
    if not initial or not isinstance(reply, dict) or not isinstance(reply.get("providerPid"), str):
        return
    async with runtime.transaction() as session:
        for model in (Negotiation, Transfer):
            process = await session.get(model, message.process_id)
            if process is not None and process.role == "consumer" and process.provider_pid is None:
                process.provider_pid = reply["providerPid"]


def create_app(config: ConnectorConfig) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async def on_undeliverable(message: OutboxMessage) -> None:
            await abandon_process(app.state.runtime, message)

        async def on_reply(message: OutboxMessage, reply: Any) -> None:
            await learn_pids(app.state.runtime, message, reply)

        async with Runtime.running(config, on_undeliverable=on_undeliverable, on_reply=on_reply) as runtime:
            app.state.runtime = runtime
            sweeper = copies.Sweeper(runtime)
            runtime.wake_sweeper = sweeper.wake
            runtime.spawn(sweeper.run())
            await provider.resume_pushes(runtime)
            yield

    routes = [
        Route("/.well-known/dspace-version", protocol.version, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/data/{pid}", data, methods=["GET"]),
        Route("/data/{pid}/token", data_token, methods=["POST"]),
        Route("/data/{pid}/deletion", deletion, methods=["POST"]),
        Route("/push/{pid}", pushed, methods=["POST"]),
        Mount(DSP_PATH, routes=protocol.routes),
        Mount(
            "/api",
            routes=management.routes,
            middleware=[Middleware(management.RequireApiKey, token=config.management_token)],
        ),
    ]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers=problem_handlers())
