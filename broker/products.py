"""Data products: a stable code per registered offering, its lifecycle, and signed certificates.

The first registration of an offering (participant + offering id) derives its product code once, e.g.
`TDP-2026-000123-7`: year of first registration, a sequence number never handed out twice, and a Luhn check
digit that catches a mistyped digit. The same offering keeps its code through every later change,
correction, cancellation and re-registration; each step is a numbered entry in the product's history.
With a public-notice period, a new product is `IN_NOTICE` until `effective_at`, then `ACTIVE`.

A certificate is a JWT signed by the authority key (ES256, its `kid` in the broker's JWKS) stating the
product's code, owner, offering, title, the hash of its registered metadata and its status, so anyone can
check it offline: `tessera certificate verify cert.jwt --jwks https://broker.example/.well-known/jwks.json`.
"""

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, func, insert, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import Field, SQLModel, UniqueConstraint, col, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from broker.metadata import Metadata
from tessera.clock import aware, utcnow
from tessera.errors import NotFound, TokenRejected
from tessera.identity import Expect, SigningKey, decode_jwt, key_from_jwk, unverified_header
from tessera.store import Database

CODE_PREFIX = "TDP"
CERTIFICATE_TYPE = "tessera-product+jwt"
REGISTERED, CHANGED, CORRECTED, CANCELLED = "registered", "changed", "corrected", "cancelled"


class Product(SQLModel, table=True):
    __tablename__ = "broker_product"
    __table_args__ = (UniqueConstraint("participant_id", "offering_id"),)

    code: str = Field(primary_key=True)
    seq: int = Field(unique=True)
    participant_id: str
    offering_id: str
    title: str
    content_hash: str
    cancelled: bool = False
    version: int = 1
    registered_at: datetime
    effective_at: datetime
    updated_at: datetime

    def status(self, now: datetime | None = None) -> str:
        if self.cancelled:
            return "CANCELLED"
        return "IN_NOTICE" if aware(self.effective_at) > (now or utcnow()) else "ACTIVE"

    def public(self) -> dict[str, Any]:
        return {**self.model_dump(mode="json", exclude={"seq", "cancelled"}), "status": self.status()}


class ProductHistory(SQLModel, table=True):
    __tablename__ = "broker_product_history"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(index=True)
    version: int
    action: str  # registered, changed, corrected, cancelled
    at: datetime
    effective_at: datetime
    actor: str
    content_hash: str
    reason: str = ""
    snapshot: Metadata | None = Field(default=None, sa_type=JSON)  # as registered; None for a cancellation

    def public(self) -> dict[str, Any]:
        return {
            **self.model_dump(mode="json", exclude={"id", "code", "snapshot"}),
            "metadata": self.snapshot or {},
        }


@dataclass(frozen=True, kw_only=True)
class Step:
    """One lifecycle step for the product of (participant, offering)."""

    participant_id: str
    offering_id: str
    action: str
    actor: str
    title: str = ""
    content_hash: str = ""
    metadata: Metadata | None = None
    reason: str = ""


def check_digit(digits: str) -> int:
    """The Luhn check digit for a string of digits."""
    total = 0
    for i, digit in enumerate(reversed(digits)):
        value = int(digit) * (2 if i % 2 == 0 else 1)
        total += value - 9 if value > 9 else value
    return (10 - total % 10) % 10


def make_code(year: int, seq: int) -> str:
    return f"{CODE_PREFIX}-{year}-{seq:06d}-{check_digit(f'{year}{seq:06d}')}"


def valid_code(code: str) -> bool:
    parts = code.split("-")
    if len(parts) != 4 or parts[0] != CODE_PREFIX or not all(p.isdigit() for p in parts[1:]):
        return False
    return check_digit(parts[1] + parts[2]) == int(parts[3])


async def products_of(connection: AsyncConnection, participant_id: str) -> dict[str, Product]:
    rows = await connection.execute(select(Product).where(col(Product.participant_id) == participant_id))
    return {product.offering_id: product for product in (Product.model_validate(r._mapping) for r in rows)}


async def apply(connection: AsyncConnection, steps: Sequence[Step], *, notice_period: float) -> dict[str, str]:
    """Record lifecycle steps in the caller's transaction; answers offering id -> product code."""
    if not steps:
        return {}
    now = utcnow()
    effective = now + timedelta(seconds=notice_period)
    known = await products_of(connection, steps[0].participant_id)
    next_seq = int((await connection.execute(select(func.coalesce(func.max(Product.seq), 0)))).scalar_one()) + 1
    new_rows, history, codes = [], [], {}
    for step in steps:
        product = known.get(step.offering_id)
        if product is None:
            if step.action == CANCELLED:
                continue
            code = make_code(now.year, next_seq)
            new_rows.append(
                {
                    "code": code,
                    "seq": next_seq,
                    "participant_id": step.participant_id,
                    "offering_id": step.offering_id,
                    "title": step.title,
                    "content_hash": step.content_hash,
                    "version": 1,
                    "registered_at": now,
                    "effective_at": effective,
                    "updated_at": now,
                }
            )
            next_seq += 1
            version, when = 1, effective
        else:
            code, version = product.code, product.version + 1
            reregistered = product.cancelled and step.action == REGISTERED
            when = effective if reregistered else now
            values: dict[str, object] = {"version": version, "updated_at": now, "cancelled": step.action == CANCELLED}
            if step.action != CANCELLED:
                values.update(title=step.title, content_hash=step.content_hash)
            if reregistered:
                values["effective_at"] = effective
            await connection.execute(update(Product).where(col(Product.code) == code).values(**values))
        codes[step.offering_id] = code
        history.append(
            {
                "code": code,
                "version": version,
                "action": step.action,
                "at": now,
                "effective_at": when,
                "actor": step.actor,
                "content_hash": step.content_hash or (product.content_hash if product else ""),
                "reason": step.reason,
                "snapshot": step.metadata,
            }
        )
    if new_rows:
        await connection.execute(insert(Product), new_rows)
    await connection.execute(insert(ProductHistory), history)
    return codes


async def load(db: Database, code: str) -> tuple[Product, list[ProductHistory]]:
    async with db.session() as session:
        product = await session.get(Product, code)
        if product is None:
            raise NotFound(f"no data product {code!r}")
        statement = select(ProductHistory).where(col(ProductHistory.code) == code).order_by(col(ProductHistory.version))
        return product, list(await session.exec(statement))


# -- certificates -------------------------------------------------------------------------------------


def certificate(product: Product, signer: SigningKey, *, issuer: str) -> str:
    claims = {
        "iss": issuer,
        "sub": product.code,
        "iat": int(time.time()),
        "jti": str(uuid.uuid4()),
        "product_code": product.code,
        "participant_id": product.participant_id,
        "offering_id": product.offering_id,
        "title": product.title,
        "content_hash": product.content_hash,
        "status": product.status(),
        "version": product.version,
        "registered_at": aware(product.registered_at).isoformat(),
        "effective_at": aware(product.effective_at).isoformat(),
    }
    return signer.sign_jwt(claims, typ=CERTIFICATE_TYPE)


def verify_certificate(token: str, jwks: dict[str, Any]) -> dict[str, Any]:
    """The certificate's claims if its signature verifies against a key in `jwks`; TokenRejected says why not."""
    expect = Expect(require=("iss", "sub", "iat"), typ=CERTIFICATE_TYPE, what="certificate")
    kid = unverified_header(token, expect).get("kid")
    keys = [k for k in jwks.get("keys", []) if isinstance(k, dict) and k.get("kid") == kid]
    if not keys:
        raise TokenRejected(f"the JWKS has no key {kid!r}")
    claims = decode_jwt(token, key_from_jwk(keys[0]), expect)
    if not valid_code(str(claims.get("product_code"))) or claims.get("sub") != claims.get("product_code"):
        raise TokenRejected("the certificate names no valid product code")
    return claims


# -- HTTP ---------------------------------------------------------------------------------------------


async def product_route(request: Request) -> Response:
    product, history = await load(request.state.registry.db, request.path_params["code"])
    return JSONResponse({**product.public(), "history": [h.public() for h in history]})


async def certificate_route(request: Request) -> Response:
    product, _ = await load(request.state.registry.db, request.path_params["code"])
    token = certificate(product, request.state.authority.signer, issuer=request.state.registry.url)
    return JSONResponse({"certificate": token, "product": product.public()})
