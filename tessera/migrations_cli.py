"""`tessera connector migrate` and `tessera broker migrate`: one command, made for each service's schema.

Exit codes: 0 done (or, with `--status`, at the head), 1 not at the head (`--status`) or the database is
newer than this release (refused), 2 usage or input error, 3 the database could not be reached.
"""

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from sqlalchemy import Connection
from sqlalchemy.engine.url import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from tessera import migrations
from tessera.errors import SchemaMismatch, TesseraError
from tessera.migrations import Schema, Status
from tessera.store import Database

T = TypeVar("T")
DatabaseUrlOf = Callable[[Path], str]  # the service's directory -> its database URL (raises TesseraError)


def migrate_command(schema: Schema, database_url_of: DatabaseUrlOf) -> Callable[..., None]:
    def migrate(
        directory: Annotated[Path, typer.Option("--dir", "-d", help=f"The {schema.name}'s directory (its config).")],
        sql: Annotated[bool, typer.Option("--sql", help="Print the upgrade's SQL; change nothing.")] = False,
        status: Annotated[
            bool, typer.Option("--status", help="Say where the database stands; change nothing.")
        ] = False,
        history: Annotated[bool, typer.Option("--history", help="List the revisions, oldest first.")] = False,
        revision: Annotated[
            str | None,
            typer.Option("--revision", help="Developers: write the next revision from the models."),
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
    ) -> None:
        """Upgrade the database to this release's schema (what start does too); or report where it stands."""
        if sum((sql, status, history, revision is not None)) > 1:
            raise _fail("choose one of --sql, --status, --history, --revision", 2)
        if history:
            return _print_history(schema, as_json)
        if revision is not None:
            return typer.echo(f"wrote {migrations.new_revision(schema, revision)}; review it before committing")
        try:
            url = database_url_of(directory)
        except TesseraError as exc:
            raise _fail(exc.detail, 2) from exc
        try:
            if sql:
                typer.echo(asyncio.run(_sql(url, schema)), nl=False)
            elif status:
                found = asyncio.run(_status(url, schema))
                _print_status(schema, found, as_json)
                raise typer.Exit(0 if found.state == "current" else 1)
            else:
                before = asyncio.run(_upgrade(url, schema))
                _print_upgrade(schema, before, as_json)
        except SchemaMismatch as exc:
            raise _fail(exc.detail, 1) from exc
        except (OperationalError, DBAPIError, OSError) as exc:
            raise _fail(f"the {schema.name} database could not be reached: {exc}", 3) from exc

    return migrate


async def _upgrade(url: str, schema: Schema) -> Status:
    db = await Database.open(url)
    try:
        async with db.engine.begin() as connection:
            return await connection.run_sync(migrations.prepare, schema)
    finally:
        await db.close()


async def _on_database(url: str, schema: Schema, action: Callable[[Connection], T]) -> T:
    db = await Database.open(url)
    try:
        async with db.engine.begin() as connection:
            return await connection.run_sync(action)
    finally:
        await db.close()


async def _status(url: str, schema: Schema) -> Status:
    if _missing_sqlite_file(url):  # asking must not create the file
        return Status(None, migrations.history(schema)[-1][0], [], "empty")
    return await _on_database(url, schema, lambda c: migrations.status(c, schema))


async def _sql(url: str, schema: Schema) -> str:
    found = await _status(url, schema)
    if found.state == "ahead":
        raise SchemaMismatch(f"the {schema.name} database is at {found.current}, newer than this release")
    start = None if found.state == "empty" else found.current or schema.baseline
    return migrations.upgrade_sql(url, schema, start)


def _missing_sqlite_file(url: str) -> bool:
    parsed = make_url(url)
    return parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").exists()


def _print_upgrade(schema: Schema, before: Status, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"from": before.current, "to": before.head, "was": before.state, "ran": before.pending}))
    elif before.state == "empty":
        typer.echo(f"{schema.name} database created at revision {before.head}")
    elif before.state == "current":
        typer.echo(f"{schema.name} database already at revision {before.head}")
    else:
        start = before.current or f"{schema.baseline} (adopted: made before migrations)"
        typer.echo(f"{schema.name} database upgraded from {start} to {before.head}: ran {', '.join(before.pending)}")


def _print_status(schema: Schema, found: Status, as_json: bool) -> None:
    if as_json:
        typer.echo(
            json.dumps({"current": found.current, "head": found.head, "state": found.state, "pending": found.pending})
        )
        return
    typer.echo(f"{schema.name} database: {found.state}, at {found.current or 'no revision'}, head {found.head}")
    if found.pending:
        typer.echo(f"  an upgrade runs {', '.join(found.pending)}")


def _print_history(schema: Schema, as_json: bool) -> None:
    revisions = migrations.history(schema)
    if as_json:
        typer.echo(json.dumps([{"revision": r, "message": m} for r, m in revisions]))
        return
    for revision, message in revisions:
        typer.echo(f"{revision}  {message}")


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)
