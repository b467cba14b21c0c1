"""The tamper-evident audit log: an append-only hash chain.

Every negotiation step, policy decision and transfer appends an entry inside the same database
transaction as the change it records, so there is never a change without its entry or the reverse.
Each entry's hash covers its content and the previous entry's hash; `verify` recomputes the chain and
names the first entry that does not match.
"""

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tessera.clock import rfc3339
from tessera.identity import canonical_json

GENESIS = "0" * 64
HEAD = "audit_head"  # key of the chain head in a transaction's and the database's memory


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_entry"

    seq: int = Field(primary_key=True)
    at: str
    actor: str  # the participant whose act is recorded
    action: str  # e.g. "negotiation.requested", "usage.denied"
    subject: str  # the process, agreement or asset the act concerns
    details: str = "{}"  # JSON object
    prev_hash: str
    hash: str

    def content(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "subject": self.subject,
            "details": json.loads(self.details),
            "prev_hash": self.prev_hash,
        }


def entry_hash(content: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(content)).hexdigest()


async def append(session: AsyncSession, *, actor: str, action: str, subject: str, **details: Any) -> AuditEntry:
    """Add an entry to the chain; call inside `Database.transaction()` so appends never interleave."""
    seq, prev_hash = await _head(session)
    entry = AuditEntry(
        seq=seq + 1,
        at=rfc3339(timespec="microseconds"),
        actor=actor,
        action=action,
        subject=subject,
        details=json.dumps(details, sort_keys=True, default=str),
        prev_hash=prev_hash,
        hash="",
    )
    entry.hash = entry_hash(entry.content())
    session.add(entry)
    session.info.setdefault("after_commit", {})[HEAD] = (entry.seq, entry.hash)
    return entry


async def _head(session: AsyncSession) -> tuple[int, str]:
    """The chain's last (seq, hash): this transaction's own, else the last committed one, else the database's."""
    pending = session.info.get("after_commit", {}).get(HEAD)
    if pending:
        return pending
    database = session.info.get("database")
    if database is not None and HEAD in database.committed:
        return database.committed[HEAD]
    last = (await session.exec(select(AuditEntry).order_by(col(AuditEntry.seq).desc()).limit(1))).first()
    return (last.seq, last.hash) if last else (0, GENESIS)


@dataclass(frozen=True)
class ChainReport:
    entries: int
    first_broken: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.first_broken is None

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries": self.entries, "first_broken": self.first_broken, "problem": self.problem}


async def verify(session: AsyncSession) -> ChainReport:
    expected_prev, expected_seq, count = GENESIS, 1, 0
    for entry in await session.exec(select(AuditEntry).order_by(col(AuditEntry.seq))):
        count += 1
        if entry.seq != expected_seq:
            return ChainReport(count, expected_seq, f"entry {expected_seq} is missing")
        if entry.prev_hash != expected_prev:
            return ChainReport(count, entry.seq, f"entry {entry.seq} does not link to entry {entry.seq - 1}")
        try:
            recomputed = entry_hash(entry.content())
        except ValueError:
            return ChainReport(count, entry.seq, f"entry {entry.seq} has unreadable details")
        if recomputed != entry.hash:
            return ChainReport(count, entry.seq, f"entry {entry.seq} was altered (hash mismatch)")
        expected_prev, expected_seq = entry.hash, entry.seq + 1
    return ChainReport(count)


async def entries(session: AsyncSession, *, subject: str | None = None, limit: int = 100) -> list[AuditEntry]:
    query = select(AuditEntry).order_by(col(AuditEntry.seq).desc()).limit(limit)
    if subject:
        query = query.where(AuditEntry.subject == subject)
    return list(await session.exec(query))
