"""Broker registration throughput and search latency at cluster scale.

    python bench/broker.py                       # 100,000 offerings from 1,000 connectors
    python bench/broker.py --quick               # 10,000 offerings from 100 connectors
    python bench/broker.py --offerings 20000 --connectors 200 --queries 500 --json out.json

One process: a real broker (uvicorn on a loopback port, SQLite + FTS5 in a temporary directory, crawler
off because there are no connectors to crawl) and an httpx client. Participants are admitted straight into
the database and carry access tokens minted with the authority key, so the clock measures registration,
not the token endpoint. Then a mixed query load runs sequentially: one- and two-word English queries,
Chinese two-character queries, filtered and faceted browsing, second pages by cursor. Prints a table and
JSON; the numbers are measured, never targets.
"""

import argparse
import asyncio
import json
import random
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Run as `python bench/broker.py`, this file's directory comes first on sys.path and its name would hide
# the `broker` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import httpx  # noqa: E402
import uvicorn  # noqa: E402
from sqlalchemy import insert, text  # noqa: E402

from broker.app import create_app  # noqa: E402
from broker.authority import Participant, ParticipantBase, access_token  # noqa: E402
from broker.config import BrokerConfig  # noqa: E402
from tessera.identity import SigningKey, generate_key, public_jwk, save_private_key  # noqa: E402
from tessera.store import Database  # noqa: E402

ENGLISH = [
    "sensor",
    "temperature",
    "furnace",
    "energy",
    "power",
    "steel",
    "logistics",
    "container",
    "port",
    "orders",
    "quality",
    "inspection",
    "camera",
    "weather",
    "traffic",
    "mobility",
    "battery",
    "charging",
    "grid",
    "solar",
    "wind",
    "emissions",
    "water",
    "hospital",
    "patient",
    "imaging",
    "pharmacy",
    "supply",
    "chain",
    "inventory",
    "shipment",
    "invoice",
    "maintenance",
    "vibration",
    "turbine",
    "pressure",
    "humidity",
]
CHINESE = [
    "医疗",
    "数据",
    "影像",
    "药品",
    "交通",
    "能源",
    "电力",
    "物流",
    "港口",
    "气象",
    "制造",
    "质量",
    "检测",
    "电池",
    "排放",
    "水务",
    "库存",
    "供应链",
    "金融",
    "农业",
]
SYLLABLES = ["ka", "lo", "mi", "ter", "van", "sol", "dri", "pex", "nor", "quin", "bel", "tur", "ros", "gam", "fid"]
HANZI = "金木水火土山川风云雷电光声温压速流量质检测控制造运输港仓储医药农林牧渔"


def vocabulary(kind: str, rng: random.Random) -> tuple[list[str], list[str]]:
    """English and Chinese words for titles, descriptions and queries.

    `broad`: 37 English and 20 Chinese domain words, so a one-word query matches about 13 % of the catalog
    (a stress case for facet counting). `catalog` (default) adds 600 made-up English words and 300
    two-character Chinese words, closer to the spread of terms in a real catalog.
    """
    if kind == "broad":
        return ENGLISH, CHINESE
    made_up = {"".join(rng.choices(SYLLABLES, k=3)) for _ in range(900)}
    english = ENGLISH + sorted(made_up)[:600]
    chinese = CHINESE + sorted({"".join(rng.sample(HANZI, 2)) for _ in range(600)})[:300]
    return english, chinese


THEMES = ["health", "energy", "industry", "transport", "environment", "finance", "agriculture", "logistics"]
FORMATS = ["csv", "json", "jsonl", "parquet"]
LICENSES = ["CC-BY-4.0", "CC0-1.0", "proprietary", ""]
LEVELS = ["public", "internal", "confidential", "restricted"]
REGIONS = ["EU-DE", "EU-FR", "EU-NL", "CN-SH", "CN-BJ", "US-CA"]


def offerings(rng: random.Random, connector: int, n: int, words: tuple[list[str], list[str]]) -> list[dict[str, Any]]:
    english, chinese_words = words
    found = []
    for i in range(n):
        chinese = rng.random() < 0.3
        pool = chinese_words if chinese else english
        named = rng.sample(pool, 3)
        title = ("".join(named[:2]) + "数据集") if chinese else " ".join(named[:2]).title() + " data"
        more = rng.sample(pool, 6)
        description = ("、".join(more) + "的记录") if chinese else "Records of " + ", ".join(more) + "."
        found.append(
            {
                "id": f"offer-{connector}-{i}",
                "title": title,
                "description": description,
                "keywords": rng.sample(pool, 2),
                "format": rng.choice(FORMATS),
                "theme": rng.choice(THEMES),
                "license": rng.choice(LICENSES),
                "classification": rng.choice(LEVELS),
            }
        )
    return found


def queries(rng: random.Random, n: int, words: tuple[list[str], list[str]]) -> list[tuple[str, dict[str, Any]]]:
    english, chinese = words
    two_characters = [w for w in chinese if len(w) == 2]
    kinds: list[tuple[str, int, Callable[[], dict[str, Any]]]] = [
        ("english-1", 30, lambda: {"q": rng.choice(english)}),
        ("english-2", 20, lambda: {"q": " ".join(rng.sample(english, 2))}),
        ("chinese-2", 20, lambda: {"q": rng.choice(two_characters)}),
        (
            "filtered",
            15,
            lambda: {"q": rng.choice(english), "theme": rng.choice(THEMES), "format": rng.choice(FORMATS)},
        ),
        ("browse", 10, lambda: {"region": rng.choice(REGIONS), "classification": rng.choice(LEVELS)}),
        ("page-2", 5, lambda: {"q": rng.choice(english), "page": 2}),
    ]
    weights = [k[1] for k in kinds]
    picked = rng.choices(kinds, weights=weights, k=n)
    return [(name, make()) for name, _, make in picked]


async def admit(db: Database, count: int, jwk: dict[str, Any]) -> list[ParticipantBase]:
    participants = [
        ParticipantBase(
            id=f"urn:tessera:bench-{i:05d}", org=f"Org {i}", region=REGIONS[i % len(REGIONS)], security_profile="base"
        )
        for i in range(count)
    ]
    async with db.transaction() as session:
        rows = [{**p.model_dump(), "jwk": jwk} for p in participants]
        await (await session.connection()).execute(insert(Participant), rows)
    return participants


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    words = vocabulary(args.vocabulary, rng)
    per_connector = max(1, args.offerings // args.connectors)
    with tempfile.TemporaryDirectory(prefix="tessera-bench-") as scratch:
        tmp = str(args.dir or scratch)
        port = _free_port()
        config = BrokerConfig(
            directory=Path(tmp),
            url=f"http://127.0.0.1:{port}",
            port=port,
            registrations_per_minute=0,
            database_url=args.database or "",
        )
        save_private_key(generate_key(), config.key_path)
        signer = SigningKey.load(config.key_path)
        server = uvicorn.Server(uvicorn.Config(create_app(config, crawl=False), port=port, log_level="warning"))
        serving = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no event for this
            await asyncio.sleep(0.01)
        db = await Database.open(config.database_url)
        participants = await admit(db, args.connectors, public_jwk(generate_key()))
        await db.close()
        bodies = [
            (
                participant,
                {
                    "endpoint": f"https://c{i}.example/dsp",
                    "title": f"Connector {i}",
                    "offerings": offerings(rng, i, per_connector, words),
                },
            )
            for i, participant in enumerate(participants)
        ]
        limits = httpx.Limits(max_connections=args.concurrency)
        async with httpx.AsyncClient(base_url=config.url, timeout=120, limits=limits) as http:
            registration = await _register(http, signer, config.url, bodies, args.concurrency)
            search = await _search(http, queries(rng, args.queries, words))
        db_bytes = await _database_bytes(config.database_url, Path(tmp))
        server.should_exit = True
        await serving
    total = per_connector * args.connectors
    return {
        "database": "postgresql" if args.database else "sqlite",
        "vocabulary": args.vocabulary,
        "connectors": args.connectors,
        "offerings": total,
        "registration_seconds": round(registration, 2),
        "offerings_per_second": round(total / registration),
        "search": search,
        "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "database_mib": round(db_bytes / 2**20, 1),
    }


async def _database_bytes(url: str, directory: Path) -> int:
    if url.startswith("postgresql"):
        db = await Database.open(url)
        async with db.engine.connect() as connection:
            size = (await connection.execute(text("SELECT pg_database_size(current_database())"))).scalar_one()
        await db.close()
        return int(size)
    return sum(f.stat().st_size for f in directory.glob("broker.db*"))  # noqa: ASYNC240


async def _register(
    http: httpx.AsyncClient,
    signer: SigningKey,
    issuer: str,
    bodies: list[tuple[ParticipantBase, dict[str, Any]]],
    concurrency: int,
) -> float:
    queue: asyncio.Queue[tuple[ParticipantBase, dict[str, Any]]] = asyncio.Queue()
    for item in bodies:
        queue.put_nowait(item)

    async def worker() -> None:
        while not queue.empty():
            participant, body = queue.get_nowait()
            token = access_token(signer, participant, issuer=issuer, audience=issuer)["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            response = await http.put(f"/registrations/{participant.id}", json=body, headers=headers)
            if response.status_code != 201:
                raise RuntimeError(
                    f"registration of {participant.id} failed: {response.status_code} {response.text[:300]}"
                )

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start


async def _search(http: httpx.AsyncClient, load: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    for _, params in load[:20]:  # warm the page cache and jieba
        await http.get("/search", params={k: v for k, v in params.items() if k != "page"})
    times: dict[str, list[float]] = {}
    hits = []
    for kind, params in load:
        params = dict(params)
        page = params.pop("page", None)
        if page:
            params["cursor"] = (await http.get("/search", params={**params, "facets": "false"})).json()[
                "next_cursor"
            ] or ""
        start = time.perf_counter()
        response = await http.get("/search", params=params)
        elapsed = (time.perf_counter() - start) * 1000
        if response.status_code != 200:
            raise RuntimeError(f"search {params} failed: {response.status_code} {response.text[:300]}")
        times.setdefault(kind, []).append(elapsed)
        hits.append(response.json()["total"])
    everything = [t for ts in times.values() for t in ts]
    summary = {"queries": len(everything), "median_total_hits": statistics.median(hits), **_stats(everything)}
    summary["by_kind"] = {kind: {"n": len(ts), **_stats(ts)} for kind, ts in sorted(times.items())}
    return summary


def _stats(values: list[float]) -> dict[str, float]:
    return {f"p{p}_ms": round(percentile(values, p), 1) for p in (50, 95, 99)}


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def print_table(result: dict[str, Any]) -> None:
    search = result["search"]
    print(f"vocabulary             {result['vocabulary']:>10}")
    print(f"connectors             {result['connectors']:>10,}")
    print(f"offerings              {result['offerings']:>10,}")
    print(f"registration           {result['registration_seconds']:>10} s")
    print(f"  throughput           {result['offerings_per_second']:>10,} offerings/s")
    print(f"search queries         {search['queries']:>10,}  (median hits {search['median_total_hits']})")
    print(f"  p50 / p95 / p99      {search['p50_ms']:>6} / {search['p95_ms']} / {search['p99_ms']} ms")
    for kind, stats in search["by_kind"].items():
        print(f"    {kind:<12} n={stats['n']:<5} p50 {stats['p50_ms']:>6} ms   p95 {stats['p95_ms']:>6} ms")
    print(f"max RSS                {result['max_rss_mib']:>10} MiB")
    print(f"database               {result['database_mib']:>10} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--offerings", type=int, default=100_000)
    parser.add_argument("--connectors", type=int, default=1_000)
    parser.add_argument("--queries", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--vocabulary", choices=["catalog", "broad"], default="catalog", help="see vocabulary()")
    parser.add_argument("--quick", action="store_true", help="10,000 offerings from 100 connectors, 500 queries")
    parser.add_argument("--json", type=Path, help="also write the result as JSON to this file")
    parser.add_argument(
        "--database", help="a PostgreSQL URL (postgresql+asyncpg://…, an empty database); default SQLite"
    )
    parser.add_argument("--dir", type=Path, help="keep the broker's database in this (new, empty) directory")
    args = parser.parse_args()
    if args.quick:
        args.offerings, args.connectors, args.queries = 10_000, 100, 500
    result = asyncio.run(run(args))
    print_table(result)
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
