"""The broker's database schema: the modules that declare its tables, its revisions in `broker/migrations/`.

`Database.open` creates and migrates exactly these tables, whatever else the process imported (tests
import the connector's as well); `tests/tessera/test_migrations.py` checks that every table a module of
ours declares belongs to one schema. The search index (FTS5 on SQLite) is no model: `broker.search`
sets it up at start.
"""

from pathlib import Path

from tessera.migrations import Schema

SCHEMA = Schema(
    name="broker",
    modules=(
        "broker.authority",
        "broker.checkpoints",
        "broker.entries",
        "broker.events",
        "broker.products",
    ),
    directory=Path(__file__).parent / "migrations",
)
