"""Data-plane throughput: a Tessera pull against a bare Starlette `FileResponse` of the same file, same run.

A broker and two connectors run as separate processes (`deploy/cluster.py`), and a bare Starlette app
serving the files with `FileResponse` runs as another uvicorn process on loopback. For each case the
client pulls the bare file, then the same file from the provider's data plane (`GET /data/{pid}` with
the transfer's data token, as the consumer's connector does), reading the body and counting bytes:

    case                       policy's obligations             measured
    no obligations             none                             MB/s, ratio to bare
    one masked column          mask email                       MB/s, ratio to bare
    filter rows (half kept)    filter_rows age gt 49            input MB/s, ratio to bare
    aggregate                  aggregate: avg age by region     rows/s (10 M rows at --size 1GB), CSV and Parquet
    2 x size pull              none, then mask                  provider peak RSS growth (sampled /proc)
    16 concurrent              none, a file of size/16 each     aggregate MB/s, ratio to 16 concurrent bare

    python bench/dataplane.py [--size 1GB] [--json] [--profile]

`--profile` runs the masked and the filtered shaping under cProfile in this process (source, shaping and
writer alone, no HTTP) and prints the top functions: what bounds a case that misses its target.
"""

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "deploy"))
from cluster import Processes, admit, free_port, init_broker, init_connector, management  # noqa: E402

BARE_APP = """
import sys
from starlette.applications import Starlette
from starlette.responses import FileResponse
from starlette.routing import Route
import uvicorn

root = sys.argv[1]
async def serve(request):
    return FileResponse(f"{root}/{request.path_params['name']}")
app = Starlette(routes=[Route("/{name}", serve)])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""

ALLOW = "package tessera.usage.bench_{name}\ndefault allow := false\nallow if true\n"
POLICIES = {
    "none": "",
    "mask": 'mask contains "email"\n',
    "filter": 'obligations contains {"kind": "filter_rows", "field": "age", "op": "gt", "value": 49}\n',
    "aggregate": 'obligations contains {"kind": "aggregate", "group_by": ["region"], "functions": ["avg", "count"], '
    '"fields": ["age"], "min_group_size": 1}\n',
}
QUERY = {"group_by": ["region"], "metrics": [{"fn": "avg", "field": "age"}, {"fn": "count"}]}
REGIONS = ["EU-DE", "EU-FR", "EU-IT", "EU-ES", "EU-NL", "EU-PL", "EU-SE", "EU-FI"]
ROW_BYTES = 60  # about what a generated row takes, to size the files


def parse_size(text: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(KB|MB|GB)?", text.strip(), re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"a size like 100MB or 1GB, got {text!r}")
    unit = {"KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, None: 1}[(match.group(2) or "").upper() or None]
    return int(float(match.group(1)) * unit)


def people_csv(path: Path, size: int) -> int:
    """A CSV of about `size` bytes (id, name, email, age 20-79, region, score); returns its rows."""
    rows, chunk = 0, 500_000
    with pa_csv.CSVWriter(str(path), _people(0, 1).schema) as writer:
        while path.stat().st_size < size:
            writer.write_batch(_people(rows, chunk))
            rows += chunk
    return rows


def _people(start: int, n: int) -> pa.RecordBatch:
    ids = pa.array(range(start, start + n))
    return pa.record_batch(
        {
            "id": ids,
            "name": pa.array([f"person {i}" for i in range(start, start + n)]),
            "email": pa.array([f"p{i}@example.org" for i in range(start, start + n)]),
            "age": pa.array([20 + i * 7 % 60 for i in range(start, start + n)]),
            "region": pa.array([REGIONS[i % len(REGIONS)] for i in range(start, start + n)]),
            "score": pa.array([(i * 37 % 1000) / 10 for i in range(start, start + n)]),
        }
    )


def start_cluster(work: Path, processes: Processes) -> dict[str, Any]:
    ports = {name: free_port() for name in ("broker", "provider", "consumer", "bare")}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    ids = {"provider": "urn:tessera:bench-provider", "consumer": "urn:tessera:bench-consumer"}
    init_broker(work, urls["broker"], ports["broker"])
    for role in ("provider", "consumer"):
        init_connector(work, role, ids[role], urls[role], urls["broker"], ports[role])
        admit(work, role, ids[role], role.title(), "EU-DE")
    processes.start("broker", "broker", "serve", "--dir", str(work / "broker"), health=urls["broker"] + "/health")
    for role in ("provider", "consumer"):
        processes.start(role, "connector", "serve", "--dir", str(work / role), health=urls[role] + "/health")
    log = (work / "bare.log").open("wb")
    bare = subprocess.Popen([sys.executable, "-c", BARE_APP, str(work), str(ports["bare"])], stdout=log, stderr=log)
    _wait_for(urls["bare"] + "/health")
    return {"urls": urls, "ids": ids, "work": work, "bare": bare, "provider_pid": _pid(processes, "provider")}


def _wait_for(url: str) -> None:
    for _ in range(100):
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def _pid(processes: Processes, name: str) -> int:
    return next(process.pid for started, process in processes.running if started == name)


def offer_and_transfer(cluster: dict[str, Any], path: Path, case: str) -> dict[str, str]:
    """Asset + policy + offer on the provider, agreement and started transfer on the consumer: the data address."""
    provider, consumer = management(cluster["work"] / "provider"), management(cluster["work"] / "consumer")
    asset = provider.post("/assets", json={"title": case, "format": path.suffix[1:], "path": str(path)}).json()
    source = ALLOW.format(name=case) + POLICIES[case]
    policy = provider.post("/policies", json={"source": source}).json()
    offer = provider.post("/offers", json={"asset_id": asset["id"], "usage_policy_id": policy["id"]}).json()
    body = {
        "provider_id": cluster["ids"]["provider"],
        "provider_url": cluster["urls"]["provider"] + "/dsp",
        "offer_id": offer["id"],
        "target": offer["asset_id"],
    }
    negotiation = _until(
        consumer, "/negotiations/" + consumer.post("/negotiations", json=body).json()["id"], "FINALIZED"
    )
    transfer = consumer.post("/transfers", json={"agreement_id": negotiation["agreement_id"]}).json()
    _until(consumer, f"/transfers/{transfer['id']}", "STARTED")
    with sqlite3.connect(cluster["work"] / "consumer" / "connector.db") as db:
        (address,) = db.execute("SELECT data_address FROM transfer WHERE id = ?", (transfer["id"],)).fetchone()
    address = json.loads(address)
    token = next(p["value"] for p in address["endpointProperties"] if p["name"] == "authorization")
    return {"url": address["endpoint"], "token": token}


def _until(api: httpx.Client, path: str, state: str) -> dict[str, Any]:
    while True:
        body: dict[str, Any] = api.get(path, params={"wait_for": state, "timeout": 30}).json()
        if body["state"] in (state, "TERMINATED"):
            assert body["state"] == state, body
            return body


async def pull(http: httpx.AsyncClient, url: str, token: str | None = None, **params: str) -> tuple[int, float]:
    """(bytes received, seconds) for one GET, the body read to its end."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    started, received = time.perf_counter(), 0
    async with http.stream("GET", url, headers=headers, params=params) as response:
        assert response.status_code == 200, (await response.aread())[:300]
        async for chunk in response.aiter_raw():
            received += len(chunk)
    return received, time.perf_counter() - started


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class PeakRss:
    """The highest RSS of a process while the block runs, sampled every 20 ms."""

    def __init__(self, pid: int) -> None:
        self.pid, self.before, self.peak = pid, rss_kb(pid), 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(0.02):
            self.peak = max(self.peak, rss_kb(self.pid))

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()

    @property
    def growth_mb(self) -> float:
        return max(0, self.peak - self.before) / 1024


async def measure(cluster: dict[str, Any], files: dict[str, Path], rows: dict[str, int]) -> dict[str, Any]:
    bare, results = cluster["urls"]["bare"], {}
    addresses = {case: offer_and_transfer(cluster, files["main"], case) for case in ("none", "mask", "filter")}
    addresses["aggregate"] = offer_and_transfer(cluster, files["rows"], "aggregate")
    addresses["aggregate_parquet"] = offer_and_transfer(cluster, files["rows_parquet"], "aggregate")
    addresses["big"] = offer_and_transfer(cluster, files["big"], "none")
    addresses["big_mask"] = offer_and_transfer(cluster, files["big"], "mask")
    addresses["small"] = offer_and_transfer(cluster, files["small"], "none")
    async with httpx.AsyncClient(timeout=None) as http:
        for case in ("none", "mask", "filter"):
            size, bare_s = await pull(http, f"{bare}/{files['main'].name}")
            sent, ours_s = await pull(http, addresses[case]["url"], addresses[case]["token"])
            results[case] = {
                "input_mb": size / 1e6,
                "sent_mb": sent / 1e6,
                "bare_mb_s": size / 1e6 / bare_s,
                "tessera_mb_s": size / 1e6 / ours_s,  # per input byte: what the provider read
                "ratio": bare_s / ours_s,
            }
        for case in ("aggregate", "aggregate_parquet"):
            address = addresses[case]
            _, seconds = await pull(http, address["url"], address["token"], query=json.dumps(QUERY))
            results[case] = {"rows": rows["rows"], "seconds": seconds, "rows_per_s": rows["rows"] / seconds}
        for case in ("big", "big_mask"):
            with PeakRss(cluster["provider_pid"]) as peak:
                sent, seconds = await pull(http, addresses[case]["url"], addresses[case]["token"])
            results[f"rss_{case}"] = {"sent_mb": sent / 1e6, "seconds": seconds, "rss_growth_mb": peak.growth_mb}
        small = files["small"]
        began = time.perf_counter()
        bare_sizes = await asyncio.gather(*(pull(http, f"{bare}/{small.name}") for _ in range(16)))
        bare_wall = time.perf_counter() - began
        address = addresses["small"]
        began = time.perf_counter()
        ours = await asyncio.gather(*(pull(http, address["url"], address["token"]) for _ in range(16)))
        ours_wall = time.perf_counter() - began
        results["concurrent"] = {
            "pulls": 16,
            "file_mb": small.stat().st_size / 1e6,
            "bare_mb_s": sum(s for s, _ in bare_sizes) / 1e6 / bare_wall,
            "tessera_mb_s": sum(s for s, _ in ours) / 1e6 / ours_wall,
            "ratio": bare_wall / ours_wall,
        }
    return results


def profile(path: Path) -> str:
    """cProfile of the masked and the filtered shaping of `path`, in this process (no HTTP)."""
    from connector.shaping import shaped
    from connector.sources import FileSource
    from connector.writers import write
    from tessera.policy import Obligation

    cases = {
        "mask": [Obligation("mask", {"fields": ["email"]})],
        "filter": [Obligation("filter_rows", {"field": "age", "op": "gt", "value": 49})],
    }
    out = io.StringIO()
    for name, obligations in cases.items():
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        sent = sum(len(c) for c in write(shaped(FileSource(path, "csv"), obligations, text=True), "csv"))
        profiler.disable()
        seconds = time.perf_counter() - started
        out.write(f"\n{name}: {path.stat().st_size / 1e6 / seconds:.0f} MB/s in, {sent / 1e6:.0f} MB out\n")
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(8)
    return out.getvalue()


def report(results: dict[str, Any], console: Console) -> None:
    table = Table("case", "bare", "Tessera", "ratio", "target", title="Data-plane bench (loopback)")
    for case, label, target in (
        ("none", "no obligations", ">= 80 %"),
        ("mask", "one masked column", ">= 40 %"),
        ("filter", "filter rows (half kept), per input byte", ">= 40 %"),
    ):
        row = results[case]
        size = f" ({row['input_mb']:.0f} MB)" if case == "none" else ""
        table.add_row(
            label + size,
            f"{row['bare_mb_s']:.0f} MB/s",
            f"{row['tessera_mb_s']:.0f} MB/s",
            f"{row['ratio']:.1%}",
            target,
        )
    for case, stored in (("aggregate", "CSV"), ("aggregate_parquet", "Parquet")):
        agg = results[case]
        label = f"aggregate (group by + avg), {agg['rows']:,} rows, {stored}"
        table.add_row(label, "", f"{agg['rows_per_s'] / 1e6:.1f} M rows/s", "", ">= 20 M rows/s")
    for case, label in (("rss_big", "no obligations"), ("rss_big_mask", "masked")):
        row = results[case]
        table.add_row(
            f"{row['sent_mb']:.0f} MB pull, {label}: provider RSS growth",
            "",
            f"{row['rss_growth_mb']:.1f} MB",
            "",
            "< 64 MB",
        )
    conc = results["concurrent"]
    table.add_row(
        f"16 concurrent pulls of {conc['file_mb']:.0f} MB",
        f"{conc['bare_mb_s']:.0f} MB/s",
        f"{conc['tessera_mb_s']:.0f} MB/s",
        f"{conc['ratio']:.1%}",
        ">= 70 %",
    )
    console.print(table)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=parse_size, default=parse_size("1GB"), help="the main file's size (1GB)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--profile", action="store_true", help="profile the masked and filtered shaping too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tessera-bench-") as tmp:
        work = Path(tmp)
        files = {name: work / f"{name}.csv" for name in ("main", "rows", "big", "small")}
        people_csv(files["main"], args.size)
        people_csv(files["big"], 2 * args.size)
        people_csv(files["small"], args.size // 16)
        rows = {"rows": people_csv(files["rows"], int(10_000_000 * ROW_BYTES * args.size / (1 << 30)))}
        files["rows_parquet"] = work / "rows.parquet"
        pq.write_table(pa_csv.read_csv(files["rows"]), files["rows_parquet"])
        processes = Processes(work)
        cluster: dict[str, Any] = {}
        try:
            cluster = start_cluster(work, processes)
            results = asyncio.run(measure(cluster, files, rows))
        finally:
            if "bare" in cluster:
                cluster["bare"].terminate()
                cluster["bare"].wait()
            processes.stop_all()
        results["profile"] = profile(files["main"]) if args.profile else None
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        report(results, Console())
        if results["profile"]:
            print(results["profile"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
