"""The consumer's copies under delete-after (`connector/copies.py`): a provider's deadline is checked where it
is received (one we cannot read makes the copy due now, with the reason), and the sweeper deletes each copy
on its own (one that cannot be deleted is marked, retried with backoff, and stops no other)."""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from connector.copies import ReceivedCopy, deadline
from tessera.store import Database
from tests.connector.test_usage import publish_patterns
from tests.dataspace import Dataspace, Site, negotiate, start_transfer
from tests.plain_peer import PlainPeer

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "at"),
    [
        ("2026-12-01T10:00:00Z", datetime(2026, 12, 1, 10, 0, tzinfo=UTC)),
        ("2026-12-01T12:00:00.5+02:00", datetime(2026, 12, 1, 10, 0, 0, 500000, tzinfo=UTC)),
    ],
)
def test_a_readable_delete_after_is_kept(header: str, at: datetime) -> None:
    assert deadline(header, NOW).at == at and deadline(header, NOW).problem is None


@pytest.mark.parametrize(
    ("header", "says"),
    [
        ("tomorrow", "not an RFC 3339 time"),
        ("2026-12-01", "not an RFC 3339 time"),  # no time, no zone
        ("2026-12-01T10:00:00", "not an RFC 3339 time"),  # no zone
        ("\ufeff2026-12-01T10:00:00Z", "not an RFC 3339 time"),
        ("2026-02-30T10:00:00Z", "day is out of range"),
        ("0001-01-01T00:00:00+14:00", "not an RFC 3339 time"),  # before year 1 in UTC
        ("1999-12-31T23:59:59Z", "out of range"),
        ("9999-12-31T23:59:59Z", "out of range"),  # as good as never
    ],
)
def test_an_unreadable_delete_after_makes_the_copy_due_now(header: str, says: str) -> None:
    received = deadline(header, NOW)
    assert received.at == NOW and received.problem is not None and says in received.problem


@pytest.fixture
async def plain(space: Dataspace) -> AsyncIterator[PlainPeer]:
    identity = await space.admit("plain")
    async with httpx.AsyncClient(timeout=10) as http, PlainPeer(identity, http).serving() as peer:
        yield peer


async def pull_from_plain(consumer: Site, plain: PlainPeer) -> dict[str, Any]:
    """A copy pulled from the plain provider, with whatever headers it is set to send."""
    started = await consumer.post(
        "/negotiations",
        {"provider_id": plain.id, "provider_url": plain.dsp_url, "offer_id": "offer-1", "target": "dataset-1"},
    )
    negotiation = await consumer.wait_for(f"/negotiations/{started['id']}", "FINALIZED", "TERMINATED")
    transfer = await start_transfer(consumer, negotiation["agreement_id"])
    assert (await consumer.api.get(f"/transfers/{transfer['id']}/data")).status_code == 200
    return await copy_of(consumer, transfer["id"])


async def pull_from(consumer: Site, provider: Site, people_csv: Path, seconds: int) -> dict[str, Any]:
    """A copy pulled from our provider under a delete-after of `seconds`."""
    patterns = [{"name": "delete_after", "params": {"delete_after_seconds": seconds}}]
    offer = await publish_patterns(provider, people_csv, patterns)
    transfer = await start_transfer(consumer, (await negotiate(consumer, provider, offer))["agreement_id"])
    assert (await consumer.api.get(f"/transfers/{transfer['id']}/data", params={"purpose": "x"})).status_code == 200
    return await copy_of(consumer, transfer["id"])


async def copy_of(consumer: Site, transfer_id: str) -> dict[str, Any]:
    (copy,) = [c for c in (await consumer.api.get("/copies")).json()["items"] if c["transfer_id"] == transfer_id]
    return copy


async def until_deleted(consumer: Site, copy_id: str, within: float = 10.0) -> dict[str, Any]:
    for _ in range(int(within / 0.05)):
        (copy,) = [c for c in (await consumer.api.get("/copies")).json()["items"] if c["id"] == copy_id]
        if copy["deleted_at"]:
            return copy
        await asyncio.sleep(0.05)
    raise AssertionError(f"copy {copy_id} was not deleted: {copy}")


async def test_a_hostile_delete_after_does_not_stop_a_good_copys_deletion(
    consumer: Site, provider: Site, plain: PlainPeer, people_csv: Path
) -> None:
    plain.data_headers = {"Tessera-Delete-After": "9999-99-99T99:99:99Z"}
    hostile = await pull_from_plain(consumer, plain)
    assert "not an RFC 3339 time" in hostile["due_now_because"]
    good = await pull_from(consumer, provider, people_csv, seconds=3)
    assert good["due_now_because"] is None
    assert (await until_deleted(consumer, hostile["id"]))["sweep_error"] is None  # due now, so deleted at once
    assert (await until_deleted(consumer, good["id"]))["sweep_error"] is None
    assert not await anyio.Path(good["path"]).exists() and not await anyio.Path(hostile["path"]).exists()
    timeline = (await consumer.api.get(f"/timeline/{hostile['transfer_id']}")).json()
    copies = [e["detail"] for e in timeline["events"] if e["kind"] == "copy"]
    assert "due now" in copies[0] and "deleted" in copies[1]


async def test_a_copy_that_cannot_be_deleted_is_marked_retried_and_stops_no_other(
    consumer: Site, provider: Site, plain: PlainPeer, people_csv: Path, tmp_path: Path
) -> None:
    stuck = await pull_from_plain(consumer, plain)  # no deadline: kept until we make it due below
    in_the_way = tmp_path / "in-the-way"
    (in_the_way / "inside").mkdir(parents=True)  # a directory where the copy's file should be: unlink fails
    db = await Database.open(consumer.config.database_url)
    try:
        async with db.transaction() as session:
            copy = await session.get(ReceivedCopy, stuck["id"])
            assert copy is not None
            copy.path, copy.delete_at = str(in_the_way), datetime.now(UTC) - timedelta(seconds=1)
        good = await pull_from(consumer, provider, people_csv, seconds=1)  # its arrival wakes the sweeper
        await until_deleted(consumer, good["id"])
        (marked,) = [c for c in (await consumer.api.get("/copies")).json()["items"] if c["id"] == stuck["id"]]
        assert marked["deleted_at"] is None and marked["sweep_failures"] >= 1
        assert marked["sweep_error"].startswith(("IsADirectoryError", "PermissionError", "OSError"))
        assert marked["retry_at"] is not None
        (in_the_way / "inside").rmdir()
        in_the_way.rmdir()  # the fault is gone: the next retry deletes it
        assert (await until_deleted(consumer, stuck["id"]))["sweep_failures"] >= 1
    finally:
        await db.close()
    actions = [e["action"] for e in (await consumer.api.get("/audit", params={"limit": 1000})).json()["items"]]
    assert "copy.delete_failed" in actions
