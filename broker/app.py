"""The broker service: the cluster's identity authority and metadata registry in one Starlette app.

```python
config = BrokerConfig.load(Path("broker"))
uvicorn.run(create_app(config), host=config.host, port=config.port)
```
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from broker import authority, registry
from broker.authority import Authority, AuthorityKeys
from broker.config import BrokerConfig
from broker.registry import Registry
from connector.identity import SigningKey, TokenVerifier
from connector.problems import problem_handlers
from connector.store import Database


async def health(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def create_app(config: BrokerConfig) -> Starlette:
    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[dict[str, Any]]:
        signer = SigningKey.load(config.key_path)
        db = await Database.open(config.database_url)
        verifier = TokenVerifier(AuthorityKeys(signer), issuer=config.url, audience=config.url)
        try:
            yield {
                "authority": Authority(db, signer, url=config.url),
                "registry": Registry(db, verifier),
            }
        finally:
            await db.close()

    routes = [Route("/health", health, methods=["GET"]), *authority.routes, *registry.routes]
    return Starlette(routes=routes, lifespan=lifespan, exception_handlers=problem_handlers())
