"""The metadata registry: connectors' self-descriptions and offerings, pushed, crawled and searched.

A connector registers with an access token this broker's authority issued for the broker's own URL; the
token's subject must be the participant being registered, so only it may change or remove its entry. The
operator may force-delete an entry or one offering (a tombstone keeps the reason). Every change is one
transaction: offerings, search index, product lifecycle and event log together.
"""

import logging
from collections.abc import Callable, Mapping
from typing import Annotated, NotRequired, TypedDict

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator
from pydantic import Field as Check
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from broker import entries, events, products
from broker.authority import Participant
from broker.config import BrokerConfig
from broker.entries import (
    ONLINE,
    Liveness,
    Merge,
    Offering,
    OfferingPublic,
    Registration,
    RegistrationPublic,
    Tombstone,
)
from broker.metadata import metadata_of
from broker.quality import Quality, assess
from broker.quotas import WriteQuota
from broker.search import DEFAULT_LIMIT, FACETS, MAX_LIMIT, SORTS, FacetCount, SearchBackend, SearchQuery
from tessera.bodies import read_body
from tessera.clock import utcnow
from tessera.errors import BadRequest, Gone, NotEntitled, NotFound
from tessera.identity import Caller, TokenVerifier, bearer_token
from tessera.json import JSON, parse
from tessera.store import Database
from tessera.urls import check_url

logger = logging.getLogger("broker.registry")

MAX_BODY_BYTES = 1024 * 1024
MAX_QUERY_LENGTH = 256
OPERATOR = "operator"


# -- what the API accepts -----------------------------------------------------------------------------

Text = Annotated[str, Check(max_length=8192)]
Name = Annotated[str, Check(min_length=1, max_length=512, pattern=r"\S")]
Label = Annotated[str, Check(max_length=128)]


class OfferingIn(BaseModel):
    """One offering as a connector pushes it; everything after `format` is optional and newer."""

    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, Check(min_length=1, max_length=256)]
    dataset_id: Annotated[str, Check(max_length=256)] = ""  # the DSP dataset's @id (newer: "" from older connectors)
    title: Name
    description: Text = ""
    keywords: Annotated[list[Annotated[str, Check(min_length=1, max_length=64)]], Check(max_length=64)] = []
    format: Label = ""
    theme: Label = ""
    license: Annotated[str, Check(max_length=512)] = ""
    classification: Label = ""
    region: Label = ""
    language: Label = ""
    correction: Annotated[str, Check(max_length=1024)] = ""  # a reason: record this change as a correction


class RegistrationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoint: Annotated[str, Check(max_length=2048)]
    title: Name
    description: Text = ""
    offerings: Annotated[list[OfferingIn], Check(max_length=1000)] = []

    @field_validator("endpoint")
    @classmethod
    def _http_url(cls, endpoint: str) -> str:
        check_url(endpoint, "the endpoint (an absolute http(s) URL)")
        return endpoint

    @model_validator(mode="after")
    def _unique_offerings(self) -> "RegistrationIn":
        ids = [offering.id for offering in self.offerings]
        if duplicates := sorted({i for i in ids if ids.count(i) > 1}):
            raise ValueError(f"offering ids must be unique, repeated: {', '.join(duplicates)}")
        return self


def parse_registration(body: bytes) -> RegistrationIn:
    document = parse(body, "the registration body", BadRequest)
    if holds_nul(document):
        raise BadRequest(
            "invalid registration: a string holds a NUL character (\\u0000), which no text column can store"
        )
    try:
        return RegistrationIn.model_validate(document)
    except ValidationError as exc:
        reasons = [f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()]
        raise BadRequest("invalid registration: " + "; ".join(reasons[:5]), reasons=reasons) from exc


def holds_nul(value: JSON) -> bool:
    """Whether a name or string in `value` holds U+0000 (PostgreSQL text refuses it; SQLite would keep it)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in name or holds_nul(item) for name, item in value.items())
    if isinstance(value, list):
        return any(holds_nul(item) for item in value)
    return False


# -- what the API answers -----------------------------------------------------------------------------


class EntryPublic(RegistrationPublic):
    offerings: list[OfferingPublic]


class PushAnswer(EntryPublic):
    created: bool
    changes: dict[str, list[str]]  # offering ids added, changed, removed, withdrawn
    quality: Quality


class SearchResult(TypedDict):
    participant_id: str
    endpoint: str
    product_code: str
    score: float
    liveness: Liveness
    offering: OfferingPublic


class SearchAnswer(TypedDict):
    total: int
    results: list[SearchResult]
    next_cursor: str | None
    facets: NotRequired[dict[str, list[FacetCount]]]


# -- the service --------------------------------------------------------------------------------------


class Registry:
    """The registry's store, its search backend, and the rules for who may change an entry.

    ```python
    registry = Registry(db, verifier, await search_backend(db), config)
    answer = await registry.push("urn:tessera:acme", parse_registration(body))
    ```
    """

    def __init__(
        self,
        db: Database,
        verifier: TokenVerifier | None,
        search: SearchBackend,
        config: BrokerConfig,
        *,
        on_registered: Callable[[str], None] | None = None,
    ) -> None:
        self.db = db
        self.search_backend = search
        self.config = config
        self.quota = WriteQuota(config.registrations_per_minute)
        self._verifier = verifier
        self._on_registered = on_registered

    @property
    def url(self) -> str:
        return self.config.url

    async def authorize(self, request: Request, participant_id: str) -> Caller:
        """The caller, if its token is for this broker and names `participant_id` as subject."""
        assert self._verifier is not None, "this registry serves the operator's commands only"
        caller = await self._verifier.verify(bearer_token(request.headers.get("authorization")))
        if caller.participant_id != participant_id:
            raise NotEntitled(f"{caller.participant_id!r} may not change the registration of {participant_id!r}")
        async with self.db.session() as session:
            participant = await session.get(Participant, participant_id)
        if participant is None or participant.suspended:
            raise NotEntitled(f"{participant_id!r} is not an active participant")
        self.quota.spend(participant_id)
        return caller

    async def push(self, participant_id: str, data: RegistrationIn) -> PushAnswer:
        """Store a registration: self-description plus the pushed offerings, replacing the pushed set."""
        async with self.db.transaction() as session:
            connection = await session.connection()
            participant = await session.get(Participant, participant_id)
            record = await session.get(Registration, participant_id)
            created = record is None
            context = Merge(
                participant_id=participant_id,
                source="push",
                actor=participant_id,
                region=participant.region if participant else "",
                notice_period=self.config.notice_period,
                max_offerings=self.config.max_offerings,
                corrections={o.id: o.correction for o in data.offerings if o.correction},
                datasets={o.id: o.dataset_id for o in data.offerings if o.dataset_id},
            )
            incoming = {o.id: metadata_of(o) for o in data.offerings}
            action = "registration.created" if created else "registration.updated"
            described_as = {"endpoint": data.endpoint, "title": data.title}
            await events.record(connection, [events.event(participant_id, action, participant_id, detail=described_as)])
            outcome = await entries.merge(connection, self.search_backend, context, incoming)
            moment = utcnow()
            if record is None:
                record = Registration(participant_id=participant_id, endpoint="", title="", description="")
            elif record.state != ONLINE:
                await entries.set_state(connection, participant_id, state=ONLINE, listed=True)
                record.state, record.state_changed_at = ONLINE, moment
            described = (data.endpoint, data.title, data.description) != (
                record.endpoint,
                record.title,
                record.description,
            )
            record.sqlmodel_update(data.model_dump(exclude={"offerings"}))
            record.updated_at = record.last_seen_at = record.next_crawl_at = moment
            if created or described or outcome.changed_anything:
                record.changed_at = moment
            record.offerings = len(outcome.codes)
            session.add(record)
            await connection.execute(
                delete(Tombstone).where(
                    col(Tombstone.participant_id) == participant_id, col(Tombstone.offering_id) == ""
                )
            )
        logger.info("registration of %s saved: %s", participant_id, outcome.summary())
        if self._on_registered:
            self._on_registered(participant_id)
        entry = await self.entry(participant_id)
        quality = assess(data.description, data.offerings)
        return {**entry, "created": created, "changes": outcome.summary(), "quality": quality}

    async def unregister(self, participant_id: str, *, actor: str, reason: str = "") -> None:
        """Remove an entry and all its offerings; with a reason, the operator's force-delete (tombstoned)."""
        async with self.db.transaction() as session:
            connection = await session.connection()
            record = await session.get(Registration, participant_id)
            existing = await entries.offerings_of(connection, participant_id)
            if record is None and not existing:
                raise NotFound(f"{participant_id!r} has no registration")
            await self._cancel(connection, participant_id, list(existing.values()), actor=actor, reason=reason)
            if record is not None:
                await session.delete(record)
            if actor == OPERATOR:
                await session.merge(Tombstone(participant_id=participant_id, offering_id="", reason=reason))
            action = "entry.force_deleted" if actor == OPERATOR else "registration.deleted"
            await events.record(connection, [events.event(actor, action, participant_id, detail={"reason": reason})])
        logger.info("registration of %s deleted by %s %s", participant_id, actor, reason)

    async def force_delete_offering(self, participant_id: str, offering_id: str, *, reason: str) -> None:
        """Remove one offering for good: a tombstone keeps push and crawl from bringing it back."""
        async with self.db.transaction() as session:
            connection = await session.connection()
            found = (await entries.offerings_of(connection, participant_id)).get(offering_id)
            if found is None:
                raise NotFound(f"{participant_id!r} has no offering {offering_id!r}")
            await self._cancel(connection, participant_id, [found], actor=OPERATOR, reason=reason)
            await session.merge(Tombstone(participant_id=participant_id, offering_id=offering_id, reason=reason))
            record = await session.get(Registration, participant_id)
            if record is not None:
                record.offerings -= 1
                record.changed_at = utcnow()
                session.add(record)
            event = events.event(
                OPERATOR, "offering.force_deleted", participant_id, offering_id=offering_id, detail={"reason": reason}
            )
            await events.record(connection, [event])

    async def _cancel(
        self, connection: AsyncConnection, participant_id: str, gone: list[Offering], *, actor: str, reason: str
    ) -> None:
        steps = [
            products.Step(
                participant_id=participant_id,
                offering_id=o.id,
                action=products.CANCELLED,
                actor=actor,
                reason=reason or "unregistered",
            )
            for o in gone
        ]
        await products.apply(connection, steps, notice_period=0)
        await entries.remove_offerings(connection, self.search_backend, gone)

    async def entry(self, participant_id: str) -> EntryPublic:
        async with self.db.session() as session:
            record = await session.get(Registration, participant_id)
            if record is None:
                tombstone = await session.get(Tombstone, (participant_id, ""))
                if tombstone is not None:
                    raise Gone(f"{participant_id!r} was removed by the operator: {tombstone.reason}")
                raise NotFound(f"{participant_id!r} has no registration")
            statement = (
                select(Offering).where(col(Offering.participant_id) == participant_id).order_by(col(Offering.id))
            )
            offerings = list(await session.exec(statement))
        return {**record.public(), "offerings": [o.public() for o in offerings]}

    async def search(self, query: SearchQuery) -> SearchAnswer:
        page = await self.search_backend.search(self.db, query)
        async with self.db.session() as session:
            rows = (
                await session.exec(
                    select(Offering, Registration)
                    .join(Registration, col(Registration.participant_id) == col(Offering.participant_id))
                    .where(col(Offering.pk).in_(page.pks))
                )
            ).all()
        by_pk = {offering.pk: (offering, registration) for offering, registration in rows}
        results: list[SearchResult] = []
        for pk, score in zip(page.pks, page.scores, strict=True):
            if pk in by_pk:
                offering, registration = by_pk[pk]
                results.append(
                    {
                        "participant_id": offering.participant_id,
                        "endpoint": registration.endpoint,
                        "product_code": offering.product_code,
                        "score": score,
                        "liveness": registration.liveness(),
                        "offering": offering.public(),
                    }
                )
        answer: SearchAnswer = {"total": page.total, "results": results, "next_cursor": page.next_cursor}
        if query.facets:
            answer["facets"] = page.facets
        return answer


# -- HTTP ---------------------------------------------------------------------------------------------


def search_query(request: Request) -> SearchQuery:
    params = request.query_params
    if any("\x00" in value for _, value in params.multi_items()):
        raise BadRequest("search parameters must not hold a NUL character")
    text = params.get("q", "")
    if len(text) > MAX_QUERY_LENGTH:
        raise BadRequest(f"q is longer than {MAX_QUERY_LENGTH} characters")
    sort = params.get("sort") or None
    if sort is not None and sort not in SORTS:
        raise BadRequest(f"sort must be one of {', '.join(SORTS)}")
    filters = {}
    for name in FACETS:
        values = tuple(v for v in params.getlist(name) if v)
        if name == "liveness":
            values = tuple(v.upper() for v in values)
        if len(values) > 20:
            raise BadRequest(f"at most 20 values for {name}")
        if values:
            filters[name] = values
    return SearchQuery(
        text=text,
        filters=filters,
        keyword=params.get("keyword") or None,
        sort=sort,
        limit=integer_param(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT),
        offset=integer_param(params, "offset", 0, 0, 10_000),
        cursor=params.get("cursor") or None,
        facets=params.get("facets", "true").lower() not in ("false", "0", "no"),
    )


def integer_param(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    # ASCII digits only: str.isdigit() also takes "²" and other digits int() refuses.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 20 or not low <= int(raw) <= high:
        raise BadRequest(f"{name} must be an integer from {low} to {high}")
    return int(raw)


async def put_registration(request: Request) -> Response:
    registry: Registry = request.state.registry
    participant_id = request.path_params["participant_id"]
    await registry.authorize(request, participant_id)
    body = await read_body(request, MAX_BODY_BYTES, "a registration")
    answer = await registry.push(participant_id, parse_registration(body))
    request.state.metrics.registrations.labels("created" if answer["created"] else "updated").inc()
    return JSONResponse(answer, status_code=201 if answer["created"] else 200)


async def delete_registration(request: Request) -> Response:
    registry: Registry = request.state.registry
    participant_id = request.path_params["participant_id"]
    await registry.authorize(request, participant_id)
    await registry.unregister(participant_id, actor=participant_id)
    request.state.metrics.registrations.labels("deleted").inc()
    return Response(status_code=204)


async def get_registration(request: Request) -> Response:
    registry: Registry = request.state.registry
    return JSONResponse(await registry.entry(request.path_params["participant_id"]))


async def search_route(request: Request) -> Response:
    registry: Registry = request.state.registry
    answer = await registry.search(search_query(request))
    request.state.metrics.searches.inc()
    return JSONResponse(answer)
