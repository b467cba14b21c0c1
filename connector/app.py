"""The connector application: DSP endpoints, the data plane and the management API in one ASGI app.

```
/.well-known/dspace-version   DSP version metadata (no token)
/dsp/...                      Dataspace Protocol 2025-1 (access token from the cluster's authority)
/data/{transfer}              data plane (the transfer's data token)
/api/...                      management API (the connector's API key)
/health                       liveness
```
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route

from connector import dataplane, management, protocol, transfers
from connector.config import DSP_PATH, ConnectorConfig
from connector.identity import bearer_token
from connector.negotiation import process as negotiations
from connector.outbox import OutboxMessage
from connector.problems import problem_handlers
from connector.runtime import Runtime


async def health(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def data(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    token = bearer_token(request.headers.get("authorization"))
    purpose = request.query_params.get("purpose")
    asset, decision = await dataplane.authorize(runtime, request.path_params["pid"], token, purpose)
    chunks, media_type = dataplane.stream(asset, decision)
    headers = {"Tessera-Masked-Fields": ",".join(decision.mask)} if decision.mask else None
    return StreamingResponse(chunks, media_type=media_type, headers=headers)


async def abandon_process(runtime: Runtime, message: OutboxMessage) -> None:
    """A message the counter-party will never receive ends its process on our side."""
    reason = f"the counter-party could not be told: {message.last_error}"
    await negotiations.abandon(runtime, message.process_id, reason)
    await transfers.abandon(runtime, message.process_id, reason)


def create_app(config: ConnectorConfig) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async def on_undeliverable(message: OutboxMessage) -> None:
            await abandon_process(app.state.runtime, message)

        async with Runtime.running(config, on_undeliverable=on_undeliverable) as runtime:
            app.state.runtime = runtime
            yield

    routes = [
        Route("/.well-known/dspace-version", protocol.version, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/data/{pid}", data, methods=["GET"]),
        Mount(DSP_PATH, routes=protocol.routes),
        Mount(
            "/api",
            routes=management.routes,
            middleware=[Middleware(management.RequireApiKey, token=config.management_token)],
        ),
    ]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers=problem_handlers())
