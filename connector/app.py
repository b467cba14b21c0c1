"""The connector application: DSP endpoints, the data plane and the management API in one ASGI app.

```
/.well-known/dspace-version   DSP version metadata (no token)
/dsp/...                      Dataspace Protocol 2025-1 (access token from the cluster's authority)
/dsp/audit/checkpoints        counter-parties' audit checkpoints we keep as receipts (their access token)
/data/{transfer}              data plane (the transfer's data token)
/api/...                      management API (the connector's API key)
/health                       liveness
```
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from connector import (
    anchoring,
    copies,
    dataplane,
    deadlines,
    delivery,
    management,
    protocol,
    receipts,
    transfer_provider,
)
from connector.config import DSP_PATH, ConnectorConfig
from connector.outbox import OutboxMessage
from connector.runtime import Runtime
from tessera.errors import BadRequest
from tessera.problems import problem_from_error, problem_handlers


async def health(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


class RefuseNul:
    """ASGI middleware: a path or query holding U+0000 (`%00`) is a 400. It names no record (PostgreSQL's
    text columns cannot hold it; a lookup by it would fail in the driver, not answer 404)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and ("\x00" in scope["path"] or b"%00" in scope["query_string"]):
            refused = BadRequest("the request's path or query holds U+0000 (%00)")
            return await problem_from_error(refused)(scope, receive, send)
        await self.app(scope, receive, send)


def create_app(config: ConnectorConfig) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async def on_undeliverable(message: OutboxMessage) -> None:
            await delivery.abandon_process(app.state.runtime, message)

        async def on_reply(message: OutboxMessage, reply: Any) -> None:
            await delivery.learn_pids(app.state.runtime, message, reply)

        async with Runtime.running(config, on_undeliverable=on_undeliverable, on_reply=on_reply) as runtime:
            app.state.runtime = runtime
            sweeper = copies.Sweeper(runtime)
            runtime.wake_sweeper = sweeper.wake
            runtime.spawn(sweeper.run())
            runtime.spawn(deadlines.DeadlineSweeper(runtime).run())
            runtime.spawn(anchoring.Anchorer(runtime).run())
            await transfer_provider.resume(runtime)
            yield

    routes = [
        Route("/.well-known/dspace-version", protocol.version, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        *dataplane.routes,
        Mount(DSP_PATH, routes=[*protocol.routes, *receipts.routes]),
        Mount(
            "/api",
            routes=management.routes,
            middleware=[Middleware(management.RequireApiKey, token=config.management_token)],
        ),
    ]
    return Starlette(
        routes=routes, lifespan=lifespan, exception_handlers=problem_handlers(), middleware=[Middleware(RefuseNul)]
    )
