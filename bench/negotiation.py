"""Negotiation and transfer-start latency and throughput between two connectors on loopback.

A broker and two connectors run as separate processes (as in production, each with its own SQLite
file). The client asks the consumer's management API for full negotiations (request -> FINALIZED:
request, signed agreement, countersigned verification, FINALIZED event) and transfer starts
(request -> STARTED), sequentially and concurrently, and long-polls each until it is done. The baseline,
measured in the same run, is one management-API round trip (GET /api/negotiations/{id}), so the
ratio says how many plain round trips a whole negotiation costs.

    python bench/negotiation.py [--sequential 50] [--concurrent 200] [--parallelism 16] [--json]
"""

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "deploy"))
from cluster import Processes, admit, free_port, init_broker, init_connector, management  # noqa: E402

SAMPLE = REPO / "deploy" / "sample" / "study_participants.csv"
POLICY = REPO / "policies" / "examples" / "research_limited.rego"


def start_cluster(work: Path, processes: Processes) -> dict[str, Any]:
    ports = {name: free_port() for name in ("broker", "provider", "consumer")}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    ids = {"provider": "urn:tessera:bench-provider", "consumer": "urn:tessera:bench-consumer"}
    init_broker(work, urls["broker"], ports["broker"])
    for role in ("provider", "consumer"):
        init_connector(work, role, ids[role], urls[role], urls["broker"], ports[role])
        admit(work, role, ids[role], role.title(), "EU-DE")
    processes.start("broker", "broker", "serve", "--dir", str(work / "broker"), health=urls["broker"] + "/health")
    for role in ("provider", "consumer"):
        processes.start(role, "connector", "serve", "--dir", str(work / role), health=urls[role] + "/health")
    provider = management(work / "provider")
    asset = provider.post("/assets", json={"title": "bench", "format": "csv", "path": str(SAMPLE)}).json()
    policy = provider.post("/policies", json={"source": POLICY.read_text()}).json()
    offer = provider.post("/offers", json={"asset_id": asset["id"], "usage_policy_id": policy["id"]}).json()
    return {"urls": urls, "ids": ids, "offer": offer, "consumer_dir": work / "consumer"}


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
        "provider_url": cluster["urls"]["provider"] + "/dsp",
        "offer_id": offer["id"],
        "target": offer["asset_id"],
    }
    created = (await api.post("/negotiations", json=body)).json()
    done = await until(api, f"/negotiations/{created['id']}", "FINALIZED")
    return time.perf_counter() - started, done["agreement_id"]


async def transfer_start(api: httpx.AsyncClient, agreement_id: str) -> float:
    started = time.perf_counter()
    created = (await api.post("/transfers", json={"agreement_id": agreement_id})).json()
    await until(api, f"/transfers/{created['id']}", "STARTED")
    return time.perf_counter() - started


async def round_trip(api: httpx.AsyncClient, path: str) -> float:
    started = time.perf_counter()
    (await api.get(path)).raise_for_status()
    return time.perf_counter() - started


async def measure(cluster: dict[str, Any], sequential: int, concurrent: int, parallelism: int) -> dict[str, Any]:
    sync_client = management(cluster["consumer_dir"])
    async with httpx.AsyncClient(
        base_url=str(sync_client.base_url), headers=dict(sync_client.headers), timeout=60
    ) as api:
        await negotiation(api, cluster)  # warm up: tokens, JWKS, policy compilation
        baseline = [await round_trip(api, "/negotiations?limit=1") for _ in range(200)]
        seq = [await negotiation(api, cluster) for _ in range(sequential)]
        agreements = [agreement for _, agreement in seq]
        seq_transfers = [await transfer_start(api, agreements[i % len(agreements)]) for i in range(sequential)]
        gate = asyncio.Semaphore(parallelism)

        async def limited(work: Any) -> Any:
            async with gate:
                return await work

        began = time.perf_counter()
        conc = await asyncio.gather(*(limited(negotiation(api, cluster)) for _ in range(concurrent)))
        conc_wall = time.perf_counter() - began
        began = time.perf_counter()
        conc_transfers = await asyncio.gather(
            *(limited(transfer_start(api, agreements[i % len(agreements)])) for i in range(concurrent))
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
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
    }


def report(results: dict[str, Any], console: Console) -> None:
    base = results["baseline_round_trip"]["p50_ms"]
    table = Table("measure", "n", "p50 ms", "p99 ms", "per second", "p50 / baseline", title="Negotiation bench")
    for name, row in results.items():
        rate = f"{row['per_second']:.0f}" if "per_second" in row else ""
        table.add_row(
            name, str(row["n"]), f"{row['p50_ms']:.1f}", f"{row['p99_ms']:.1f}", rate, f"{row['p50_ms'] / base:.1f}x"
        )
    console.print(table)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequential", type=int, default=50)
    parser.add_argument("--concurrent", type=int, default=200)
    parser.add_argument("--parallelism", type=int, default=16)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tessera-bench-") as tmp:
        work = Path(tmp)
        processes = Processes(work)
        try:
            cluster = start_cluster(work, processes)
            results = asyncio.run(measure(cluster, args.sequential, args.concurrent, args.parallelism))
        finally:
            processes.stop_all()
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        report(results, Console())
    return 0


if __name__ == "__main__":
    sys.exit(main())
