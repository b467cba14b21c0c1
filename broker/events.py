"""The event log: every change to the registry, in order, with who made it.

An event is written in the same transaction as the change it records, so the log and the registry never
disagree. Its sequence number is the change feed's cursor: `GET /changes?since=N` answers the events after
N, which is how mirrors and other brokers follow this one, and `tessera broker events` shows the same log
to the operator.
"""

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TypedDict

from sqlalchemy import JSON, insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import Field, SQLModel, col, select

from tessera.clock import utcnow
from tessera.store import Database

MAX_EVENTS = 1000

Detail = dict[str, str | list[str]]  # what changed: names, reasons, lists of offering ids


class Event(SQLModel, table=True):
    """One change. `action` is dotted: registration.created, offering.changed, participant.suspended …"""

    __tablename__ = "broker_event"

    seq: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow)
    actor: str  # a participant id, "operator" or "crawler"
    action: str
    participant_id: str = Field(index=True)
    offering_id: str | None = None
    product_code: str | None = None
    detail: Detail = Field(default_factory=dict, sa_type=JSON)

    def public(self) -> dict[str, Any]:
        return {**self.model_dump(mode="json", exclude={"detail"}), "detail": self.detail}


class EventRow(TypedDict):
    """An event not yet written: `Event` without its sequence number."""

    at: datetime
    actor: str
    action: str
    participant_id: str
    offering_id: str | None
    product_code: str | None
    detail: Detail


def event(
    actor: str,
    action: str,
    participant_id: str,
    *,
    offering_id: str | None = None,
    product_code: str | None = None,
    detail: Mapping[str, str | list[str]] | None = None,
) -> EventRow:
    """An event row, ready for `record`."""
    return {
        "at": utcnow(),
        "actor": actor,
        "action": action,
        "participant_id": participant_id,
        "offering_id": offering_id,
        "product_code": product_code,
        "detail": dict(detail or {}),
    }


async def record(connection: AsyncConnection, events: Sequence[EventRow]) -> None:
    """Append events inside the caller's transaction."""
    if events:
        await connection.execute(insert(Event), list(events))


async def since(db: Database, after: int = 0, *, limit: int = 100, participant_id: str | None = None) -> list[Event]:
    statement = select(Event).where(col(Event.seq) > after).order_by(col(Event.seq)).limit(limit)
    if participant_id is not None:
        statement = statement.where(col(Event.participant_id) == participant_id)
    async with db.session() as session:
        return list(await session.exec(statement))
