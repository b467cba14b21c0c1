"""The broker service: the cluster's identity authority, registry, search and feeds in one Starlette app.

```python
config = BrokerConfig.load(Path("broker"))
uvicorn.run(create_app(config), host=config.host, port=config.port)
```

The lifespan opens the database, sets up the search index and starts the crawler as a background task;
shutdown cancels the task before the database closes. The operator's web console is at `/console`
(`broker.console`: sign-in with the admin key).
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypedDict

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware

from broker import api, console, text
from broker.authority import Authority, AuthorityKeys
from broker.checkpoints import Checkpoints
from broker.config import BrokerConfig
from broker.crawler import Crawler
from broker.metrics import BrokerMetrics
from broker.quotas import QuotaExceeded, quota_handler
from broker.registry import Registry
from broker.schema import SCHEMA
from broker.search_backends import search_backend
from tessera import tracing
from tessera.identity import SigningKey, TokenVerifier
from tessera.metrics import RequestMetrics, RouteTemplates
from tessera.openapi import spec_routes
from tessera.problems import problem_handlers
from tessera.store import Database


class State(TypedDict):
    """What every request finds in `request.state`."""

    authority: Authority
    registry: Registry
    checkpoints: Checkpoints
    crawler: Crawler
    crawler_task: asyncio.Task[None] | None
    metrics: BrokerMetrics


def create_app(config: BrokerConfig, *, crawl: bool = True, tracer_provider: Any = None) -> Starlette:
    """The broker app; `crawl=False` leaves the crawler off (benchmarks that have no connectors to crawl);
    `tracer_provider` replaces the OTLP exporter's when `config.tracing` is "otlp"."""
    metrics = BrokerMetrics(token=config.metrics_token)
    if config.tracing == "otlp" and tracer_provider is None:
        tracer_provider = tracing.provider("tessera-broker")

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[State]:
        signer = SigningKey.load(config.key_path)
        db = await Database.open(config.database_url, schema=SCHEMA)
        search = await search_backend(db)
        await asyncio.to_thread(text.warm_up)
        verifier = TokenVerifier(AuthorityKeys(signer), issuer=config.url, audience=config.url)
        async with httpx.AsyncClient(timeout=config.crawl_timeout) as http:
            if tracer_provider is not None:
                tracing.trace_client(http, tracer_provider)
            crawler = Crawler(db, search, config, signer, http)
            task = asyncio.create_task(crawler.run(), name="broker-crawler") if crawl else None
            try:
                yield {
                    "authority": Authority(
                        db, signer, url=config.url, status_lifetime=config.participant_status_lifetime
                    ),
                    "registry": Registry(db, verifier, search, config, on_registered=crawler.wake),
                    "checkpoints": Checkpoints(db, verifier, url=config.url),
                    "crawler": crawler,
                    "crawler_task": task,
                    "metrics": metrics,
                }
            finally:
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                await db.close()

    routes = [
        *api.routes,  # every endpoint, made from its OpenAPI description (broker.api)
        *spec_routes(api.spec(config)),  # /openapi.json and /docs
        console.mount(config),
    ]
    handlers = {**problem_handlers(), QuotaExceeded: quota_handler}
    timed = Middleware(RequestMetrics, histogram=metrics.requests, templates=RouteTemplates(routes))
    traced = [] if tracer_provider is None else [tracing.middleware(tracer_provider)]
    return Starlette(routes=routes, middleware=[*traced, timed], lifespan=lifespan, exception_handlers=handlers)
