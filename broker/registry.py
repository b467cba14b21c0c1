"""The metadata registry: connectors' self-descriptions and offerings, and search over them.

A connector registers with an access token this broker's authority issued for the broker's own URL; the
token's subject must be the participant being registered. A registration replaces that participant's
offerings in one transaction. Search is public.

`search()` is the one function that knows how offerings are found (case-insensitive `LIKE` over title,
description and keywords); a full-text backend can replace it without touching the routes.
"""

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator
from pydantic import Field as Check
from sqlalchemy import ColumnElement, and_, exists, func, or_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel, col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from broker.authority import Participant, read_body
from connector.errors import BadRequest, Conflict, NotEntitled, NotFound
from connector.identity import Caller, TokenVerifier, bearer_token
from connector.store import Database

logger = logging.getLogger("broker.registry")

MAX_BODY_BYTES = 1024 * 1024
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_QUERY_LENGTH = 256


class ContentTooLarge(BadRequest):
    status_code = 413
    title = "Content too large"


# -- what the API accepts -----------------------------------------------------------------------------

Text = Annotated[str, Check(max_length=8192)]
Name = Annotated[str, Check(min_length=1, max_length=512)]


class OfferingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, Check(min_length=1, max_length=256)]
    title: Name
    description: Text = ""
    keywords: Annotated[list[Annotated[str, Check(min_length=1, max_length=64)]], Check(max_length=64)] = []
    format: Annotated[str, Check(max_length=128)] = ""


class RegistrationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoint: Annotated[str, Check(max_length=2048)]
    title: Name
    description: Text = ""
    offerings: Annotated[list[OfferingIn], Check(max_length=1000)] = []

    @field_validator("endpoint")
    @classmethod
    def _http_url(cls, endpoint: str) -> str:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http(s) URL")
        return endpoint

    @model_validator(mode="after")
    def _unique_offerings(self) -> "RegistrationIn":
        ids = [offering.id for offering in self.offerings]
        if duplicates := sorted({i for i in ids if ids.count(i) > 1}):
            raise ValueError(f"offering ids must be unique, repeated: {', '.join(duplicates)}")
        return self


def parse_registration(body: bytes) -> RegistrationIn:
    try:
        return RegistrationIn.model_validate_json(body)
    except ValidationError as exc:
        reasons = [f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()]
        raise BadRequest("invalid registration: " + "; ".join(reasons[:5]), reasons=reasons) from exc


# -- records ------------------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


class Registration(SQLModel, table=True):
    __tablename__ = "broker_registration"

    participant_id: str = Field(primary_key=True)
    endpoint: str
    title: str
    description: str
    updated_at: datetime = Field(default_factory=_now)


class Offering(SQLModel, table=True):
    __tablename__ = "broker_offering"

    participant_id: str = Field(primary_key=True)
    id: str = Field(primary_key=True)
    title: str
    description: str
    keywords: str  # JSON list, as registered
    format: str

    def public(self) -> dict[str, Any]:
        return {**self.model_dump(exclude={"participant_id"}), "keywords": json.loads(self.keywords)}


class OfferingKeyword(SQLModel, table=True):
    """One lower-cased keyword of an offering, so `keyword=` filters match whole keywords only."""

    __tablename__ = "broker_offering_keyword"

    participant_id: str = Field(primary_key=True)
    offering_id: str = Field(primary_key=True)
    keyword: str = Field(primary_key=True, index=True)


# -- storage ------------------------------------------------------------------------------------------


async def save_registration(db: Database, participant_id: str, data: RegistrationIn) -> bool:
    """Store a registration, replacing the participant's previous offerings; True if it is new."""
    async with db.session() as session:
        record = await session.get(Registration, participant_id)
        created = record is None
        await _delete_offerings(session, participant_id)
        record = record or Registration(participant_id=participant_id, endpoint="", title="", description="")
        record.sqlmodel_update(data.model_dump(exclude={"offerings"}) | {"updated_at": _now()})
        session.add(record)
        for offering in data.offerings:
            session.add(
                Offering(
                    participant_id=participant_id,
                    **offering.model_dump(exclude={"keywords"}),
                    keywords=json.dumps(offering.keywords, ensure_ascii=False),
                )
            )
            for keyword in {k.lower() for k in offering.keywords}:
                session.add(OfferingKeyword(participant_id=participant_id, offering_id=offering.id, keyword=keyword))
        try:
            await session.commit()
        except IntegrityError as exc:
            raise Conflict(f"registration of {participant_id!r} changed concurrently; retry") from exc
    logger.info("registration of %s saved with %d offerings", participant_id, len(data.offerings))
    return created


async def delete_registration(db: Database, participant_id: str) -> None:
    async with db.session() as session:
        await _delete_offerings(session, participant_id)
        await session.exec(delete(Registration).where(col(Registration.participant_id) == participant_id))
        await session.commit()
    logger.info("registration of %s deleted", participant_id)


async def _delete_offerings(session: AsyncSession, participant_id: str) -> None:
    await session.exec(delete(OfferingKeyword).where(col(OfferingKeyword.participant_id) == participant_id))
    await session.exec(delete(Offering).where(col(Offering.participant_id) == participant_id))


async def load_registration(db: Database, participant_id: str) -> dict[str, Any]:
    async with db.session() as session:
        record = await session.get(Registration, participant_id)
        if record is None:
            raise NotFound(f"{participant_id!r} has no registration")
        statement = select(Offering).where(col(Offering.participant_id) == participant_id).order_by(col(Offering.id))
        offerings = list(await session.exec(statement))
    return {
        **record.model_dump(mode="json"),
        "offerings": [offering.public() for offering in offerings],
    }


# -- search -------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SearchQuery:
    text: str = ""
    participant: str | None = None
    keyword: str | None = None
    limit: int = DEFAULT_LIMIT
    offset: int = 0


async def search(db: Database, query: SearchQuery) -> dict[str, Any]:
    """Offerings of active participants matching every word of `text`, ordered by participant and id."""
    conditions = _conditions(query)
    joined = col(Registration.participant_id) == col(Offering.participant_id)
    page = (
        select(Offering, col(Registration.endpoint))
        .join(Registration, joined)
        .where(*conditions)
        .order_by(col(Offering.participant_id), col(Offering.id))
        .limit(query.limit)
        .offset(query.offset)
    )
    count = select(func.count()).select_from(Offering).join(Registration, joined).where(*conditions)
    async with db.session() as session:
        total = (await session.exec(count)).one()
        rows = list(await session.exec(page))
    results = [
        {"participant_id": offering.participant_id, "endpoint": endpoint, "offering": offering.public()}
        for offering, endpoint in rows
    ]
    return {"total": total, "results": results}


def _conditions(query: SearchQuery) -> list[ColumnElement[bool]]:
    suspended = select(Participant.id).where(col(Participant.suspended))
    conditions = [col(Offering.participant_id).not_in(suspended)]
    if query.participant is not None:
        conditions.append(col(Offering.participant_id) == query.participant)
    if query.keyword is not None:
        conditions.append(_has_keyword(OfferingKeyword.keyword == query.keyword.lower()))
    for word in query.text.split():
        pattern = "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        conditions.append(
            or_(
                col(Offering.title).ilike(pattern, escape="\\"),
                col(Offering.description).ilike(pattern, escape="\\"),
                _has_keyword(col(OfferingKeyword.keyword).ilike(pattern, escape="\\")),
            )
        )
    return conditions


def _has_keyword(condition: ColumnElement[bool]) -> ColumnElement[bool]:
    same_offering = and_(
        col(OfferingKeyword.participant_id) == col(Offering.participant_id),
        col(OfferingKeyword.offering_id) == col(Offering.id),
    )
    return exists().where(same_offering, condition)


def search_query(params: dict[str, str]) -> SearchQuery:
    text = params.get("q", "")
    if len(text) > MAX_QUERY_LENGTH:
        raise BadRequest(f"q is longer than {MAX_QUERY_LENGTH} characters")
    return SearchQuery(
        text=text,
        participant=params.get("participant") or None,
        keyword=params.get("keyword") or None,
        limit=_integer(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT),
        offset=_integer(params, "offset", 0, 0, 1_000_000),
    )


def _integer(params: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise BadRequest(f"{name} must be an integer from {low} to {high}")
    return int(raw)


# -- HTTP ---------------------------------------------------------------------------------------------


class Registry:
    """The registry's store plus the rule for who may change an entry."""

    def __init__(self, db: Database, verifier: TokenVerifier) -> None:
        self.db = db
        self._verifier = verifier

    async def authorize(self, request: Request, participant_id: str) -> Caller:
        """The caller, if its token is for this broker and names `participant_id` as subject."""
        caller = await self._verifier.verify(bearer_token(request.headers.get("authorization")))
        if caller.participant_id != participant_id:
            raise NotEntitled(f"{caller.participant_id!r} may not change the registration of {participant_id!r}")
        async with self.db.session() as session:
            participant = await session.get(Participant, participant_id)
        if participant is None or participant.suspended:
            raise NotEntitled(f"{participant_id!r} is not an active participant")
        return caller


async def put_registration(request: Request) -> Response:
    registry: Registry = request.state.registry
    participant_id = request.path_params["participant_id"]
    await registry.authorize(request, participant_id)
    body = await read_body(request, MAX_BODY_BYTES)
    if body is None:
        raise ContentTooLarge(f"a registration may not exceed {MAX_BODY_BYTES} bytes")
    created = await save_registration(registry.db, participant_id, parse_registration(body))
    return JSONResponse(await load_registration(registry.db, participant_id), status_code=201 if created else 200)


async def delete_registration_route(request: Request) -> Response:
    registry: Registry = request.state.registry
    participant_id = request.path_params["participant_id"]
    await registry.authorize(request, participant_id)
    await delete_registration(registry.db, participant_id)
    return Response(status_code=204)


async def get_registration(request: Request) -> Response:
    registry: Registry = request.state.registry
    return JSONResponse(await load_registration(registry.db, request.path_params["participant_id"]))


async def search_route(request: Request) -> Response:
    registry: Registry = request.state.registry
    return JSONResponse(await search(registry.db, search_query(dict(request.query_params))))


routes = [
    Route("/registrations/{participant_id}", put_registration, methods=["PUT"]),
    Route("/registrations/{participant_id}", delete_registration_route, methods=["DELETE"]),
    Route("/registrations/{participant_id}", get_registration, methods=["GET"]),
    Route("/search", search_route, methods=["GET"]),
]
