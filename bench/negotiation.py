"""Negotiation and transfer-start latency and throughput between two connectors on loopback.

A broker and two connectors run as separate processes (as in production, each with its own SQLite
file). The client asks the consumer's management API for full negotiations (request -> FINALIZED:
request, signed agreement, countersigned verification, FINALIZED event) and transfer starts
(request -> STARTED), sequentially and concurrently, and long-polls each until it is done. The baseline,
measured in the same run, is one management-API round trip (GET /api/negotiations/{id}), so the
ratio says how many plain round trips a whole negotiation costs.

With `--replicas N` each connector runs as N processes on one database (a PostgreSQL database with
`--database`): each replica has its own port and public URL, the client sends its requests round-robin over
the consumer's replicas and names the provider's replicas round-robin as `provider_url`, so a negotiation's
messages stay with the two replicas that began it while all of them share the records. Without the
replicas part (leases, the audit chain's head in the database) several processes on one database are not
safe; N = 1 works on SQLite and PostgreSQL alike.

    python bench/negotiation.py [--sequential 50] [--concurrent 200] [--parallelism 16] [--json]
                                [--replicas N] [--database postgres | postgresql://user:password@host:port/]

`--database postgres` starts a throwaway PostgreSQL server (as tests/postgres.py does, fsync off);
a server URL is used as it is, with fresh databases created on it.
"""

import argparse
import asyncio
import contextlib
import itertools
import json
import shutil
import statistics
import sys
import tempfile
import time
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import tomli_w
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "deploy"))
from cluster import Processes, admit, free_port, init_broker, init_connector, management  # noqa: E402

sys.path.insert(0, str(REPO))
SAMPLE = REPO / "deploy" / "sample" / "study_participants.csv"
POLICY = REPO / "policies" / "examples" / "research_limited.rego"


def start_cluster(work: Path, processes: Processes, replicas: int, server: str | None) -> dict[str, Any]:
    ports = {name: free_port() for name in ("broker", "provider", "consumer")}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    ids = {"provider": "urn:tessera:bench-provider", "consumer": "urn:tessera:bench-consumer"}
    init_broker(work, urls["broker"], ports["broker"])
    for role in ("provider", "consumer"):
        init_connector(work, role, ids[role], urls[role], urls["broker"], ports[role])
        admit(work, role, ids[role], role.title(), "EU-DE")
        if server is not None:
            _configure(work / role, database_url=_fresh_database(server))
    processes.start("broker", "broker", "serve", "--dir", str(work / "broker"), health=urls["broker"] + "/health")
    dirs = {role: _replicas(work / role, replicas) for role in ("provider", "consumer")}
    for role, directories in dirs.items():
        for i, directory in enumerate(directories):
            url = _config(directory)["url"]
            processes.start(f"{role}-{i}", "connector", "serve", "--dir", str(directory), health=url + "/health")
    provider = management(work / "provider")
    asset = provider.post("/assets", json={"title": "bench", "format": "csv", "path": str(SAMPLE)}).json()
    policy = provider.post("/policies", json={"source": POLICY.read_text()}).json()
    offer = provider.post("/offers", json={"asset_id": asset["id"], "usage_policy_id": policy["id"]}).json()
    return {
        "ids": ids,
        "offer": offer,
        "consumer_dirs": dirs["consumer"],
        "provider_dsp": [_config(d)["url"] + "/dsp" for d in dirs["provider"]],
    }


def _config(directory: Path) -> dict[str, Any]:
    return tomllib.loads((directory / "connector.toml").read_text())


def _configure(directory: Path, **settings: Any) -> None:
    (directory / "connector.toml").write_text(tomli_w.dumps(_config(directory) | settings))


def _replicas(first: Path, count: int) -> list[Path]:
    """`first` and count - 1 copies of it (same identity, token and database), each on a port of its own."""
    directories = [first]
    for i in range(1, count):
        copy = first.with_name(f"{first.name}-{i}")
        shutil.copytree(first, copy, ignore=shutil.ignore_patterns("*.db*"))
        port = free_port()
        _configure(copy, port=port, url=f"http://127.0.0.1:{port}", database_url=_config(first)["database_url"])
        directories.append(copy)
    return directories


def _fresh_database(server: str) -> str:
    """A new empty database on the PostgreSQL server at `server` (a libpq URL); its SQLAlchemy URL."""
    name = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    url = make_url(server).set(drivername="postgresql+asyncpg", database=name)
    return url.render_as_string(hide_password=False)


@contextlib.contextmanager
def postgres_server(database: str | None) -> Iterator[str | None]:
    """The PostgreSQL server URL to create the connectors' databases on: as given, a throwaway one, or None."""
    if database != "postgres":
        yield database
        return
    from tests.postgres import Postgres, binaries  # the test harness's throwaway server

    if binaries() is None:
        raise SystemExit("PostgreSQL is not installed and cannot be installed here")
    server = Postgres(Path(tempfile.mkdtemp(prefix="tessera-bench-pg-")), free_port())
    server.start()
    try:
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)


async def until(api: httpx.AsyncClient, path: str, state: str) -> dict[str, Any]:
    """Long-poll the management API until the process reaches `state` (no client-side polling load)."""
    while True:
        body = (await api.get(path, params={"wait_for": state, "timeout": 30})).json()
        if body["state"] == state:
            return body
        if body["state"] == "TERMINATED":
            raise RuntimeError(f"{path} terminated: {body.get('reasons')}")


async def negotiation(api: httpx.AsyncClient, cluster: dict[str, Any]) -> tuple[float, str]:
    offer = cluster["offer"]
    started = time.perf_counter()
    body = {
        "provider_id": cluster["ids"]["provider"],
        "provider_url": next(cluster["providers"]),
        "offer_id": offer["id"],
        "target": offer["asset_id"],
    }
    created = _created(await api.post("/negotiations", json=body))
    done = await until(api, f"/negotiations/{created['id']}", "FINALIZED")
    return time.perf_counter() - started, done["agreement_id"]


async def transfer_start(api: httpx.AsyncClient, agreement_id: str) -> float:
    started = time.perf_counter()
    created = _created(await api.post("/transfers", json={"agreement_id": agreement_id}))
    await until(api, f"/transfers/{created['id']}", "STARTED")
    return time.perf_counter() - started


def _created(response: httpx.Response) -> dict[str, Any]:
    if response.status_code != 201:
        raise RuntimeError(f"{response.request.url} answered {response.status_code}: {response.text[:500]}")
    created: dict[str, Any] = response.json()
    return created


async def round_trip(api: httpx.AsyncClient, path: str) -> float:
    started = time.perf_counter()
    (await api.get(path)).raise_for_status()
    return time.perf_counter() - started


class RoundRobin:
    """Management clients, one per consumer replica, taken in turn."""

    def __init__(self, clients: list[httpx.AsyncClient]) -> None:
        self.clients = clients
        self._turn = itertools.cycle(clients)

    def next(self) -> httpx.AsyncClient:
        return next(self._turn)


async def measure(cluster: dict[str, Any], sequential: int, concurrent: int, parallelism: int) -> dict[str, Any]:
    clients = []
    for directory in cluster["consumer_dirs"]:
        sync_client = management(directory)
        headers = dict(sync_client.headers)
        clients.append(httpx.AsyncClient(base_url=str(sync_client.base_url), headers=headers, timeout=60))
    cluster["providers"] = itertools.cycle(cluster["provider_dsp"])
    async with contextlib.AsyncExitStack() as stack:
        for client in clients:
            await stack.enter_async_context(client)
        return await _measure(RoundRobin(clients), cluster, sequential, concurrent, parallelism)


async def _measure(
    apis: RoundRobin, cluster: dict[str, Any], sequential: int, concurrent: int, parallelism: int
) -> dict[str, Any]:
    for api in apis.clients:
        await negotiation(api, cluster)  # warm up each replica: tokens, JWKS, policy compilation
    first = apis.clients[0]
    baseline = [await round_trip(first, "/negotiations?limit=1") for _ in range(200)]
    seq = [await negotiation(apis.next(), cluster) for _ in range(sequential)]
    agreements = [agreement for _, agreement in seq]
    seq_transfers = [await transfer_start(apis.next(), agreements[i % len(agreements)]) for i in range(sequential)]
    gate = asyncio.Semaphore(parallelism)

    async def limited(work: Any) -> Any:
        async with gate:
            return await work

    began = time.perf_counter()
    conc = await asyncio.gather(*(limited(negotiation(apis.next(), cluster)) for _ in range(concurrent)))
    conc_wall = time.perf_counter() - began
    began = time.perf_counter()
    conc_transfers = await asyncio.gather(
        *(limited(transfer_start(apis.next(), agreements[i % len(agreements)])) for i in range(concurrent))
    )
    transfer_wall = time.perf_counter() - began
    return {
        "baseline_round_trip": summary(baseline),
        "negotiation_sequential": summary([t for t, _ in seq]) | {"per_second": sequential / sum(t for t, _ in seq)},
        "negotiation_concurrent": summary([t for t, _ in conc])
        | {"per_second": concurrent / conc_wall, "parallelism": parallelism},
        "transfer_start_sequential": summary(seq_transfers) | {"per_second": sequential / sum(seq_transfers)},
        "transfer_start_concurrent": summary(conc_transfers)
        | {"per_second": concurrent / transfer_wall, "parallelism": parallelism},
    }


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50_ms": 1000 * statistics.median(ordered),
        "p95_ms": 1000 * ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
    }


def report(results: dict[str, Any], console: Console, title: str) -> None:
    base = results["baseline_round_trip"]["p50_ms"]
    table = Table("measure", "n", "p50 ms", "p95 ms", "p99 ms", "per second", "p50 / baseline", title=title)
    for name, row in results.items():
        rate = f"{row['per_second']:.0f}" if "per_second" in row else ""
        table.add_row(
            name,
            str(row["n"]),
            f"{row['p50_ms']:.1f}",
            f"{row['p95_ms']:.1f}",
            f"{row['p99_ms']:.1f}",
            rate,
            f"{row['p50_ms'] / base:.1f}x",
        )
    console.print(table)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequential", type=int, default=50)
    parser.add_argument("--concurrent", type=int, default=200)
    parser.add_argument("--parallelism", type=int, default=16)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--replicas", type=int, default=1, help="processes of each connector on one database")
    parser.add_argument(
        "--database", help="`postgres` (a throwaway server) or a PostgreSQL server URL; default SQLite files"
    )
    args = parser.parse_args()
    if args.replicas < 1:
        parser.error("--replicas must be at least 1")
    with tempfile.TemporaryDirectory(prefix="tessera-bench-") as tmp, postgres_server(args.database) as server:
        work = Path(tmp)
        processes = Processes(work)
        try:
            cluster = start_cluster(work, processes, args.replicas, server)
            results = asyncio.run(measure(cluster, args.sequential, args.concurrent, args.parallelism))
        finally:
            processes.stop_all()
    database = "SQLite" if server is None else "PostgreSQL"
    if args.json:
        print(json.dumps(results | {"setup": {"replicas": args.replicas, "database": database}}, indent=2))
    else:
        report(results, Console(), f"Negotiation bench: {args.replicas} replica(s) of each connector, {database}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
