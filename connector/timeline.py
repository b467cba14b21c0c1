"""Diagnostics: what happened to one negotiation or transfer, in order.

Every message received or queued, each delivery attempt with its HTTP status or error, agent and
operator decisions. Operators read it through the management API or `tessera connector timeline`
to see why a process is stuck and what the counter-party answered.
"""

from typing import Any

from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tessera.clock import utcnow
from tessera.store import Timestamp, UtcDateTime


class TimelineEvent(SQLModel, table=True):
    __tablename__ = "timeline_event"

    id: int | None = Field(default=None, primary_key=True)
    process_id: str = Field(index=True)
    at: Timestamp = Field(default_factory=utcnow, sa_type=UtcDateTime)
    kind: str  # received | queued | sent | retry | failed | decided | waiting
    message_type: str | None = None
    status: int | None = None  # HTTP status of a delivery or of our answer
    detail: str | None = None

    def public(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"id", "process_id"})


def record(
    session: AsyncSession,
    process_id: str,
    kind: str,
    message_type: str | None,
    *,
    status: int | None = None,
    detail: str | None = None,
) -> None:
    session.add(
        TimelineEvent(process_id=process_id, kind=kind, message_type=message_type, status=status, detail=detail)
    )


async def events(session: AsyncSession, process_id: str) -> list[TimelineEvent]:
    query = select(TimelineEvent).where(TimelineEvent.process_id == process_id).order_by(col(TimelineEvent.id))
    return list(await session.exec(query))
