"""The registry's records and the one function that changes a participant's offerings: `merge`.

Offerings reach the broker two ways. A push (the connector's PUT) brings metadata at once; a crawl of the
connector's DSP catalog shows what it really offers. Each offering row remembers both (`pushed`,
`in_catalog`): a push replaces the pushed set, a crawl replaces the catalogued set, and an offering leaves
when neither source lists it any longer. (A pushed offering missing from the catalog stays, flagged
`in_catalog: false`: its access policy may simply hide it from the broker.) The catalog is the source of
truth for what it carries (title, description, keywords); the push adds what DSP catalogs lack (format,
theme, licence, classification, region, language).

Every merge runs inside the caller's transaction and writes, together, the offering rows, the search
index, the product lifecycle steps and the events, so nothing is ever half-written.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, TypedDict

from sqlalchemy import JSON, delete, insert, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import Field, SQLModel, UniqueConstraint, col, select

from broker import events, products
from broker.metadata import EMPTY, Metadata, metadata_hash, metadata_of
from broker.quotas import QuotaExceeded
from broker.search import Document, SearchBackend
from tessera.clock import rfc3339, utcnow

ONLINE, OFFLINE, DEAD = "ONLINE", "OFFLINE", "DEAD"


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else rfc3339(moment, timespec="auto")


class Liveness(TypedDict):
    state: str
    last_seen_at: str | None
    last_changed_at: str | None
    state_changed_at: str | None


class CrawlStatus(TypedDict):
    crawled_at: str | None
    status: str
    error: str
    failures: int
    next_crawl_at: str | None


class RegistrationPublic(TypedDict):
    participant_id: str
    endpoint: str
    title: str
    description: str
    liveness: Liveness
    created_at: str | None
    updated_at: str | None


class OfferingPublic(Metadata):
    id: str
    dataset_id: str  # the `@id` of the DSP dataset holding this offer: a negotiation's target ("" if unknown)
    product_code: str
    content_hash: str
    pushed: bool
    in_catalog: bool
    created_at: str | None
    changed_at: str | None


class Registration(SQLModel, table=True):
    """A registered connector: its self-description, liveness and crawl state."""

    __tablename__ = "broker_registration"

    participant_id: str = Field(primary_key=True)
    endpoint: str
    title: str
    description: str
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)  # last push
    changed_at: datetime = Field(default_factory=utcnow)  # last change of content, pushed or crawled
    state: str = ONLINE
    state_changed_at: datetime = Field(default_factory=utcnow)
    last_seen_at: datetime = Field(default_factory=utcnow)
    next_crawl_at: datetime = Field(default_factory=utcnow, index=True)
    crawled_at: datetime | None = None
    crawl_status: str = ""  # "200", "304", "error"
    crawl_error: str = ""
    crawl_failures: int = 0
    crawl_etag: str = ""
    offerings: int = 0

    def public(self) -> RegistrationPublic:
        return {
            "participant_id": self.participant_id,
            "endpoint": self.endpoint,
            "title": self.title,
            "description": self.description,
            "liveness": self.liveness(),
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }

    def liveness(self) -> Liveness:
        return {
            "state": self.state,
            "last_seen_at": iso(self.last_seen_at),
            "last_changed_at": iso(self.changed_at),
            "state_changed_at": iso(self.state_changed_at),
        }

    def crawl(self) -> CrawlStatus:
        return {
            "crawled_at": iso(self.crawled_at),
            "status": self.crawl_status,
            "error": self.crawl_error,
            "failures": self.crawl_failures,
            "next_crawl_at": iso(self.next_crawl_at),
        }


class Offering(SQLModel, table=True):
    __tablename__ = "broker_offering"
    __table_args__ = (UniqueConstraint("participant_id", "id"),)

    pk: int | None = Field(default=None, primary_key=True)
    participant_id: str
    id: str
    dataset_id: str = ""
    title: str
    description: str = ""
    keywords: list[str] = Field(default_factory=list, sa_type=JSON)
    format: str = Field(default="", index=True)
    theme: str = Field(default="", index=True)
    license: str = ""
    classification: str = Field(default="", index=True)
    region: str = Field(default="", index=True)
    language: str = ""
    pushed: bool = False
    in_catalog: bool = False
    state: str = ONLINE  # the registration's liveness, copied for facets and filters
    listed: bool = True  # false once a DEAD entry has been dead long enough to leave search
    product_code: str = ""
    content_hash: str = ""
    created_at: datetime = Field(default_factory=utcnow)
    changed_at: datetime = Field(default_factory=utcnow, index=True)

    def public(self) -> OfferingPublic:
        return {
            "id": self.id,
            "dataset_id": self.dataset_id,
            **metadata_of(self),
            "product_code": self.product_code,
            "content_hash": self.content_hash,
            "pushed": self.pushed,
            "in_catalog": self.in_catalog,
            "created_at": iso(self.created_at),
            "changed_at": iso(self.changed_at),
        }


class Tombstone(SQLModel, table=True):
    """An entry (offering_id "") or one offering the operator force-deleted, with the reason."""

    __tablename__ = "broker_tombstone"

    participant_id: str = Field(primary_key=True)
    offering_id: str = Field(primary_key=True, default="")
    reason: str
    at: datetime = Field(default_factory=utcnow)


@dataclass
class Outcome:
    """What a merge changed; `codes` maps every current offering id to its product code."""

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    withdrawn: list[str] = field(default_factory=list)  # tombstoned by the operator: not taken
    codes: dict[str, str] = field(default_factory=dict)

    @property
    def changed_anything(self) -> bool:
        return bool(self.added or self.changed or self.removed)

    def summary(self) -> dict[str, list[str]]:
        return {"added": self.added, "changed": self.changed, "removed": self.removed, "withdrawn": self.withdrawn}


async def offerings_of(connection: AsyncConnection, participant_id: str) -> dict[str, Offering]:
    rows = await connection.execute(select(Offering).where(col(Offering.participant_id) == participant_id))
    return {o.id: o for o in (Offering.model_validate(row._mapping) for row in rows)}


async def tombstoned(connection: AsyncConnection, participant_id: str) -> set[str]:
    rows = await connection.execute(
        select(col(Tombstone.offering_id)).where(col(Tombstone.participant_id) == participant_id)
    )
    return {offering_id for (offering_id,) in rows if offering_id}


@dataclass(frozen=True, kw_only=True)
class Merge:
    """The context of one merge: who, from which source, with which defaults."""

    participant_id: str
    source: Literal["push", "crawl"]
    actor: str
    region: str = ""
    state: str = ONLINE
    listed: bool = True
    notice_period: float = 0.0
    max_offerings: int = 0
    corrections: Mapping[str, str] = field(default_factory=dict)  # offering id -> reason
    # offering id -> DSP dataset id; an address, not content: outside the content hash (a "" keeps the stored one)
    datasets: Mapping[str, str] = field(default_factory=dict)


async def merge(
    connection: AsyncConnection, search: SearchBackend, context: Merge, incoming: Mapping[str, Metadata]
) -> Outcome:
    """Make `context.source`'s view of the participant's offerings `incoming` (offering id -> metadata)."""
    pid, pushing = context.participant_id, context.source == "push"
    existing = await offerings_of(connection, pid)
    blocked = await tombstoned(connection, pid)
    outcome = Outcome(withdrawn=sorted(set(incoming) & blocked))
    rows: dict[str, Metadata] = {}  # offering id -> new metadata, for added and changed
    for offering_id, fields in incoming.items():
        if offering_id in blocked:
            continue
        old = existing.get(offering_id)
        metadata = _updated(metadata_of(old) if old else {**EMPTY, "region": context.region}, fields, context)
        if old is None:
            outcome.added.append(offering_id)
        elif metadata_hash(pid, offering_id, metadata) != old.content_hash:
            outcome.changed.append(offering_id)
        rows[offering_id] = metadata
    gone = [
        o
        for o in existing.values()
        if o.id not in incoming
        and (o.pushed if pushing else o.in_catalog)
        and not (o.in_catalog if pushing else o.pushed)
    ]
    outcome.removed = sorted(o.id for o in gone)
    final_count = len(existing) + len(outcome.added) - len(gone)
    if context.max_offerings and final_count > context.max_offerings:
        raise QuotaExceeded(f"{pid!r} may register at most {context.max_offerings} offerings, not {final_count}")
    outcome.codes = await _lifecycle(connection, context, existing, rows, outcome)
    await _write(connection, search, context, existing, rows, outcome, gone)
    kept = {o.id: o.product_code for o in existing.values()} | outcome.codes
    outcome.codes = {k: v for k, v in kept.items() if k not in outcome.removed and k not in blocked}
    return outcome


def _updated(base: Metadata, fields: Metadata, context: Merge) -> Metadata:
    """A push brings every field (a blank region is the participant's); a crawl only the catalog's three."""
    if context.source == "push":
        return {**fields, "region": fields["region"] or context.region}
    return {**base, "title": fields["title"], "description": fields["description"], "keywords": fields["keywords"]}


async def _lifecycle(
    connection: AsyncConnection,
    context: Merge,
    existing: Mapping[str, Offering],
    rows: Mapping[str, Metadata],
    outcome: Outcome,
) -> dict[str, str]:
    steps = []
    pid = context.participant_id
    for offering_id in [*outcome.added, *outcome.changed]:
        metadata = rows[offering_id]
        action = products.REGISTERED if offering_id in outcome.added else products.CHANGED
        reason = context.corrections.get(offering_id, "")
        if reason and action == products.CHANGED:
            action = products.CORRECTED
        steps.append(
            products.Step(
                participant_id=pid,
                offering_id=offering_id,
                action=action,
                actor=context.actor,
                title=metadata["title"],
                content_hash=metadata_hash(pid, offering_id, metadata),
                metadata=metadata,
                reason=reason,
            )
        )
    for offering_id in outcome.removed:
        reason = f"no longer {'registered' if context.source == 'push' else 'in the DSP catalog'}"
        steps.append(
            products.Step(
                participant_id=pid,
                offering_id=offering_id,
                action=products.CANCELLED,
                actor=context.actor,
                reason=reason,
            )
        )
    return await products.apply(connection, steps, notice_period=context.notice_period)


async def _write(
    connection: AsyncConnection,
    search: SearchBackend,
    context: Merge,
    existing: Mapping[str, Offering],
    rows: Mapping[str, Metadata],
    outcome: Outcome,
    gone: list[Offering],
) -> None:
    pid, moment, pushing = context.participant_id, utcnow(), context.source == "push"
    await remove_offerings(connection, search, gone)
    flag = {"pushed": True} if pushing else {"in_catalog": True}
    inserts = [
        {
            "participant_id": pid,
            "id": offering_id,
            "dataset_id": context.datasets.get(offering_id, ""),
            **rows[offering_id],
            "pushed": pushing,
            "in_catalog": not pushing,
            "state": context.state,
            "listed": context.listed,
            "product_code": outcome.codes[offering_id],
            "content_hash": metadata_hash(pid, offering_id, rows[offering_id]),
            "created_at": moment,
            "changed_at": moment,
        }
        for offering_id in outcome.added
    ]
    if inserts:
        await connection.execute(insert(Offering), inserts)
    for offering_id in outcome.changed:
        values = {
            **rows[offering_id],
            **flag,
            "content_hash": metadata_hash(pid, offering_id, rows[offering_id]),
            "changed_at": moment,
        }
        await connection.execute(update(Offering).where(col(Offering.pk) == existing[offering_id].pk).values(**values))
    unflag = {"pushed": False} if pushing else {"in_catalog": False}
    gone_ids = set(outcome.removed)
    for o in existing.values():
        if o.id in rows and o.id not in outcome.changed and not (o.pushed if pushing else o.in_catalog):
            await connection.execute(update(Offering).where(col(Offering.pk) == o.pk).values(**flag))
        elif o.id not in rows and o.id not in gone_ids and (o.pushed if pushing else o.in_catalog):
            await connection.execute(update(Offering).where(col(Offering.pk) == o.pk).values(**unflag))
    await _move_datasets(connection, context, existing)
    await _index(connection, search, pid, [*outcome.added, *outcome.changed], rows)
    await events.record(connection, _events(context, outcome))


async def _move_datasets(connection: AsyncConnection, context: Merge, existing: Mapping[str, Offering]) -> None:
    """Record the dataset id a source now names for an offering stored before (or under another one)."""
    for offering_id, dataset_id in context.datasets.items():
        old = existing.get(offering_id)
        if old is not None and dataset_id and dataset_id != old.dataset_id:
            await connection.execute(update(Offering).where(col(Offering.pk) == old.pk).values(dataset_id=dataset_id))


async def _index(
    connection: AsyncConnection,
    search: SearchBackend,
    participant_id: str,
    offering_ids: list[str],
    rows: Mapping[str, Metadata],
) -> None:
    if not offering_ids:
        return
    wanted = set(offering_ids)
    found = await connection.execute(
        select(col(Offering.pk), col(Offering.id)).where(col(Offering.participant_id) == participant_id)
    )
    documents = [
        Document(
            pk=pk,
            title=rows[offering_id]["title"],
            description=rows[offering_id]["description"],
            keywords=rows[offering_id]["keywords"],
        )
        for pk, offering_id in found
        if offering_id in wanted and pk is not None
    ]
    await search.index(connection, documents)


def _events(context: Merge, outcome: Outcome) -> list[events.EventRow]:
    pid, actor = context.participant_id, context.actor
    found = [
        events.event(
            actor, f"offering.{kind}", pid, offering_id=offering_id, product_code=outcome.codes.get(offering_id)
        )
        for kind, ids in (("added", outcome.added), ("changed", outcome.changed))
        for offering_id in ids
    ]
    found += [events.event(actor, "offering.removed", pid, offering_id=offering_id) for offering_id in outcome.removed]
    return found


async def remove_offerings(connection: AsyncConnection, search: SearchBackend, gone: list[Offering]) -> None:
    if gone:
        pks = [o.pk for o in gone if o.pk is not None]
        await search.remove(connection, pks)
        await connection.execute(delete(Offering).where(col(Offering.pk).in_(pks)))


async def set_state(connection: AsyncConnection, participant_id: str, *, state: str, listed: bool) -> None:
    """Copy a registration's liveness onto its offerings, where search filters and counts it."""
    await connection.execute(
        update(Offering).where(col(Offering.participant_id) == participant_id).values(state=state, listed=listed)
    )
