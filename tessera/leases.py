"""Leases: which replica does a piece of background work, when many processes share one database.

A lease is a row (`resource`, `holder`, `expires_at`). A claim is one insert-or-update that wins only
when the row is absent, expired or already the claimant's, so two replicas never both hold a resource;
a holder renews what it works on longer, and releases it when done. A replica that crashes releases
nothing: its leases expire and another replica claims the work then.

```python
leases = Leases(db, holder_id(), seconds=15)
async with leases.holding("push:" + pid) as held:
    if held:
        ...  # only this replica runs this, renewed while it does
```

Expiry compares the replicas' clocks: keep them synchronised (NTP) to well within `seconds`.
"""

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

from sqlalchemy import Table, delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Field, SQLModel, col, select

from tessera.clock import utcnow
from tessera.store import Database, Timestamp, UtcDateTime

# Seconds between a replica's looks for work it was not told of: what another replica committed or left.
POLL_SECONDS = 0.5


class Lease(SQLModel, table=True):
    __tablename__ = "lease"

    resource: str = Field(primary_key=True)  # e.g. "outbox:<process id>", "push:<transfer id>"
    holder: str  # `holder_id()` of the replica that holds it
    expires_at: Timestamp = Field(sa_type=UtcDateTime, index=True)  # claims look for expired ones


def holder_id() -> str:
    """This process among the replicas: host, pid and a random part (a pid is reused after a restart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Leases:
    """The leases one replica (`holder`) claims, each for `seconds` from its last claim or renewal."""

    def __init__(self, db: Database, holder: str, *, seconds: float) -> None:
        self.db = db
        self.holder = holder
        self.seconds = seconds
        self._working: set[str] = set()  # resources a `holding` block of this process runs on

    async def claim(self, resource: str) -> bool:
        """Take or renew `resource` for `seconds`; False while another holder's lease is unexpired."""
        now = utcnow()
        table: Table = Lease.__table__  # type: ignore[attr-defined]  # SQLModel declares it untyped
        insert = postgresql.insert if self.db.shared else sqlite.insert
        statement = (
            insert(table)
            .values(resource=resource, holder=self.holder, expires_at=now + timedelta(seconds=self.seconds))
            .on_conflict_do_update(
                index_elements=[table.c.resource],
                set_={"holder": self.holder, "expires_at": now + timedelta(seconds=self.seconds)},
                where=(table.c.expires_at < now) | (table.c.holder == self.holder),
            )
            .returning(table.c.holder)
        )
        async with self.db.write() as session:
            won = (await session.exec(statement)).first()
        return won is not None

    renew = claim

    async def release(self, resource: str) -> None:
        async with self.db.write() as session:
            ours = col(Lease.holder) == self.holder
            await session.exec(delete(Lease).where(col(Lease.resource) == resource, ours))

    async def release_all(self) -> None:
        """On a graceful stop: others take over at once instead of after expiry."""
        async with self.db.write() as session:
            await session.exec(delete(Lease).where(col(Lease.holder) == self.holder))

    async def holders(self) -> dict[str, tuple[str, datetime]]:
        """Every unexpired lease: resource -> (holder, expires_at)."""
        async with self.db.session() as session:
            rows = await session.exec(select(Lease).where(col(Lease.expires_at) >= utcnow()))
            return {row.resource: (row.holder, row.expires_at) for row in rows}

    @contextlib.asynccontextmanager
    async def holding(self, resource: str) -> AsyncIterator[bool]:
        """Claim `resource` for the block, renewing it while the block runs, and release it after.

        Yields False (and holds nothing) when another replica holds it, or when this process already
        works on it in another block: work is never done twice at once. A database only this process
        writes (SQLite) has no other replica: the block is claimed in memory, without a write.
        """
        if resource in self._working or (self.db.shared and not await self.claim(resource)):
            yield False
            return
        self._working.add(resource)
        if not self.db.shared:
            try:
                yield True
            finally:
                self._working.discard(resource)
            return
        renewal = asyncio.create_task(self._keep(resource), name=f"lease {resource}")
        try:
            yield True
        finally:
            renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewal
            self._working.discard(resource)
            with contextlib.suppress(Exception):  # unreleased, it expires: others wait `seconds` at most
                await asyncio.shield(self.release(resource))

    async def _keep(self, resource: str) -> None:
        while True:
            await asyncio.sleep(self.seconds / 3)
            with contextlib.suppress(Exception):  # a missed renewal is retried; the lease outlives two
                await self.renew(resource)
