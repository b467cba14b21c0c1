"""Answers to protocol messages, kept so a repeated message is answered as the first one was.

Peers retry (our outbox does, and so does every connector in the field) when an ACK is lost; the
repeat must not fail with an illegal transition or act twice. A message is the same when the same
participant sends the same bytes to the same path.

The answer is written by the transaction that makes the change it reports (`Runtime.transaction`, through
the `Pending` reply of the message being handled), so a crash after that commit still leaves a retry its
answer; an answer no state transaction wrote (nothing changed) is remembered on its own.
"""

import hashlib
from dataclasses import dataclass
from typing import Any

from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from tessera.clock import utcnow
from tessera.store import Database, Json, Timestamp, UtcDateTime

Answer = tuple[int, dict[str, Any]]  # status, JSON body


class Reply(SQLModel, table=True):
    digest: str = Field(primary_key=True)
    status: int
    body: dict[str, Any] = Field(sa_type=Json)  # the JSON answered
    at: Timestamp = Field(default_factory=utcnow, sa_type=UtcDateTime)


@dataclass
class Pending:
    """The reply to the message being handled: its key, and what is stored under it."""

    key: str
    earlier: Answer | None  # stored before this request (a retry whose process moved on since)
    written: Answer | None = None  # what this request's committed transactions stored


def digest(sender: str, path: str, body: bytes) -> str:
    return hashlib.sha256(sender.encode() + b"\0" + path.encode() + b"\0" + body).hexdigest()


async def recall(db: Database, key: str) -> Answer | None:
    async with db.session() as session:
        reply = await session.get(Reply, key)
    return (reply.status, reply.body) if reply else None


async def write(session: AsyncSession, pending: Pending, answer: Answer) -> None:
    """Store `answer` under the pending key inside the caller's write transaction; `committed` once it commits."""
    if pending.written != answer:
        await _put(session, pending.key, answer)


def committed(pending: Pending, answer: Answer) -> None:
    pending.written = answer


async def remember(db: Database, pending: Pending, answer: Answer) -> None:
    """Store `answer` on its own, unless the state transaction already stored exactly it."""
    if pending.written == answer:
        return
    async with db.transaction() as session:
        await _put(session, pending.key, answer)
    pending.written = answer


async def withdraw(db: Database, pending: Pending) -> None:
    """The message was refused after all: put back what was stored before it (nothing, or the earlier answer)."""
    if pending.written is None:
        return
    async with db.transaction() as session:
        reply = await session.get(Reply, pending.key)
        if reply is not None and pending.earlier is None:
            await session.delete(reply)
        elif reply is not None and pending.earlier is not None:
            reply.status, reply.body = pending.earlier
    pending.written = None


async def _put(session: AsyncSession, key: str, answer: Answer) -> None:
    # Read first (under the write lock): a duplicate handled at the same time may have stored it already.
    status, body = answer
    reply = await session.get(Reply, key)
    if reply is None:
        session.add(Reply(digest=key, status=status, body=body))
    else:
        reply.status, reply.body = status, body
