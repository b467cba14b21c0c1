"""The connector application: DSP endpoints, the data plane and the management API in one ASGI app.

```
/.well-known/dspace-version   DSP version metadata (no token)
/dsp/...                      Dataspace Protocol 2025-1 (access token from the cluster's authority)
/dsp/audit/checkpoints        counter-parties' audit checkpoints we keep as receipts (their access token)
/data/{transfer}              data plane (the transfer's data token)
/api/...                      management API (the connector's API key)
/api/openapi.json, /openapi.json, /docs   its OpenAPI 3.1 document and docs page (no key)
/health                       liveness: the process answers
/ready                        readiness: the database answers too (503 when it does not)
/metrics                      Prometheus metrics (the metrics token, else the management key; docs/metrics.md)
/console                      the web console (sign-in with the management key; connector.console)
```

Every request is timed by route template and runs with the process it names in its log lines
(`tessera.metrics.RequestMetrics`); with `tracing = "otlp"` it makes an OpenTelemetry span too.
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from connector import (
    anchoring,
    console,
    copies,
    dataplane,
    deadlines,
    delivery,
    management,
    management_api,
    monitoring,
    protocol,
    receipts,
    transfer_provider,
)
from connector.config import DSP_PATH, ConnectorConfig
from connector.metrics import ConnectorMetrics
from connector.outbox import OutboxMessage
from connector.runtime import Runtime
from tessera import tracing
from tessera.errors import BadRequest
from tessera.metrics import RequestMetrics, RouteTemplates
from tessera.openapi import spec_routes
from tessera.problems import problem_from_error, problem_handlers

logger = logging.getLogger("tessera.connector")


async def health(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> Response:
    """Whether to send this replica traffic: only while its database answers."""
    try:
        async with request.app.state.runtime.db.session() as session:
            await (await session.connection()).execute(text("SELECT 1"))
    except Exception:  # any database failure means "not ready", never a 500 page
        # The reason goes to the log only: this endpoint is public, a driver's message names hosts and users.
        logger.warning("not ready: the database does not answer", exc_info=True)
        return JSONResponse({"status": "unavailable"}, status_code=503)
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


def create_app(config: ConnectorConfig, *, tracer_provider: Any = None) -> Starlette:
    """The connector app; `tracer_provider` replaces the OTLP exporter's when `config.tracing` is "otlp"."""
    metrics = ConnectorMetrics()
    if config.tracing == "otlp" and tracer_provider is None:
        tracer_provider = tracing.provider("tessera-connector")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async def on_undeliverable(message: OutboxMessage) -> None:
            await delivery.abandon_process(app.state.runtime, message)

        running = Runtime.running(
            config, on_undeliverable=on_undeliverable, on_reply=delivery.learn_pids, metrics=metrics
        )
        async with running as runtime:
            app.state.runtime = runtime
            if tracer_provider is not None:
                tracing.trace_client(runtime.http, tracer_provider)
            sweeper = copies.Sweeper(runtime)
            runtime.wake_sweeper = sweeper.wake
            runtime.spawn(sweeper.run())
            runtime.spawn(deadlines.DeadlineSweeper(runtime).run())
            runtime.spawn(anchoring.Anchorer(runtime).run())
            await transfer_provider.resume(runtime)
            if runtime.db.shared:  # replicas: take over what one that crashed was doing
                runtime.spawn(transfer_provider.resume_continually(runtime))
            yield

    routes = [
        Route("/.well-known/dspace-version", protocol.version, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        *monitoring.routes,
        *dataplane.routes,
        Mount(DSP_PATH, routes=[*protocol.routes, *receipts.routes]),
        # The API's own description is public (before the mount, whose middleware wants the key).
        *spec_routes(management_api.spec(config), spec_paths=("/api/openapi.json", "/openapi.json")),
        Mount(
            "/api",
            routes=management_api.routes,
            middleware=[Middleware(management.RequireApiKey, token=config.management_token)],
        ),
        console.mount(config),
    ]
    timed = Middleware(
        RequestMetrics,
        histogram=metrics.requests,
        templates=RouteTemplates(routes),
        process_of=monitoring.process_of,
    )
    traced = [] if tracer_provider is None else [tracing.middleware(tracer_provider)]
    return Starlette(
        routes=routes,
        middleware=[*traced, timed, Middleware(RefuseNul)],
        lifespan=lifespan,
        exception_handlers=problem_handlers(),
    )
