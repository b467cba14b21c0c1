"""Data products: every registered offering's product code, its history, and its signed certificate."""

import json

from sqlmodel import col, select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from broker import products
from broker.console._state import authority_of, refusing, registry_of
from tessera.web.console import Console, Refused

NAV = [("/products", "Data products")]
PAGE_SIZE = 50


def routes(console: Console) -> list[Route]:
    async def listing(request: Request) -> Response:
        before = _before(request)
        statement = select(products.Product).order_by(col(products.Product.seq).desc()).limit(PAGE_SIZE)
        if before is not None:
            statement = statement.where(col(products.Product.seq) < before)
        async with registry_of(request).db.session() as session:
            found = list(await session.exec(statement))
        older = found[-1].seq if len(found) == PAGE_SIZE else None
        return console.render(request, "products_list.html", products=found, older=older)

    async def detail(request: Request) -> Response:
        product, history, token = await _certified(request)
        jwks = {"keys": [authority_of(request).signer.jwk]}
        claims = products.verify_certificate(token, jwks)  # what anyone checking it offline will read
        return console.render(
            request,
            "products_detail.html",
            product=product,
            history=history,
            certificate=token,
            claims_json=json.dumps(claims, ensure_ascii=False, indent=2),
        )

    async def download(request: Request) -> Response:
        product, _, token = await _certified(request)
        headers = {"Content-Disposition": f'attachment; filename="{product.code}.jwt"'}
        return Response(token + "\n", media_type="application/jwt", headers=headers)

    return [
        console.page("/products", listing),
        console.page("/products/{code}", detail),
        console.page("/products/{code}/certificate.jwt", download),
    ]


async def _certified(request: Request) -> tuple[products.Product, list[products.ProductHistory], str]:
    """The product, its history and a fresh certificate, as `GET /products/{code}/certificate` signs it."""
    registry = registry_of(request)
    with refusing():
        product, history = await products.load(registry.db, request.path_params["code"])
    token = products.certificate(product, authority_of(request).signer, issuer=registry.url)
    return product, history, token


def _before(request: Request) -> int | None:
    written = request.query_params.get("before", "")
    if not written:
        return None
    if not written.isdigit():
        raise Refused("`before` must be a product's sequence number")
    return int(written)
