"""Push and crawl with real connectors on loopback ports: catalog changes, ETags and liveness.

The broker here crawls every 0.2 s and calls a silent connector DEAD after 1 s, so each test sees the
whole life of an entry in a few seconds. `tests/broker/test_registry.py` covers the push side alone.
"""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from broker.app import create_app
from broker.config import BrokerConfig
from broker.crawler import dataset_ids, offerings_in
from broker.entries import Registration
from tessera.identity import generate_key, save_private_key
from tessera.store import Database
from tests.dataspace import RESEARCH_POLICY, Dataspace, Site, publish, write_people_csv
from tests.postgres import database_url_for
from tests.utils import run_server, unused_port


@asynccontextmanager
async def fast_space(root: Path, **settings: Any) -> AsyncIterator[Dataspace]:
    """A data space whose broker crawls every 0.2 s, calls an entry DEAD after 1 s and hides it 0.5 s later."""
    async with AsyncExitStack() as stack:
        space = Dataspace(root, stack)
        port = unused_port()
        config = BrokerConfig(
            directory=root / "broker",
            url=f"http://127.0.0.1:{port}",
            port=port,
            database_url=database_url_for(root / "broker", broker=True),
            crawl_interval=0.2,
            crawl_timeout=2,
            dead_after=1.0,
            hide_dead_after=0.5,
            **settings,
        )
        config.directory.mkdir(parents=True)
        save_private_key(generate_key(), config.key_path)
        space.broker_config = config
        space.broker_url = await stack.enter_async_context(run_server(create_app(config), port))
        yield space


@pytest.fixture
async def fast(tmp_path: Path) -> AsyncIterator[Dataspace]:
    async with fast_space(tmp_path) as space:
        yield space


async def eventually(check: Callable[[], Awaitable[Any]], *, within: float = 8.0) -> Any:
    """Poll `check` until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        if result := await check():
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.05)


async def registered_provider(space: Dataspace, tmp_path: Path) -> tuple[Site, dict[str, Any]]:
    provider = await space.start(await space.admit("provider"))
    offer = await publish(provider, write_people_csv(tmp_path / "people.csv"))
    response = await provider.api.put("/registration", json={"title": "Provider", "description": "People data"})
    assert response.status_code == 200, response.text
    return provider, offer


async def entry(space: Dataspace, participant_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=space.broker_url) as http:
        body: dict[str, Any] = (await http.get(f"/registrations/{participant_id}")).json()
        return body


async def search(space: Dataspace, **params: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=space.broker_url) as http:
        response = await http.get("/search", params=params)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


async def test_crawl_confirms_pushed_offerings_right_after_registration(fast: Dataspace, tmp_path: Path) -> None:
    provider, offer = await registered_provider(fast, tmp_path)

    async def confirmed() -> Any:
        offerings = (await entry(fast, provider.id))["offerings"]
        return offerings if offerings and offerings[0]["in_catalog"] else None

    (found,) = await eventually(confirmed)
    assert (found["id"], found["pushed"], found["title"]) == (offer["id"], True, "People")


async def publish_second(provider: Site, tmp_path: Path) -> dict[str, Any]:
    asset = await provider.post(
        "/assets", {"title": "Furnace temperatures", "format": "csv", "path": str(tmp_path / "people.csv")}
    )
    policy = await provider.post("/policies", {"source": RESEARCH_POLICY})
    return await provider.post("/offers", {"asset_id": asset["id"], "usage_policy_id": policy["id"]})


async def test_crawl_picks_up_an_offer_published_after_registration(fast: Dataspace, tmp_path: Path) -> None:
    provider, first = await registered_provider(fast, tmp_path)
    second = await publish_second(provider, tmp_path)

    async def crawled() -> Any:
        hits = (await search(fast, q="furnace"))["results"]
        return hits or None

    (hit,) = await eventually(crawled)
    assert hit["offering"]["id"] == second["id"]
    assert hit["offering"]["dataset_id"] == second["asset_id"]  # the catalog's dataset @id: a negotiation's target
    assert (hit["offering"]["pushed"], hit["offering"]["in_catalog"]) == (False, True)
    assert hit["product_code"].startswith("TDP-")
    ids = {o["id"] for o in (await entry(fast, provider.id))["offerings"]}
    assert ids == {first["id"], second["id"]}


async def test_unchanged_catalog_is_revalidated_with_a_304(fast: Dataspace, tmp_path: Path) -> None:
    provider, _ = await registered_provider(fast, tmp_path)

    async def revalidated() -> Any:
        async with httpx.AsyncClient(base_url=fast.broker_url) as http:
            rows = (await http.get("/status")).json()["connectors"]
        return rows if rows[0]["status"] == "304" else None

    (row,) = await eventually(revalidated)
    assert (row["participant_id"], row["state"], row["failures"], row["offerings"]) == (provider.id, "ONLINE", 0, 1)


async def test_connector_that_goes_away_turns_offline_then_dead_and_leaves_search(
    fast: Dataspace, tmp_path: Path
) -> None:
    provider, _ = await registered_provider(fast, tmp_path)
    await eventually(lambda: _state_is(fast, provider.id, "ONLINE", crawled=True))
    assert (await search(fast, q="people"))["total"] == 1

    await provider.server.stop()

    offline = await eventually(lambda: _state_is(fast, provider.id, "OFFLINE"))
    assert (await search(fast, q="people", liveness="offline"))["total"] == 1
    dead = await eventually(lambda: _state_is(fast, provider.id, "DEAD"))
    assert dead["last_seen_at"] == offline["last_seen_at"]
    await eventually(lambda: _total_is(fast, 0))

    await provider.server.start()

    await eventually(lambda: _state_is(fast, provider.id, "ONLINE"))
    back = await eventually(lambda: _total_is(fast, 1))
    assert back["facets"]["liveness"] == [{"value": "ONLINE", "count": 1}]


async def _state_is(space: Dataspace, participant_id: str, state: str, *, crawled: bool = False) -> Any:
    liveness = (await entry(space, participant_id))["liveness"]
    if crawled:
        async with httpx.AsyncClient(base_url=space.broker_url) as http:
            if (await http.get("/status")).json()["connectors"][0]["crawled_at"] is None:
                return None
    return liveness if liveness["state"] == state else None


async def _total_is(space: Dataspace, total: int) -> Any:
    found = await search(space, q="people")
    return found if found["total"] == total else None


async def test_catalog_over_the_offering_quota_is_refused_but_the_connector_stays_online(tmp_path: Path) -> None:
    async with fast_space(tmp_path, max_offerings=1) as space:
        provider, first = await registered_provider(space, tmp_path)
        await publish_second(provider, tmp_path)

        async def refused() -> Any:
            async with httpx.AsyncClient(base_url=space.broker_url) as http:
                (row,) = (await http.get("/status")).json()["connectors"]
            return row if "catalog refused" in row["error"] else None

        row = await eventually(refused)
        assert row["state"] == "ONLINE"
        assert [o["id"] for o in (await entry(space, provider.id))["offerings"]] == [first["id"]]


def test_offerings_in_reads_every_offer_of_every_dataset() -> None:
    catalog = {
        "@type": "Catalog",
        "dataset": [
            {"@id": "d1", "title": "One", "keyword": ["a"], "hasPolicy": [{"@id": "o1"}, {"@id": "o2"}]},
            {"@id": "d2", "description": {"@value": "Two"}, "hasPolicy": {"@id": "o3"}},
            "junk",
            {"@id": "d3", "hasPolicy": [{"no": "id"}]},
        ],
    }

    found = offerings_in(catalog)

    assert sorted(found) == ["o1", "o2", "o3"]
    assert found["o3"] == {"title": "d2", "description": "Two", "keywords": []}
    assert offerings_in({"@type": "Catalog"}) == {}


def test_dataset_ids_name_the_dataset_holding_each_offer() -> None:
    catalog = {
        "@type": "Catalog",
        "dataset": [
            {"@id": "d1", "hasPolicy": [{"@id": "o1"}, {"@id": "o2"}]},
            {"@id": {"not": "a string"}, "hasPolicy": {"@id": "o3"}},
            {"@id": "d\x00", "hasPolicy": {"@id": "o4"}},
        ],
    }

    assert dataset_ids(catalog) == {"o1": "d1", "o2": "d1"}


@pytest.mark.parametrize("endpoint", ["http://\ufeffprovider.example/dsp", "http://127.0.0.1:80a/dsp", "ftp://x/dsp"])
async def test_an_entry_with_a_bad_address_fails_alone_and_the_crawl_goes_on(
    fast: Dataspace, tmp_path: Path, endpoint: str
) -> None:
    """Addresses are checked at registration now (`tessera/urls.py`); one stored before fails on its own."""
    poisoned, _ = await registered_provider(fast, tmp_path)
    healthy = await fast.start(await fast.admit("healthy"))
    await publish(healthy, write_people_csv(tmp_path / "healthy.csv"))
    assert (await healthy.api.put("/registration", json={"title": "Healthy"})).status_code == 200
    db = await Database.open(fast.broker_config.database_url)
    try:
        async with db.transaction() as session:
            record = await session.get(Registration, poisoned.id)
            assert record is not None
            record.endpoint = endpoint
    finally:
        await db.close()
    second = await publish_second(healthy, tmp_path)

    async def marked() -> Any:
        async with httpx.AsyncClient(base_url=fast.broker_url) as http:
            rows = {row["participant_id"]: row for row in (await http.get("/status")).json()["connectors"]}
        bad = rows[poisoned.id]
        return bad if bad["failures"] >= 2 and "bad address" in bad["error"] else None

    bad = await eventually(marked)
    assert bad["status"] == "error" and bad["state"] in ("OFFLINE", "DEAD")
    ids = await eventually(lambda: _offering_ids(fast, healthy.id, second["id"]))
    assert second["id"] in ids  # the healthy entry is still crawled


async def _offering_ids(space: Dataspace, participant_id: str, wanted: str) -> Any:
    ids = {o["id"] for o in (await entry(space, participant_id))["offerings"]}
    return ids if wanted in ids else None
