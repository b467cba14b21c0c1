"""Leases on SQLite and PostgreSQL: a claim wins only when the lease is absent, expired or the claimant's."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from connector.schema import SCHEMA
from tessera.leases import Leases, holder_id
from tessera.store import Database, sqlite_url
from tests.postgres import Postgres


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        url = sqlite_url(tmp_path / "leases.db")
    else:
        postgres: Postgres = request.getfixturevalue("postgres")
        url = postgres.create_database()
    database = await Database.open(url, schema=SCHEMA)
    yield database
    await database.close()


async def test_a_lease_is_one_holders_until_it_is_released(db: Database) -> None:
    first, second = Leases(db, "a:1:x", seconds=30), Leases(db, "b:2:y", seconds=30)
    assert await first.claim("outbox:p1")
    assert not await second.claim("outbox:p1")
    assert await first.renew("outbox:p1")  # its own: renewed
    assert await second.claim("outbox:p2")  # another resource is free
    await second.release("outbox:p1")  # not its lease: nothing happens
    assert not await second.claim("outbox:p1")
    await first.release("outbox:p1")
    assert await second.claim("outbox:p1")
    assert set(await second.holders()) == {"outbox:p1", "outbox:p2"}


async def test_an_expired_lease_goes_to_the_next_claimant(db: Database) -> None:
    crashed, survivor = Leases(db, "a:1:x", seconds=0.3), Leases(db, "b:2:y", seconds=30)
    assert await crashed.claim("push:t1")
    assert not await survivor.claim("push:t1")
    await asyncio.sleep(0.4)
    assert await survivor.claim("push:t1")
    assert not await crashed.renew("push:t1")  # it lost it: renewing does not take it back


async def test_parallel_claims_have_one_winner(db: Database) -> None:
    replicas = [Leases(db, f"host:{i}:r", seconds=30) for i in range(8)]
    won = await asyncio.gather(*(replica.claim("sweep:deadlines") for replica in replicas))
    assert sum(won) == 1


@pytest.fixture
async def shared_db(postgres: Postgres) -> AsyncIterator[Database]:
    database = await Database.open(postgres.create_database(), schema=SCHEMA)
    yield database
    await database.close()


async def test_holding_renews_while_it_runs_and_releases_after(shared_db: Database) -> None:
    db = shared_db
    ours, theirs = Leases(db, holder_id(), seconds=0.3), Leases(db, holder_id(), seconds=30)
    async with ours.holding("push:t1") as held:
        assert held
        async with ours.holding("push:t1") as again:
            assert not again  # this process already works on it
        await asyncio.sleep(0.6)  # twice the lease: renewed meanwhile
        assert not await theirs.claim("push:t1")
    assert await theirs.claim("push:t1")  # released at once
    async with ours.holding("push:t1") as held:
        assert not held


async def test_release_all_frees_every_lease_of_a_holder(db: Database) -> None:
    stopping, other = Leases(db, "a:1:x", seconds=30), Leases(db, "b:2:y", seconds=30)
    for resource in ("outbox:p1", "push:t1", "sweep:copies"):
        assert await stopping.claim(resource)
    assert await other.claim("outbox:p2")
    await stopping.release_all()
    assert set(await other.holders()) == {"outbox:p2"}


async def test_holding_on_sqlite_is_claimed_in_memory(tmp_path: Path) -> None:
    """One process writes a SQLite database: no other replica to keep out, no write per claim."""
    db = await Database.open(sqlite_url(tmp_path / "leases.db"), schema=SCHEMA)
    try:
        ours = Leases(db, holder_id(), seconds=30)
        async with ours.holding("outbox:p1") as held:
            assert held
            async with ours.holding("outbox:p1") as again:
                assert not again
            assert await ours.holders() == {}
        async with ours.holding("outbox:p1") as held:
            assert held
    finally:
        await db.close()
