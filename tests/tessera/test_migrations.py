"""Migrations of both services' databases (tessera.migrations), on SQLite and on PostgreSQL.

The connector's previous schema is revision 0001 (main before migrations); 0002 adds the `lease` table. The
broker's 0002 adds the offering's `dataset_id` column.
Until the `Lease` model (tessera.leases, the replicas work) is merged, no model declares `lease`: the
checks below then expect the table without comparing it, and compare it column by column once it is.
"""

import asyncio
import importlib
import json
import pkgutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from sqlalchemy import Connection, inspect, text
from sqlmodel import SQLModel

import broker
import connector
import tessera
from broker.schema import SCHEMA as BROKER
from connector.schema import SCHEMA as CONNECTOR
from tessera import audit, migrations
from tessera.errors import SchemaMismatch
from tessera.migrations import Schema
from tessera.store import Database
from tests.dataspace import tessera as run_tessera
from tests.postgres import Postgres


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'service.db'}"
    else:
        postgres: Postgres = request.getfixturevalue("postgres")
        yield postgres.create_database()


async def test_a_connector_database_at_the_previous_revision_upgrades_keeping_its_data(database_url: str) -> None:
    old = await migrations_database(database_url)
    await old_run(old, lambda c: migrations.upgrade(c, CONNECTOR, "0001"))
    async with old.transaction() as session:
        for n in range(3):
            await audit.append(session, actor="urn:tessera:acme", action="asset.created", subject=f"a{n}", n=n)
    async with old.session() as session:
        before = [(e.seq, e.hash, e.details) for e in await audit.entries(session)]
    await old.close()

    db = await open_database(database_url, CONNECTOR)
    async with db.session() as session:
        after = [(e.seq, e.hash, e.details) for e in await audit.entries(session)]
    await db.close()

    assert len(after) == 3 and after == before
    assert await revision_of(database_url) == "0002"
    assert await tables_of(database_url) == CONNECTOR.tables | {"alembic_version"} | {"lease"}
    assert await differences(database_url, CONNECTOR) == []


async def test_a_broker_database_at_0001_upgrades_its_offerings_with_an_empty_dataset_id(database_url: str) -> None:
    old = await migrations_database(database_url)
    await old_run(old, lambda c: migrations.upgrade(c, BROKER, "0001"))
    await old.close()
    await execute(
        database_url,
        "INSERT INTO broker_offering (participant_id, id, title, description, keywords, format, theme, license, "
        "classification, region, language, pushed, in_catalog, state, listed, product_code, content_hash, "
        "created_at, changed_at) VALUES ('urn:tessera:acme', 'o1', 'Kept', '', '[]', '', '', '', '', '', '', "
        "true, false, 'ONLINE', true, 'P1', 'h', '2025-01-01 00:00:00+00:00', '2025-01-01 00:00:00+00:00')",
    )

    await (await open_database(database_url, BROKER)).close()

    assert await revision_of(database_url) == "0002"
    assert await rows_of(database_url, "SELECT id, title, dataset_id FROM broker_offering") == [("o1", "Kept", "")]
    assert await differences(database_url, BROKER) == []


@pytest.mark.parametrize("schema", [CONNECTOR, BROKER], ids=["connector", "broker"])
async def test_an_empty_database_is_created_at_the_head_as_declared(database_url: str, schema: Schema) -> None:
    db = await open_database(database_url, schema)
    await db.close()

    assert await revision_of(database_url) == migrations.history(schema)[-1][0]
    assert await tables_of(database_url) == schema.tables | {"alembic_version"}
    assert await differences(database_url, schema) == []


async def test_a_database_made_before_migrations_is_adopted_and_upgraded(database_url: str) -> None:
    old = await migrations_database(database_url)
    # What Database.open did before migrations: every table declared then (no lease yet), no version.
    before = [table for table in CONNECTOR.models() if table.name != "lease"]
    await old_run(old, lambda c: SQLModel.metadata.create_all(c, tables=before))
    async with old.transaction() as session:
        await audit.append(session, actor="urn:tessera:acme", action="asset.created", subject="kept")
    await old.close()

    db = await open_database(database_url, CONNECTOR)
    async with db.session() as session:
        subjects = [e.subject for e in await audit.entries(session)]
    await db.close()

    assert subjects == ["kept"]
    assert await revision_of(database_url) == "0002"
    assert "lease" in await tables_of(database_url)
    assert await differences(database_url, CONNECTOR) == []


async def test_a_database_migrated_by_a_newer_release_is_refused(database_url: str) -> None:
    await (await open_database(database_url, BROKER)).close()
    await execute(database_url, "UPDATE alembic_version SET version_num = '0099'")

    with pytest.raises(SchemaMismatch, match="0099"):
        await open_database(database_url, BROKER)
    assert await revision_of(database_url) == "0099"


async def test_replicas_starting_together_on_postgresql_migrate_once(postgres: Postgres) -> None:
    url = postgres.create_database()
    old = await migrations_database(url)
    await old_run(old, lambda c: migrations.upgrade(c, CONNECTOR, "0001"))
    await old.close()

    # Without the advisory lock each would see 0001 and create `lease`: all but one would fail.
    replicas = await asyncio.gather(*(open_database(url, CONNECTOR) for _ in range(4)))
    for db in replicas:
        await db.close()

    assert await revision_of(url) == "0002"
    assert await differences(url, CONNECTOR) == []


def test_every_table_we_declare_belongs_to_exactly_one_schema() -> None:
    for package in (tessera, connector, broker):
        for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            importlib.import_module(module.name)
    ours = {
        mapper.local_table.name
        for mapper in SQLModel._sa_registry.mappers
        if mapper.class_.__module__.split(".")[0] in ("tessera", "connector", "broker")
    }

    assert CONNECTOR.tables & BROKER.tables == set()
    assert ours == CONNECTOR.tables | BROKER.tables


async def test_the_migrate_command_upgrades_reports_and_refuses(tmp_path: Path) -> None:
    directory = tmp_path / "acme"
    code, _, err = await run_tessera(
        "connector", "init", "--dir", str(directory), "--participant-id", "urn:tessera:acme",
        "--url", "http://127.0.0.1:9", "--broker-url", "http://127.0.0.1:8",
    )  # fmt: skip
    assert code == 0, err
    url = f"sqlite+aiosqlite:///{directory / 'connector.db'}"
    old = await migrations_database(url)
    await old_run(old, lambda c: migrations.upgrade(c, CONNECTOR, "0001"))
    await old.close()

    behind = await run_tessera("connector", "migrate", "--dir", str(directory), "--status", "--json")
    sql = await run_tessera("connector", "migrate", "--dir", str(directory), "--sql")
    upgraded = await run_tessera("connector", "migrate", "--dir", str(directory), "--json")
    current = await run_tessera("connector", "migrate", "--dir", str(directory), "--status")
    await execute(url, "UPDATE alembic_version SET version_num = '0099'")
    refused = await run_tessera("connector", "migrate", "--dir", str(directory))
    missing = await run_tessera("connector", "migrate", "--dir", str(tmp_path / "nowhere"))

    assert behind[0] == 1
    assert json.loads(behind[1]) == {"current": "0001", "head": "0002", "state": "behind", "pending": ["0002"]}
    assert sql[0] == 0 and "CREATE TABLE lease" in sql[1] and "CREATE TABLE agreement" not in sql[1]
    assert upgraded[0] == 0 and json.loads(upgraded[1])["ran"] == ["0002"]
    assert current[0] == 0 and "current" in current[1]
    assert refused[0] == 1 and "0099" in refused[2] and "newer release" in refused[2]
    assert missing[0] == 2


async def test_broker_migrate_history_lists_the_revisions() -> None:
    code, out, _ = await run_tessera("broker", "migrate", "--dir", ".", "--history", "--json")

    assert code == 0
    assert [r["revision"] for r in json.loads(out)] == ["0001", "0002"]


# --- helpers: the database as it stands, read without the services' code


async def migrations_database(url: str) -> Database:
    return await Database.open(url)


async def open_database(url: str, schema: Schema) -> Database:
    return await Database.open(url, schema=schema)


async def old_run(db: Database, action: Callable[[Connection], object]) -> None:
    async with db.engine.begin() as connection:
        await connection.run_sync(action)


async def revision_of(url: str) -> str:
    db = await migrations_database(url)
    try:
        async with db.engine.connect() as connection:
            return str((await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar_one())
    finally:
        await db.close()


async def tables_of(url: str) -> set[str]:
    db = await migrations_database(url)
    try:
        async with db.engine.connect() as connection:
            return set(await connection.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await db.close()


async def differences(url: str, schema: Schema) -> list[object]:
    db = await migrations_database(url)
    try:
        async with db.engine.connect() as connection:
            return await connection.run_sync(migrations.differences, schema)
    finally:
        await db.close()


async def rows_of(url: str, statement: str) -> list[tuple[object, ...]]:
    db = await migrations_database(url)
    try:
        async with db.engine.connect() as connection:
            return [tuple(row) for row in await connection.execute(text(statement))]
    finally:
        await db.close()


async def execute(url: str, statement: str) -> None:
    db = await migrations_database(url)
    try:
        async with db.engine.begin() as connection:
            await connection.execute(text(statement))
    finally:
        await db.close()
