"""The two search backends answer alike: one corpus, registered through HTTP into a broker on SQLite (FTS5) and
a broker on PostgreSQL (tsvector + GIN), then the same queries against both.

Both rank by the same bm25 over the same lexemes, so the comparison is strict: the same total, the same ids in
the same order (ties are broken by row id on both), the same scores and the same facet counts, page after page.
"""

import base64
import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from broker.app import create_app
from broker.search_postgres import SEARCH_TABLE
from tessera.store import Database
from tests.broker.conftest import RunningBroker, broker_config
from tests.broker.test_registry import register
from tests.postgres import Postgres
from tests.utils import run_server, unused_port

Params = dict[str, Any]


def offering(id: str, title: str, description: str, *keywords: str, **facets: str) -> dict[str, Any]:
    return {"id": id, "title": title, "description": description, "keywords": list(keywords), **facets}


# publisher -> (region, offerings): Chinese and English text, keywords, formats, themes, licences for facets.
CORPUS: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "hospital": (
        "CN-SH",
        [
            offering(
                "records", "医疗数据共享平台", "医院电子病历的脱敏数据", "医疗", "病历", format="csv", theme="health"
            ),
            offering("imaging", "医学影像数据集", "CT 与 MRI 影像, 含标注", "影像", format="parquet", theme="health"),
            offering("drugs", "药品流通记录", "药品批发与零售数据, 每日更新", "药品", format="json", theme="health"),
            offering("beds", "Hospital bed occupancy", "Daily bed occupancy of 医院 wards", "health", format="csv"),
            offering(
                "trials", "临床试验数据", "临床试验的受试者数据与结果", "医疗", "试验", format="csv", theme="health"
            ),
        ],
    ),
    "city": (
        "CN-BJ",
        [
            offering(
                "traffic", "城市交通流量实时监测数据", "北京市主要道路的交通流量, 每五分钟", "交通", format="json"
            ),
            offering(
                "parking", "停车场空位", "全市停车场的实时空位数据", "交通", "停车", format="json", theme="mobility"
            ),
            offering("air", "空气质量监测", "PM2.5 与 PM10 的小时数据", "环境", format="csv", theme="environment"),
            offering(
                "metro", "Metro ridership 地铁客流", "Hourly ridership per station, 地铁站客流", "交通", format="csv"
            ),
            offering("weather", "Weather observations", "Temperature, rain and wind from city stations", format="csv"),
        ],
    ),
    "plant": (
        "EU-DE",
        [
            offering("temps", "Furnace temperatures", "Hourly furnace temperature readings", "energy", format="csv"),
            offering(
                "power", "Power draw", "Electricity use of the furnace hall, per machine", "energy", format="json"
            ),
            offering("quality", "Quality inspections", "Camera inspections of steel coils", "steel", format="parquet"),
            offering(
                "running", "Running hours", "How long each machine runs, runs per shift", "machines", format="csv"
            ),
            offering("sensors", "Sensor readings", "Vibration sensors on the rolling mill", "sensor", format="csv"),
            offering("café", "Café orders", "Orders at the plant's café, with naïve prices", format="json"),
        ],
    ),
    "port": (
        "EU-NL",
        [
            offering("containers", "Container movements", "Container arrivals and departures", "logistics"),
            offering("ships", "Ship calls", "Vessel calls with berth and timestamps", "logistics", format="csv"),
            offering("cranes", "Crane telemetry", "Crane power and temperature telemetry", "energy", format="parquet"),
            offering(
                "customs", "海关申报数据", "进出口报关单数据, 含 HS 编码", "海关", format="csv", license="CC-BY-4.0"
            ),
        ],
    ),
}

QUERIES: list[Params] = [
    # English words, prefixes and stems
    {"q": "furnace"},
    {"q": "temperature"},
    {"q": "temp"},
    {"q": "runs"},
    {"q": "sensors"},
    {"q": "energy power"},
    {"q": "CAFE"},
    {"q": "naive"},
    {"q": "logistics container"},
    # Chinese two-character words, long phrases, mixed text
    {"q": "数据"},
    {"q": "医疗"},
    {"q": "交通"},
    {"q": "客流"},
    {"q": "城市交通流量实时监测数据"},
    {"q": "医院电子病历的脱敏数据"},
    {"q": "MRI 影像"},
    {"q": "metro 地铁"},
    {"q": "PM2 数据"},
    # filters, keyword, facets, sorts
    {"q": "数据", "format": "csv"},
    {"q": "data", "region": ["CN-SH", "CN-BJ"]},
    {"region": ["EU-DE", "EU-NL"], "format": ["csv", "json"]},
    {"theme": "health", "sort": "title"},
    {"keyword": "energy"},
    {"q": "temperature", "keyword": "energy"},
    {"liveness": "online", "q": "readings"},
    {"sort": "title"},
    {"sort": "changed"},
    {"q": "数据", "sort": "participant"},
    {"q": "data", "facets": "false"},
    # pagination
    {"q": "数据", "limit": 3, "offset": 2},
    {"limit": 5, "offset": 20},
    # nothing, and hostile text
    {},
    {"q": "   "},
    {"q": "区块链"},
    {"q": "'&|!():*"},
    {"q": "' OR 1=1 --"},
    {"q": '"; DROP TABLE broker_offering; --'},
    {"q": "数据' & !医疗:*"},
    {"q": "data:* | !steel"},
    {"q": "\\' \\\\ %_"},
    {"q": "<-> <2> 'a':A"},
]


@asynccontextmanager
async def running_broker(directory: Path, database_url: str = "") -> AsyncIterator[RunningBroker]:
    port = unused_port()
    config = broker_config(directory, port)
    if database_url:
        config = dataclasses.replace(config, database_url=database_url)
    db = await Database.open(config.database_url)
    try:
        async with (
            run_server(create_app(config, crawl=False), port=port) as url,
            httpx.AsyncClient(base_url=url, timeout=30) as http,
        ):
            yield RunningBroker(config, url, http, db)
    finally:
        await db.close()


@asynccontextmanager
async def both_backends(tmp_path: Path, postgres: Postgres) -> AsyncIterator[list[RunningBroker]]:
    async with (
        running_broker(tmp_path / "sqlite") as on_sqlite,
        running_broker(tmp_path / "postgres", postgres.create_database()) as on_postgres,
    ):
        brokers = [on_sqlite, on_postgres]
        for publisher, (region, offerings) in CORPUS.items():
            for broker in brokers:
                member = broker.members[publisher] = await broker.admit(publisher, region=region)
                assert (await register(broker, member, registration(offerings))).status_code == 201
        yield brokers


def registration(offerings: list[dict[str, Any]]) -> dict[str, Any]:
    return {"endpoint": "https://connector.example/dsp", "title": "A connector", "offerings": offerings}


async def pages(broker: RunningBroker, params: Params) -> list[dict[str, Any]]:
    """Every page of a search (at most 10), following the broker's own cursors."""
    found: list[dict[str, Any]] = []
    cursor = None
    while len(found) < 10:
        response = await broker.http.get("/search", params={**params, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, (params, response.text)
        page = response.json()
        found.append(page)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    return found


def comparable(page: dict[str, Any]) -> dict[str, Any]:
    """What must be equal across backends (cursors differ in how they spell a timestamp)."""
    results = [(r["participant_id"], r["offering"]["id"], r["score"]) for r in page["results"]]
    return {"total": page["total"], "results": results, "facets": page.get("facets"), "more": bool(page["next_cursor"])}


async def differences(brokers: list[RunningBroker], queries: list[Params]) -> list[str]:
    found = []
    for params in queries:
        sqlite_pages, postgres_pages = [await pages(broker, params) for broker in brokers]
        expected, got = [comparable(p) for p in sqlite_pages], [comparable(p) for p in postgres_pages]
        if expected != got:
            found.append(f"{params}:\n  sqlite   {expected}\n  postgres {got}")
    return found


async def test_both_backends_give_the_same_results_scores_and_facets(tmp_path: Path, postgres: Postgres) -> None:
    async with both_backends(tmp_path, postgres) as brokers:
        assert await differences(brokers, QUERIES) == []
        # paged through cursors: every sort order, limit 2
        paged = [
            {**q, "limit": 2, "sort": sort} for q in ({"q": "数据"}, {}) for sort in ("relevance", "title", "changed")
        ]
        assert await differences(brokers, paged) == []
        # The comparison is not of two empty answers: the corpus is found, ranked and counted.
        on_postgres = brokers[1]
        first = (await pages(on_postgres, {"q": "furnace"}))[0]
        assert [r["offering"]["id"] for r in first["results"]] == ["temps", "power"]
        assert first["results"][0]["score"] > first["results"][1]["score"] > 0
        chinese = (await pages(on_postgres, {"q": "数据", "limit": 100}))[0]
        assert chinese["total"] >= 8
        assert {"value": "urn:tessera:hospital", "count": 4} in chinese["facets"]["participant"]
        assert (await pages(on_postgres, {"q": "'&|!():*"}))[0]["total"] == 0


async def test_changed_and_removed_offerings_leave_both_indexes_alike(tmp_path: Path, postgres: Postgres) -> None:
    async with both_backends(tmp_path, postgres) as brokers:
        for broker in brokers:
            changed = [
                offering("temps", "Furnace temperatures", "Hourly furnace readings, now per zone", "energy"),
                offering("power", "Power draw of the furnace", "Electricity use, per machine", "energy"),
            ]
            assert (await register(broker, broker.members["plant"], registration(changed))).status_code == 200
            token = await broker.token(broker.members["port"])
            headers = {"Authorization": f"Bearer {token}"}
            removed = await broker.http.delete("/registrations/urn:tessera:port", headers=headers)
            assert removed.status_code == 204
        queries = [{"q": "furnace"}, {"q": "energy"}, {"q": "数据"}, {"q": "temperature"}, {}]
        assert await differences(brokers, queries) == []
        async with brokers[1].db.engine.connect() as connection:
            indexed = (await connection.execute(text(f"SELECT count(*) FROM {SEARCH_TABLE}"))).scalar_one()
        assert indexed == sum(len(offerings) for _, offerings in CORPUS.values()) - 4 - 4


async def test_hostile_input_on_postgresql_is_a_400_not_a_500(tmp_path: Path, postgres: Postgres) -> None:
    async with running_broker(tmp_path / "postgres", postgres.create_database()) as broker:
        acme = await broker.admit("acme")
        nul = registration([offering("nul", "NUL \x00 in a title", "")])
        assert (await register(broker, acme, nul)).status_code == 400
        ok = registration([offering("temps", "Furnace temperatures", ""), offering("power", "Power draw", "")])
        assert (await register(broker, acme, ok)).status_code == 201
        first = (await broker.http.get("/search", params={"sort": "changed", "limit": 1})).json()
        assert first["next_cursor"]
        bad_cursors = [
            _cursor(["not a time", 1]),
            _cursor(["2026-01-01T00:00:00+00:00", "1"]),
            _cursor(["2026-01-01T00:00:00+00:00", 2**70]),
            _cursor(["2026-01-01T00:00:00+00:00", 1.5]),
        ]
        for params in [
            *({"sort": "changed", "cursor": cursor} for cursor in bad_cursors),
            {"q": "furnace", "cursor": _cursor(["x", 1])},
            {"sort": "title", "cursor": _cursor(["a\x00", 1])},
            {"q": "a\x00b"},
            {"format": "csv\x00"},
            {"keyword": "\x00"},
        ]:
            response = await broker.http.get("/search", params=params)
            assert response.status_code == 400, (params, response.text)


def _cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")
