"""Compute-to-data benchmark: a group-by aggregate over 10 M rows under differential privacy, through the
connector's compute path, against the same query in DuckDB alone, interleaved in one run.

    python bench/compute.py [--rows 10000000] [--repeat 5] [--json]

The data: a Parquet file (region 0-99, age 0-89, income 0-100,000) written once into a temporary
directory. Compute path: `dialect.check` (sqlglot parse + allow-list + plan), `privacy.noised_query`,
`engine.sql_of`, `engine.run` (a fresh locked-down DuckDB connection over the asset's Arrow batches
from `FileSource`, streamed) and `privacy.release` (OpenDP Laplace noise on every measure, the k
threshold). DuckDB alone: the query as sent, on a plain connection, over `read_parquet` of the same file
(DuckDB's own parallel scan). The policy decision and HTTP are not in either (see bench/policy.py for
decisions). Targets: at most 2 s, at most 1.5 times DuckDB alone.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from connector.compute import dialect, engine, privacy
from connector.config import ComputeLimits
from connector.sources import FileSource
from tessera.json import JSONObject

SQL = "SELECT region, count(*) AS n, avg(age) AS mean_age, sum(income) AS total FROM data GROUP BY region"
BOUNDS = {"age": (0.0, 120.0), "income": (0.0, 100_000.0)}
EPSILON = 1.0
K = 10


def write_data(path: Path, rows: int, chunk: int = 1_000_000) -> Path:
    schema = pa.schema([("region", pa.int64()), ("age", pa.int64()), ("income", pa.float64())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            region = pc.cast(pc.floor(pc.multiply(pc.random(n), 100)), pa.int64())
            age = pc.cast(pc.floor(pc.multiply(pc.random(n), 90)), pa.int64())
            income = pc.multiply(pc.random(n), 100_000)
            writer.write_table(pa.table([region, age, income], schema=schema))
    return path


def compute_path(source: FileSource, limits: ComputeLimits) -> list[dict[str, object]]:
    schema = source.schema()
    checked = dialect.check(SQL, {f.name: str(f.type) for f in schema})
    noised = privacy.noised_query(checked.tree, BOUNDS, engine.known_within(source, BOUNDS))
    table = engine.run(source, engine.sql_of(noised.tree, schema), limits)
    rows, _ = privacy.release(noised, table, EPSILON, K, checked.plan["limit"])
    return rows


def duckdb_alone(path: Path, threads: int) -> list[tuple[object, ...]]:
    connection = duckdb.connect(config={"threads": threads})
    try:
        return connection.sql(SQL.replace("FROM data", f"FROM read_parquet('{path}')")).fetchall()
    finally:
        connection.close()


def run(rows: int, repeat: int) -> JSONObject:
    limits = ComputeLimits(seconds=60, memory="1GB")
    with tempfile.TemporaryDirectory() as directory:
        path = write_data(Path(directory) / "bench.parquet", rows)
        source = FileSource(path, "parquet")
        ours, alone = [], []
        answer: list[dict[str, object]] = []
        for _ in range(repeat + 1):  # the first round warms caches and imports; it is not counted
            start = time.perf_counter()
            answer = compute_path(source, limits)
            ours.append(time.perf_counter() - start)
            start = time.perf_counter()
            exact = duckdb_alone(path, limits.threads)
            alone.append(time.perf_counter() - start)
        ours, alone = ours[1:], alone[1:]
    best, base = min(ours), min(alone)
    return {
        "rows": rows,
        "repeat": repeat,
        "groups": len(answer),
        "exact_groups": len(exact),
        "compute_s": {"min": round(best, 3), "median": round(sorted(ours)[len(ours) // 2], 3)},
        "duckdb_alone_s": {"min": round(base, 3), "median": round(sorted(alone)[len(alone) // 2], 3)},
        "ratio_min": round(best / base, 2),
        "ratio_median": round(sorted(ours)[len(ours) // 2] / sorted(alone)[len(alone) // 2], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.rows, args.repeat)
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:>16}: {value}")


if __name__ == "__main__":
    main()
