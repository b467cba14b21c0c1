"""The database: one async SQLAlchemy engine per service, from a URL.

SQLite (`sqlite+aiosqlite:///path.db`) is the embedded default; PostgreSQL
(`postgresql+asyncpg://…`) is the production choice. Tables are SQLModel classes declared by the
modules that own them; `open_database` creates whatever is missing.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine.url import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path.resolve()}"


class Database:
    """An engine plus a session factory.

    ```python
    db = await Database.open("sqlite+aiosqlite:///connector.db")
    async with db.session() as session:
        session.add(record)
        await session.commit()
    ```
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
        # One writer at a time in this process: state checks and the audit chain head stay consistent.
        self._write_lock = asyncio.Lock()
        self.committed: dict[str, Any] = {}  # facts written transactions leave behind (see `transaction`)

    @classmethod
    async def open(cls, url: str) -> "Database":
        engine = create_async_engine(url, **_engine_options(url))
        if engine.dialect.name == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        async with engine.begin() as conn:
            await conn.run_sync(SQLModel.metadata.create_all)
        return cls(engine)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session:
            yield session

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A serialized write transaction: commits when the block ends, rolls back if it raises."""
        async with self._write_lock, self._sessions() as session:
            session.info["database"] = self
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise
            for key, value in session.info.get("after_commit", {}).items():
                self.committed[key] = value  # e.g. the audit chain's head, known without a query next time

    async def close(self) -> None:
        await self.engine.dispose()


def _engine_options(url: str) -> dict[str, object]:
    if make_url(url).get_backend_name() == "sqlite":
        return {"connect_args": {"timeout": 30}}
    return {"pool_pre_ping": True}


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    # WAL keeps readers off the writer's back; FULL sync so an acknowledged write survives a crash.
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
