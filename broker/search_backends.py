"""The search backend for the broker's database: FTS5 on SQLite, a tsvector with a GIN index on PostgreSQL."""

from broker.search import Fts5Search, SearchBackend
from broker.search_postgres import TsvectorSearch
from tessera.errors import BadRequest
from tessera.store import Database

BACKENDS: dict[str, type[SearchBackend]] = {"sqlite": Fts5Search, "postgresql": TsvectorSearch}


async def search_backend(db: Database) -> SearchBackend:
    """The backend for `db`'s dialect, its index set up."""
    dialect = db.engine.dialect.name
    if dialect not in BACKENDS:
        raise BadRequest(f"the broker's search needs SQLite or PostgreSQL, not {dialect}")
    backend = BACKENDS[dialect]()
    await backend.setup(db)
    return backend
