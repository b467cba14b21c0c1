"""Answers to protocol messages, kept so a repeated message is answered as the first one was.

Peers retry (our outbox does, and so does every connector in the field) when an ACK is lost; the
repeat must not fail with an illegal transition or act twice. A message is the same when the same
participant sends the same bytes to the same path.
"""

import hashlib
from typing import Any

from sqlmodel import Field, SQLModel

from tessera.clock import utcnow
from tessera.store import Database, Json, Timestamp, UtcDateTime


class Reply(SQLModel, table=True):
    digest: str = Field(primary_key=True)
    status: int
    body: dict[str, Any] = Field(sa_type=Json)  # the JSON answered
    at: Timestamp = Field(default_factory=utcnow, sa_type=UtcDateTime)


def digest(sender: str, path: str, body: bytes) -> str:
    return hashlib.sha256(sender.encode() + b"\0" + path.encode() + b"\0" + body).hexdigest()


async def recall(db: Database, key: str) -> tuple[int, dict[str, Any]] | None:
    async with db.session() as session:
        reply = await session.get(Reply, key)
    return (reply.status, reply.body) if reply else None


async def remember(db: Database, key: str, status: int, body: dict[str, Any]) -> None:
    async with db.transaction() as session:
        if await session.get(Reply, key) is None:
            session.add(Reply(digest=key, status=status, body=body))
