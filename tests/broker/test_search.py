"""Ranked search, facets, filters, sort and cursor paging, Chinese and English, through real HTTP."""

import asyncio
import json
import random
import time
from typing import Any

import pytest

from broker.text import MAX_INDEXED_CHARS, index_text
from tests.broker.conftest import RunningBroker
from tests.broker.test_registry import register, registration


def item(id: str, title: str, description: str = "", *keywords: str, **extra: str) -> dict[str, Any]:
    return {"id": id, "title": title, "description": description, "keywords": list(keywords), "format": "csv", **extra}


@pytest.fixture
async def market(broker: RunningBroker) -> RunningBroker:
    hospital, plant, port = (
        await broker.admit("hospital", region="CN-SH"),
        await broker.admit("plant", region="EU-DE"),
        await broker.admit("port", region="EU-NL"),
    )
    await register(
        broker,
        hospital,
        registration(
            item("records", "医疗数据共享平台", "医院电子病历的脱敏数据", "医疗", theme="health", license="CC-BY-4.0"),
            item("imaging", "医学影像数据集", "CT 与 MRI 影像", "影像", theme="health", classification="restricted"),
            item("drugs", "药品流通记录", "药品批发与零售数据", theme="health", format="json"),
        ),
    )
    await register(
        broker,
        plant,
        registration(
            item("temps", "Furnace temperatures", "Hourly furnace temperature readings", "energy", theme="industry"),
            item("power", "Power draw", "Electricity use of the furnace hall, per machine", "energy", theme="energy"),
            item(
                "quality", "Quality inspections", "Camera inspections of steel coils", theme="industry", format="json"
            ),
        ),
    )
    await register(
        broker,
        port,
        registration(
            item(
                "containers", "Container movements", "Container arrivals and departures", "logistics", theme="transport"
            ),
        ),
    )
    return broker


async def find(broker: RunningBroker, **params: Any) -> dict[str, Any]:
    response = await broker.http.get("/search", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ids(found: dict[str, Any]) -> list[str]:
    return [r["offering"]["id"] for r in found["results"]]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("数据", {"records", "imaging", "drugs"}),
        ("医疗", {"records"}),
        ("影像", {"imaging"}),
        ("药品", {"drugs"}),
        ("共享", {"records"}),
        ("医疗数据", {"records"}),
        ("病历", {"records"}),
        ("furnace", {"temps", "power"}),
        ("FURNACE temperature", {"temps"}),
        ("electricity", {"power"}),
        ("logistics", {"containers"}),
        ("steel", {"quality"}),
        ("MRI", {"imaging"}),
        ("区块链", set()),
    ],
)
async def test_chinese_and_english_queries_find_the_right_products(
    market: RunningBroker, query: str, expected: set[str]
) -> None:
    assert set(ids(await find(market, q=query))) == expected


async def test_a_title_hit_ranks_above_a_description_hit(market: RunningBroker) -> None:
    found = await find(market, q="furnace")

    assert ids(found) == ["temps", "power"]
    assert found["results"][0]["score"] > found["results"][1]["score"]


async def test_facets_count_the_matching_offerings(market: RunningBroker) -> None:
    found = await find(market)

    assert found["total"] == 7
    facets = found["facets"]
    assert facets["participant"] == [
        {"value": "urn:tessera:hospital", "count": 3},
        {"value": "urn:tessera:plant", "count": 3},
        {"value": "urn:tessera:port", "count": 1},
    ]
    assert facets["theme"] == [
        {"value": "health", "count": 3},
        {"value": "industry", "count": 2},
        {"value": "energy", "count": 1},
        {"value": "transport", "count": 1},
    ]
    assert facets["format"] == [{"value": "csv", "count": 5}, {"value": "json", "count": 2}]
    assert facets["license"] == [{"value": "CC-BY-4.0", "count": 1}]
    assert facets["classification"] == [{"value": "restricted", "count": 1}]
    assert facets["region"] == [
        {"value": "CN-SH", "count": 3},
        {"value": "EU-DE", "count": 3},
        {"value": "EU-NL", "count": 1},
    ]
    assert facets["liveness"] == [{"value": "ONLINE", "count": 7}]


async def test_facets_follow_the_query_and_filters(market: RunningBroker) -> None:
    found = await find(market, q="数据", format="csv")

    assert found["total"] == 2
    assert found["facets"]["format"] == [{"value": "csv", "count": 2}]
    assert found["facets"]["participant"] == [{"value": "urn:tessera:hospital", "count": 2}]


async def test_filters_combine_values_of_one_facet_with_or_and_facets_with_and(market: RunningBroker) -> None:
    assert set(ids(await find(market, theme=["industry", "energy"]))) == {"temps", "power", "quality"}
    assert set(ids(await find(market, theme=["industry", "energy"], format="json"))) == {"quality"}
    assert ids(await find(market, region="EU-NL")) == ["containers"]
    assert set(ids(await find(market, liveness="online", q="furnace"))) == {"temps", "power"}
    assert ids(await find(market, liveness="DEAD")) == []


async def test_cursor_pages_cover_every_result_once_in_a_stable_order(market: RunningBroker) -> None:
    for sort in ("participant", "title", "changed"):
        whole = ids(await find(market, sort=sort, limit=100))
        pages: list[str] = []
        cursor = None
        while True:
            found = await find(market, sort=sort, limit=3, facets="false", **({"cursor": cursor} if cursor else {}))
            pages += ids(found)
            cursor = found["next_cursor"]
            if cursor is None:
                break
        assert pages == whole
        assert len(set(pages)) == 7


async def test_relevance_cursor_pages_through_ranked_results(market: RunningBroker) -> None:
    whole = ids(await find(market, q="数据"))
    first = await find(market, q="数据", limit=2)
    second = await find(market, q="数据", limit=2, cursor=first["next_cursor"])

    assert ids(first) + ids(second) == whole
    assert second["next_cursor"] is None
    assert "facets" in first and first["total"] == 3


async def test_results_carry_liveness_and_product_code(market: RunningBroker) -> None:
    (hit,) = (await find(market, q="containers"))["results"]

    assert hit["liveness"]["state"] == "ONLINE"
    assert hit["liveness"]["last_seen_at"] and hit["liveness"]["last_changed_at"]
    assert hit["product_code"] == hit["offering"]["product_code"]
    assert hit["endpoint"] == "https://acme.example/dsp"


@pytest.mark.parametrize(
    "params",
    [{"cursor": "not-a-cursor"}, {"cursor": "WzFd"}, {"sort": "price"}, {"liveness": ["x"] * 21}],
)
async def test_bad_search_parameters_are_a_400(market: RunningBroker, params: dict[str, Any]) -> None:
    response = await market.http.get("/search", params=params)

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"


def chinese(seed: int, length: int) -> str:
    """Text of common Chinese characters, different for every seed (so jieba's cache cannot help)."""
    rng = random.Random(seed)
    common = (
        "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本"
        "去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总"
        "次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处理世车"
    )
    return "".join(rng.choice(common) for _ in range(length))


async def test_a_large_chinese_registration_does_not_block_the_broker(broker: RunningBroker) -> None:
    """Segmentation runs in a worker thread: /health answers while ~900 KB of Chinese text is indexed."""
    big = await broker.admit("big")
    items = [item(f"o{i}", chinese(i, 100), chinese(1000 + i, 2900)) for i in range(100)]
    body = registration(*items)
    assert len(json.dumps(body, ensure_ascii=False).encode()) > 850_000
    # Indexing ~330,000 lexemes takes seconds (more on PostgreSQL, slower still on a loaded machine).
    pushing = asyncio.create_task(register(broker, big, body, within=60))
    started = answered = time.perf_counter()
    longest_gap = 0.0
    while not pushing.done():
        health = await broker.http.get("/health")
        assert health.status_code == 200
        # Server and test share one event loop: a gap between answers is time the loop was blocked.
        longest_gap, answered = max(longest_gap, time.perf_counter() - answered), time.perf_counter()
        await asyncio.sleep(0.02)
    assert (await pushing).status_code == 201
    took = time.perf_counter() - started
    # Measured on SQLite: segmentation on the loop blocked it for 1.8 s of a 2.8 s registration (64 %); in a
    # worker thread the longest gap is about 0.3 s (11 %). As a share of the whole, the check holds however
    # loaded the machine is (under CI's load a PostgreSQL registration took seconds, with gaps up to 1.3 s).
    assert longest_gap < 0.35 * took, f"the event loop was blocked {longest_gap:.2f} s of {took:.2f} s"
    found = await find(broker, q=items[7]["title"][:2])
    assert "o7" in ids(found)


def test_at_most_the_first_max_indexed_chars_of_a_field_are_indexed() -> None:
    field = "数据 " * (MAX_INDEXED_CHARS // 3 + 1) + "尾巴 tail"
    indexed = index_text(field)
    assert "数据" in indexed
    assert "tail" not in indexed and "尾巴" not in indexed
