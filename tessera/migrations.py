"""Schema migrations (alembic) of one service's tables: what `Database.open(url, schema=…)` does to a database.

Each service declares its `Schema`: the names of its tables (its own and the kernel's it uses, such as
`audit_entry`) and its alembic directory (`connector/migrations/`, `broker/migrations/`, shipped with the
package). The SQLModel metadata is global, so a process that imports both services holds both services'
tables: creating, comparing and autogenerating here only ever see the schema's own tables.

`prepare` treats a database by what it finds:

- empty: create the tables as the models declare them and stamp the head (one step, no revision runs);
- tables but no `alembic_version` (made before migrations existed): stamp the baseline, then upgrade;
- versioned: upgrade to the head;
- at a revision this code does not know (a newer release migrated it): refuse, `SchemaMismatch`.

On PostgreSQL the preparation holds a transaction-scoped advisory lock, so replicas starting together
migrate once: the others wait, then find the database at the head. docs/migrations.md
"""

import hashlib
import importlib
import io
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.autogenerate.api import AutogenContext
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError
from sqlalchemy import Connection, Table, create_engine, inspect, text
from sqlalchemy.engine.url import make_url
from sqlalchemy.types import TypeDecorator
from sqlmodel import SQLModel

from tessera.errors import SchemaMismatch

VERSION_TABLE = "alembic_version"


@dataclass(frozen=True)
class Schema:
    """A service's tables, named by the modules that declare them, and the alembic revisions that build them.

    The modules are imported when the tables are needed (`importlib`, not an import statement): the
    table modules import the service's runtime, which opens the database with this schema. `baseline`
    is the revision of the schema as it was before migrations existed.
    """

    name: str
    modules: tuple[str, ...]
    directory: Path
    baseline: str = "0001"

    @property
    def tables(self) -> frozenset[str]:
        return frozenset(_declared(self.modules))

    def models(self) -> list[Table]:
        """The schema's tables as its SQLModel classes declare them."""
        declared = _declared(self.modules)
        return [declared[name] for name in sorted(declared)]

    def owns(self, name: str | None) -> bool:
        return name in self.tables


@cache
def _declared(modules: tuple[str, ...]) -> dict[str, Table]:
    for module in modules:
        importlib.import_module(module)
    mapped = (mapper.class_ for mapper in SQLModel._sa_registry.mappers)
    return {
        model.__table__.name: model.__table__
        for model in mapped
        if model.__module__ in modules and isinstance(getattr(model, "__table__", None), Table)
    }


@dataclass(frozen=True)
class Status:
    """Where a database stands: its revision (None: unversioned), this code's head, what an upgrade would run."""

    current: str | None
    head: str
    pending: list[str]
    state: Literal["empty", "unversioned", "behind", "current", "ahead"]


def prepare(connection: Connection, schema: Schema) -> Status:
    """Bring the database to the head (see the module docstring); returns where it stood before."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key(schema)})
    before = status(connection, schema)
    if before.state == "ahead":
        raise SchemaMismatch(
            f"the {schema.name} database is at schema revision {before.current}, which this release does not know"
            f" (its newest is {before.head}): a newer release migrated it; run that release or restore a backup"
        )
    if before.state == "empty":
        SQLModel.metadata.create_all(connection, tables=schema.models())
        MigrationContext.configure(connection).stamp(_script(schema), "head")
    elif before.state == "unversioned":
        MigrationContext.configure(connection).stamp(_script(schema), schema.baseline)
    if before.state in ("unversioned", "behind"):
        upgrade(connection, schema)
    return before


def upgrade(connection: Connection, schema: Schema, revision: str = "head") -> None:
    """Run the revisions up to `revision` (tests build an older schema with it); `prepare` is what start runs."""
    command.upgrade(_config(schema, connection), revision)


def status(connection: Connection, schema: Schema) -> Status:
    script = _script(schema)
    head = script.get_current_head()
    assert head is not None, f"{schema.directory} holds no revision"
    current = _one(MigrationContext.configure(connection).get_current_heads())
    if current is None:
        found = set(inspect(connection).get_table_names())
        state: Literal["empty", "unversioned"] = "unversioned" if found & schema.tables else "empty"
        start = schema.baseline if state == "unversioned" else None
        pending = [r.revision for r in script.iterate_revisions(head, start)] if start else []
        return Status(None, head, sorted(pending), state)
    try:
        pending = sorted(r.revision for r in script.iterate_revisions(head, current))
    except (CommandError, RevisionError):
        return Status(current, head, [], "ahead")
    return Status(current, head, pending, "behind" if pending else "current")


def upgrade_sql(url: str, schema: Schema, start: str | None) -> str:
    """The SQL an upgrade from `start` (None: an empty database) to the head runs, without a database."""
    out = io.StringIO()
    config = _config(schema, None, output=out)
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, f"{start}:head" if start else "head", sql=True)
    return out.getvalue()


def new_revision(schema: Schema, message: str) -> Path:
    """Write the next revision (`0003_…`), autogenerated: the models against the revisions run on a scratch SQLite."""
    script = _script(schema)
    number = max(int(r.revision) for r in script.walk_revisions()) + 1
    with create_engine("sqlite://").begin() as connection:
        upgrade(connection, schema)
        created = command.revision(_config(schema, connection), message, autogenerate=True, rev_id=f"{number:04d}")
    assert created is not None and not isinstance(created, list)
    _script.cache_clear()  # the directory has a new revision
    return Path(created.path)


def differences(connection: Connection, schema: Schema) -> list[Any]:
    """What the database's schema lacks or has beyond the models (alembic's diff; empty when they agree)."""
    context = MigrationContext.configure(connection, opts=_compare_options(schema))
    return list(compare_metadata(context, SQLModel.metadata))


def run_env(schema: Schema) -> None:
    """The body of a service's `env.py`: run the revisions on the caller's connection, or print them (`--sql`)."""
    from alembic import context  # only bound while alembic runs an env.py

    options: dict[str, Any] = {
        **_compare_options(schema),
        "target_metadata": SQLModel.metadata,
        "render_as_batch": True,  # SQLite alters a table by copying it
        "render_item": _render_item,
    }
    if context.is_offline_mode():
        url = context.config.get_main_option("sqlalchemy.url")
        assert url is not None
        context.configure(dialect_name=make_url(url).get_backend_name(), literal_binds=True, **options)
    else:
        context.configure(connection=context.config.attributes["connection"], **options)
    with context.begin_transaction():
        context.run_migrations()


def history(schema: Schema) -> list[tuple[str, str]]:
    """Every revision, oldest first: (id, message)."""
    revisions = reversed(list(_script(schema).walk_revisions()))
    return [(r.revision, r.doc) for r in revisions]


@cache
def _script(schema: Schema) -> ScriptDirectory:
    return ScriptDirectory.from_config(_config(schema, None))


def _config(schema: Schema, connection: Connection | None, *, output: io.StringIO | None = None) -> Config:
    config = Config(output_buffer=output)
    config.set_main_option("script_location", str(schema.directory))
    config.attributes["connection"] = connection
    return config


def _compare_options(schema: Schema) -> dict[str, Any]:
    def include_name(name: str | None, type_: str, _parents: dict[str, str | None]) -> bool:
        return type_ != "table" or schema.owns(name)

    def include_object(obj: Any, name: str | None, type_: str, _reflected: bool, _compare_to: Any) -> bool:
        return type_ != "table" or schema.owns(name)

    return {"include_name": include_name, "include_object": include_object, "compare_type": True}


def _render_item(type_: str, obj: Any, _context: AutogenContext) -> str | Literal[False]:
    # A revision must not import the models' column types (they change later): render what they store as.
    if type_ == "type" and isinstance(obj, TypeDecorator):
        return f"sa.{obj.impl!r}"
    return False


def _one(revisions: Iterable[str]) -> str | None:
    found = list(revisions)
    assert len(found) <= 1, f"one line of revisions, found heads {found}"
    return found[0] if found else None


def _lock_key(schema: Schema) -> int:
    digest = hashlib.sha256(f"tessera.migrations.{schema.name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
