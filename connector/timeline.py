"""Diagnostics: what happened to one negotiation or transfer, in order.

Every message received (from whom, and the status we answered) or queued, each delivery attempt with its
HTTP status or error, agent, operator, deadline and usage decisions with their reasons. Each event is
written in the transaction that makes the change it describes. Operators read it through the management
API or `tessera connector timeline` (by our pid or the counter-party's) to see why a process is stuck
and what the counter-party answered.

A DSP message is recorded by the request that handles it: the endpoint opens a `receiving(...)` context
and every write transaction (`Runtime.transaction`) records the message on the processes of that sender
it changes, once each, before it commits (`note_received`). The same transaction stores the answer to the
message (`note_reply`, connector/replies.py), so the record, the change and the reply commit together.
"""

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from connector import replies
from tessera.clock import utcnow
from tessera.store import Timestamp, UtcDateTime

MAX_DETAIL = 2000  # characters of a detail kept (a peer's error text can be long)


class TimelineEvent(SQLModel, table=True):
    __tablename__ = "timeline_event"

    id: int | None = Field(default=None, primary_key=True)
    process_id: str = Field(index=True)  # our pid
    at: Timestamp = Field(default_factory=utcnow, sa_type=UtcDateTime)
    kind: str  # received | queued | sent | retry | failed | reply-failed | decided | waiting | terminated | copy
    message_type: str | None = None
    party: str | None = None  # who sent a received message, or who decided (agent, operator, deadline, usage)
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
    party: str | None = None,
    status: int | None = None,
    detail: str | None = None,
) -> None:
    event = TimelineEvent(
        process_id=process_id,
        kind=kind,
        message_type=message_type,
        party=party,
        status=status,
        detail=detail[:MAX_DETAIL] if detail is not None else None,
    )
    session.add(event)


def decided(session: AsyncSession, process_id: str, by: str, action: str, reasons: Iterable[str] = ()) -> None:
    """A decision on the process: who took it (agent, operator, deadline, usage), what, and why."""
    why = "; ".join(reasons)
    record(session, process_id, "decided", None, party=by, detail=f"{action}: {why}" if why else action)


async def events(session: AsyncSession, process_id: str) -> list[TimelineEvent]:
    query = select(TimelineEvent).where(TimelineEvent.process_id == process_id).order_by(col(TimelineEvent.id))
    return list(await session.exec(query))


# -- the message a request is handling ------------------------------------------------------------------


@dataclass
class Receipt:
    """A DSP message being handled: its type, its sender, the status we answer if all goes well."""

    message_type: str
    sender: str
    status: int
    recorded: set[str] = field(default_factory=set)  # processes it is recorded on (committed)
    open: bool = True  # False once its request is answered: background work started by it records nothing
    reply: replies.Pending | None = None  # where its answer is kept for a retry
    answer: Callable[[Any], dict[str, Any]] = lambda process: dict(process.dsp())  # the body for its process


_current: ContextVar[Receipt | None] = ContextVar("tessera_timeline_receipt", default=None)


@contextmanager
def receiving(message_type: str, sender: str, status: int, **options: Any) -> Iterator[Receipt]:
    """Handle a message; `options` are the receipt's `reply` and `answer`."""
    receipt = Receipt(message_type, sender, status, **options)
    token = _current.set(receipt)
    try:
        yield receipt
    finally:
        receipt.open = False
        _current.reset(token)


def answering(status: int) -> None:
    """The message being handled is answered with `status` after all (a refusal that also ends the process)."""
    if (receipt := _current.get()) is not None:
        receipt.status = status


def note_received(session: AsyncSession, touched: Iterable[Any]) -> set[str]:
    """Record the message being handled on the sender's processes among `touched`, where not yet recorded.

    Returns their pids; `Runtime.transaction` marks them recorded once the transaction commits.
    """
    receipt = _current.get()
    if receipt is None or not receipt.open:
        return set()
    sender = receipt.sender
    pids = {str(obj.id) for obj in _senders(touched, sender)} - receipt.recorded
    for pid in sorted(pids):
        record(session, pid, "received", receipt.message_type, party=receipt.sender, status=receipt.status)
    return pids


async def note_reply(session: AsyncSession, touched: Iterable[Any]) -> replies.Answer | None:
    """Store the answer to the message being handled, from the one sender's process this transaction holds.

    A refusal (status 300 and up) stores nothing; with no such process (or several) the endpoint remembers
    its answer itself. Returns the answer stored; `committed` takes it once the transaction commits.
    """
    receipt = _current.get()
    if receipt is None or not receipt.open or receipt.reply is None or receipt.status >= 300:
        return None
    theirs = list(_senders(touched, receipt.sender))
    if len(theirs) != 1:
        return None
    answer = (receipt.status, receipt.answer(theirs[0]))
    await replies.write(session, receipt.reply, answer)
    return answer


def committed(pids: set[str], answer: replies.Answer | None = None) -> None:
    receipt = _current.get()
    if receipt is None:
        return
    receipt.recorded |= pids
    if receipt.reply is not None and answer is not None:
        replies.committed(receipt.reply, answer)


def _senders(touched: Iterable[Any], sender: str) -> Iterator[Any]:
    """The processes among `touched` whose counter-party is `sender`."""
    return (obj for obj in touched if hasattr(obj, "state") and getattr(obj, "counterparty_id", None) == sender)
