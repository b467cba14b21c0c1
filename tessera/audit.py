"""The tamper-evident audit log: an append-only hash chain.

Every negotiation step, policy decision and transfer appends an entry inside the same database
transaction as the change it records, so there is never a change without its entry or the reverse.
Each entry's hash covers its content and the previous entry's hash; `verify` recomputes the chain and
names the first entry that does not match. Each entry names its hash (`hash_alg`: SHA-256, or SM3 under
the SM crypto profile, see `Database.audit_hash`), so `verify` checks every entry with the hash it was
written with, whichever profile the connector runs now.
"""

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy
from cryptography.hazmat.primitives import hashes
from sqlalchemy import Text, cast
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tessera.clock import rfc3339
from tessera.identity import canonical_json
from tessera.json import JSON, JSONObject
from tessera.store import AuditHead, Json, unit_of_work

GENESIS = "0" * 64
DEFAULT_HASH = "sha256"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _sm3(data: bytes) -> str:
    digest = hashes.Hash(hashes.SM3())  # GB/T 32905, from the OpenSSL inside pyca/cryptography
    digest.update(data)
    return digest.finalize().hex()


HASHES: dict[str, Callable[[bytes], str]] = {"sha256": _sha256, "sm3": _sm3}  # both 256 bits: GENESIS fits


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_entry"

    seq: int = Field(primary_key=True)
    at: str  # RFC 3339 with microseconds: the very text the hash covers
    actor: str  # the participant whose act is recorded
    action: str  # e.g. "negotiation.requested", "usage.denied"
    subject: str  # the process, agreement or asset the act concerns
    details: JSONObject = Field(default_factory=dict, sa_type=Json)
    prev_hash: str
    hash_alg: str = DEFAULT_HASH  # a key of HASHES
    hash: str

    def content(self) -> JSONObject:
        content: JSONObject = {
            "seq": self.seq,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "subject": self.subject,
            "details": self.details,
            "prev_hash": self.prev_hash,
        }
        # A SHA-256 entry hashes exactly what it did before entries named their hash; any other covers the name.
        return content if self.hash_alg == DEFAULT_HASH else content | {"hash_alg": self.hash_alg}

    def computed_hash(self) -> str:
        """The hash of this entry's content with its own algorithm; KeyError for an unknown one."""
        return HASHES[self.hash_alg](canonical_json(self.content()))


async def append(session: AsyncSession, *, actor: str, action: str, subject: str, **details: JSON) -> AuditEntry:
    """Add an entry to the chain; call inside `Database.transaction()` so appends never interleave."""
    work = unit_of_work(session)
    seq, prev_hash = await _head(session)
    entry = AuditEntry(
        seq=seq + 1,
        at=rfc3339(timespec="microseconds"),
        actor=actor,
        action=action,
        subject=subject,
        details=_plain(details),
        prev_hash=prev_hash,
        hash_alg=work.database.audit_hash,
        hash="",
    )
    entry.hash = entry.computed_hash()
    session.add(entry)
    work.audit_head = (entry.seq, entry.hash)
    return entry


def _plain(details: JSONObject) -> JSONObject:
    """`details` as plain JSON (other values as their `str`), keys sorted: the hash covers what is read back."""
    plain: JSONObject = json.loads(json.dumps(details, sort_keys=True, default=str))
    return plain


async def _head(session: AsyncSession) -> AuditHead:
    """The chain's last (seq, hash): this transaction's own, else the cached last committed one (a database
    only this process writes), else the database's, read under the write lock."""
    work = unit_of_work(session)
    if work.audit_head is not None:
        return work.audit_head
    if work.database.audit_head is not None:
        return work.database.audit_head
    last = (await session.exec(select(AuditEntry).order_by(col(AuditEntry.seq).desc()).limit(1))).first()
    return (last.seq, last.hash) if last else (0, GENESIS)


@dataclass(frozen=True)
class ChainReport:
    entries: int
    first_broken: int | None = None
    problem: str | None = None
    hashes: tuple[str, ...] = ()  # the hashes the checked entries use, in order of first use

    @property
    def ok(self) -> bool:
        return self.first_broken is None

    def to_dict(self) -> JSONObject:
        return {
            "ok": self.ok,
            "entries": self.entries,
            "first_broken": self.first_broken,
            "problem": self.problem,
            "hashes": list(self.hashes),
        }


async def verify(session: AsyncSession) -> ChainReport:
    expected_prev, expected_seq, count = GENESIS, 1, 0
    used: dict[str, None] = {}  # an ordered set
    connection = await session.connection()
    for row in await connection.execute(sqlalchemy.select(*_STORED).order_by(col(AuditEntry.seq))):
        count += 1
        problem = _problem(row, expected_seq, expected_prev)
        if problem is not None:
            return ChainReport(count, expected_seq, problem, tuple(used))
        used[row.hash_alg] = None
        expected_prev, expected_seq = row.hash, row.seq + 1
    return ChainReport(count, hashes=tuple(used))


def _problem(row: sqlalchemy.Row[*tuple[Any, ...]], expected_seq: int, expected_prev: str) -> str | None:
    """What is wrong with a stored entry, given where the chain stands; None when it holds."""
    if row.seq != expected_seq:
        return f"entry {expected_seq} is missing"
    if row.prev_hash != expected_prev:
        return f"entry {row.seq} does not link to entry {row.seq - 1}"
    if row.hash_alg not in HASHES:
        return f"entry {row.seq} names an unknown hash {row.hash_alg!r}"
    try:
        # asyncpg hands back the JSON column decoded even as text; SQLite the text on disk.
        details = row.details if isinstance(row.details, dict) else json.loads(row.details)
        entry = AuditEntry(**(row._asdict() | {"details": details}))
    except ValueError:
        return f"entry {row.seq} has unreadable details"
    if entry.computed_hash() != entry.hash:
        return f"entry {row.seq} was altered (hash mismatch)"
    return None


# The stored columns, details as the text on disk: `verify` reports unreadable JSON instead of failing on it.
# A cast, not a type coercion: PostgreSQL's driver would otherwise hand back the JSON already parsed.
_STORED = (
    col(AuditEntry.seq),
    col(AuditEntry.at),
    col(AuditEntry.actor),
    col(AuditEntry.action),
    col(AuditEntry.subject),
    cast(AuditEntry.details, Text).label("details"),
    col(AuditEntry.prev_hash),
    col(AuditEntry.hash_alg),
    col(AuditEntry.hash),
)


async def entries(session: AsyncSession, *, subject: str | None = None, limit: int = 100) -> list[AuditEntry]:
    query = select(AuditEntry).order_by(col(AuditEntry.seq).desc()).limit(limit)
    if subject:
        query = query.where(AuditEntry.subject == subject)
    return list(await session.exec(query))
