"""The database: one async SQLAlchemy engine per service, from a URL.

SQLite (`sqlite+aiosqlite:///path.db`) is the embedded default; PostgreSQL
(`postgresql+asyncpg://…`) is the production choice. Tables are SQLModel classes declared by the
modules that own them; `Database.open(url, schema=…)` creates a service's tables in an empty database
and migrates an older one (`tessera.migrations`, docs/migrations.md).

Column types for what records keep: `UtcDateTime` (aware UTC datetimes, rendered as RFC 3339 in JSON
through the `Timestamp` annotation), `Json` (JSON values) and `JsonOf` (JSON holding a typed value).
A JSON value changed in place is not seen by SQLAlchemy: assign a new value.
"""

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import PlainSerializer
from sqlalchemy import JSON, DateTime, Dialect, event, text
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.engine.url import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.types import TypeDecorator
from sqlmodel.ext.asyncio.session import AsyncSession

from tessera.clock import aware, rfc3339
from tessera.migrations import Schema, prepare

T = TypeVar("T")
AuditHead = tuple[int, str]  # the audit chain's last (seq, hash)
# The PostgreSQL advisory lock every write transaction takes first: one writer across all replicas.
WRITE_LOCK_KEY = 0x7465_7373_6572_6101  # "tessera" + 1, a bigint

# An aware UTC datetime in Python, RFC 3339 text (`2026-12-01T09:25:30Z`) in JSON (`model_dump(mode="json")`).
Timestamp = Annotated[datetime, PlainSerializer(rfc3339, return_type=str, when_used="json")]


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp column: stored in UTC, always read back aware (SQLite hands back naive datetimes)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else aware(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else aware(value)


class Json(TypeDecorator[Any]):
    """A JSON column; Python `None` is SQL NULL, not the JSON `null`."""

    impl = JSON(none_as_null=True)
    cache_ok = True


class JsonOf(TypeDecorator[T]):
    """A JSON column holding a typed value: subclass it with `load` (JSON to value) and `dump`."""

    impl = JSON(none_as_null=True)
    cache_ok = True

    def load(self, data: Any) -> T:  # JSON as the database hands it back
        raise NotImplementedError  # pragma: no cover

    def dump(self, value: T) -> Any:
        raise NotImplementedError  # pragma: no cover

    def process_bind_param(self, value: T | None, dialect: Dialect) -> Any:
        return None if value is None else self.dump(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> T | None:
        return None if value is None else self.load(value)


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path.resolve()}"


@dataclass(eq=False)
class UnitOfWork:
    """What one write transaction knows beside its session; `unit_of_work(session)` finds it."""

    database: "Database"
    audit_head: AuditHead | None = None  # the chain head after this transaction's audit entries
    queued: bool = False  # it put messages in the outbox: wake the sender once it commits


_UNIT_OF_WORK = "tessera.unit_of_work"  # its key in the session's `info`


def unit_of_work(session: AsyncSession) -> UnitOfWork:
    """The unit of work of a session opened by `Database.transaction()`."""
    work = session.info.get(_UNIT_OF_WORK)
    assert isinstance(work, UnitOfWork), "writes go through Database.transaction()"
    return work


class Database:
    """An engine plus a session factory.

    ```python
    db = await Database.open("sqlite+aiosqlite:///connector.db")
    async with db.transaction() as session:
        session.add(record)
    ```
    """

    def __init__(self, engine: AsyncEngine, *, audit_hash: str = "sha256") -> None:
        self.engine = engine
        self.audit_hash = audit_hash  # what new audit entries hash with (tessera.audit.HASHES)
        self._sessions = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
        # One writer at a time in this process: state checks and the audit chain head stay consistent.
        # On PostgreSQL an advisory lock extends that to every process on the database (`transaction`).
        self._write_lock = asyncio.Lock()
        # The last committed audit entry, known without a query; kept only where this process is the
        # only writer (SQLite): another replica's append would make it stale.
        self.audit_head: AuditHead | None = None

    @property
    def shared(self) -> bool:
        """Whether other processes may write this database too (PostgreSQL: replicas); SQLite has one."""
        return self.engine.dialect.name != "sqlite"

    @classmethod
    async def open(cls, url: str, *, schema: Schema | None = None, audit_hash: str = "sha256") -> "Database":
        """The database at `url`, brought to `schema`'s head first (None: opened as it is, e.g. by a tool)."""
        engine = create_async_engine(url, **_engine_options(url))
        if engine.dialect.name == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        if schema is not None:
            try:
                async with engine.begin() as conn:
                    await conn.run_sync(prepare, schema)
            except BaseException:
                await engine.dispose()
                raise
        return cls(engine, audit_hash=audit_hash)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session:
            yield session

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A serialized write transaction: commits when the block ends, rolls back if it raises.

        Serialized in this process by a lock and, on a shared database, across processes by a
        transaction-level advisory lock taken first (released by the commit or rollback).
        """
        async with self._write_lock, self._sessions() as session:
            work = UnitOfWork(self)
            session.info[_UNIT_OF_WORK] = work
            try:
                if self.shared:
                    connection = await session.connection()
                    await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": WRITE_LOCK_KEY})
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise
            if work.audit_head is not None and not self.shared:
                self.audit_head = work.audit_head

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A short write that is atomic on its own (one statement, e.g. a lease claim): it does not wait
        for other replicas' transactions; on SQLite it still takes this process's turn as the one writer."""
        async with nullcontext() if self.shared else self._write_lock, self._sessions() as session:
            yield session
            await session.commit()

    async def close(self) -> None:
        await self.engine.dispose()


def _engine_options(url: str) -> dict[str, object]:
    # JSON columns keep text readable as written (Chinese titles stay Chinese, not \u escapes).
    common: dict[str, object] = {"json_serializer": _json_text}
    if make_url(url).get_backend_name() == "sqlite":
        return {**common, "connect_args": {"timeout": 30}}
    return {**common, "pool_pre_ping": True}


def _json_text(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: object) -> None:
    # WAL keeps readers off the writer's back; FULL sync so an acknowledged write survives a crash.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
