"""Compute-to-data: the consumer's SQL runs at the provider, under the agreement; only aggregates leave.

Real connectors on loopback ports, real SQLite, the real Rego engine, DuckDB and OpenDP. Queries go
through the consumer's management API (`POST /api/agreements/{id}/query`), which sends them to the
provider's data plane (`POST /data/{pid}/query`) with the transfer's data token.
"""

import asyncio
import csv
import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from connector.compute import dialect, engine, privacy
from connector.config import ComputeLimits
from connector.sources import FileSource
from policies.patterns import PatternUse, render
from tests.dataspace import Site, negotiate, sql, start_transfer, tessera

TESSERA = "https://w3id.org/tessera/v1/"
REGIONS = {"north": 12, "south": 8, "east": 3}  # records per region; east is below k = 5


def write_survey(path: Path) -> Path:
    """23 people in three regions; ages 20 + i."""
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["name", "region", "age", "income"])
        i = 0
        for region, n in REGIONS.items():
            for _ in range(n):
                writer.writerow([f"person{i}", region, 20 + i, 1000 * (i + 1)])
                i += 1
    return path


@pytest.fixture
def survey(tmp_path: Path) -> Path:
    return write_survey(tmp_path / "survey.csv")


async def agreed(
    provider: Site, consumer: Site, data: Path, *, dp: dict[str, Any] | None = None, budget: float | None = None
) -> str:
    """An agreement under the compute_to_data pattern (group by region, aggregate age, k = 5) with a started
    pull transfer; `budget`: a tessera:privacyBudget constraint in the offer. Returns the agreement id."""
    params: dict[str, Any] = {"compute_group_by": ["region"], "compute_aggregate_only": ["age"], "min_group_size": 5}
    policy = render("tessera.usage.compute", [PatternUse.of("compute_to_data", **params, compute_dp=dp)])
    asset = await provider.post("/assets", {"title": "Survey", "format": "csv", "path": str(data)})
    usage = await provider.post("/policies", {"title": "compute", "source": policy})
    offer: dict[str, Any] = {"asset_id": asset["id"], "usage_policy_id": usage["id"]}
    if budget is not None:
        # As text: a bare JSON number as rightOperand does not yet survive the agreement's signature check.
        constraint = {"leftOperand": TESSERA + "privacyBudget", "operator": "lteq", "rightOperand": f"{budget:g}"}
        offer["constraints"] = [constraint]
    negotiation = await negotiate(consumer, provider, await provider.post("/offers", offer))
    assert negotiation["state"] == "FINALIZED", negotiation
    transfer = await start_transfer(consumer, negotiation["agreement_id"])
    assert transfer["state"] == "STARTED", transfer
    agreement_id: str = negotiation["agreement_id"]
    return agreement_id


async def ask(consumer: Site, agreement_id: str, sql: str, **extra: Any) -> httpx.Response:
    return await consumer.api.post(f"/agreements/{agreement_id}/query", json={"sql": sql, **extra}, timeout=30)


def reasons(response: httpx.Response) -> list[str]:
    body: dict[str, Any] = response.json()
    return [str(r) for r in body.get("reasons") or [body.get("detail")]]


async def test_an_allowed_aggregate_is_answered_without_small_groups(
    provider: Site, consumer: Site, survey: Path
) -> None:
    agreement_id = await agreed(provider, consumer, survey)
    sql = "SELECT region, count(*) AS n, avg(age) AS mean_age FROM data GROUP BY region ORDER BY region"
    response = await ask(consumer, agreement_id, sql)

    assert response.status_code == 200, response.text
    body = response.json()
    # north: ages 20..31, south: 32..39; east (3 records) is below k = 5 and left out.
    assert body["rows"] == [
        {"region": "north", "n": 12, "mean_age": 25.5},
        {"region": "south", "n": 8, "mean_age": 35.5},
    ]
    assert (body["noised"], body["groups_left_out"]) == (False, 1)
    assert body["query_sha256"] == hashlib.sha256(sql.encode()).hexdigest()
    assert json.loads(response.headers["tessera-labels"])["classification"] == "general"
    entries = (await provider.api.get("/audit")).json()["items"]
    answered = [e for e in entries if e["action"] == "compute.answered"]
    assert [(e["details"]["query"], e["details"]["query_sha256"]) for e in answered] == [
        (sql, hashlib.sha256(sql.encode()).hexdigest())
    ]


async def test_raw_selects_and_forbidden_columns_are_refused_by_the_policy(
    provider: Site, consumer: Site, survey: Path
) -> None:
    agreement_id = await agreed(provider, consumer, survey)
    raw = await ask(consumer, agreement_id, "SELECT name, age FROM data")
    forbidden = await ask(consumer, agreement_id, "SELECT region, count(income) FROM data GROUP BY region")
    filtered = await ask(consumer, agreement_id, "SELECT count(*) FROM data WHERE age > 30")

    assert raw.status_code == 403, raw.text
    assert any("raw rows never leave" in r for r in reasons(raw))
    assert forbidden.status_code == 403, forbidden.text
    assert 'compute: column "income" may not be read; allowed ["age","region"]' in reasons(forbidden)
    assert filtered.status_code == 403, filtered.text
    assert 'compute: filter on "age" not allowed; filter on ["region"]' in reasons(filtered)
    pulled = await consumer.api.get(f"/transfers/{(await _transfer(consumer, agreement_id))}/data")
    assert pulled.status_code == 403, pulled.text  # a plain pull of the file is no query: raw rows never leave


async def _transfer(consumer: Site, agreement_id: str) -> str:
    items = (await consumer.api.get("/transfers")).json()["items"]
    transfer_id: str = next(t["id"] for t in items if t["agreement_id"] == agreement_id)
    return transfer_id


@pytest.mark.parametrize(
    ("sql", "construct"),
    [
        ("SELECT * FROM read_csv('/etc/passwd')", "function read_csv"),
        ("SELECT count(*) FROM read_csv_auto('/etc/passwd')", "function read_csv"),
        ("COPY data TO '/tmp/out.csv'", "COPY"),
        ("ATTACH '/tmp/other.db' AS other", "ATTACH"),
        ("INSTALL httpfs", "INSTALL"),
        ("LOAD httpfs", "only SELECT"),
        ("PRAGMA version", "PRAGMA"),
        ("SET threads = 1", "SET"),
        ("SELECT count(*) FROM 'http://example.org/data.csv'", "not the agreed table"),
        ("SELECT count(*) FROM read_parquet('/tmp/x.parquet')", "function read_parquet"),
        ("SELECT count(*) FROM glob('/etc/*')", "glob"),
        ("SELECT region, getenv('HOME') FROM data GROUP BY region", "function getenv"),
        ("SELECT region, current_setting('threads') FROM data GROUP BY region", "function current_setting"),
        ("SELECT region, count(*) FROM data GROUP BY region; DROP TABLE data", "exactly one statement"),
        ("SELECT count(*) FROM (SELECT region FROM data)", "subquery"),
        ("WITH t AS (SELECT * FROM data) SELECT count(*) FROM t", "CTE"),
        ("SELECT region, count(*) OVER () FROM data", "window function"),
        ("SELECT * FROM data", "*"),
        ("SELECT count(*) FROM data JOIN data AS d2 ON true", "JOINS"),
    ],
)
async def test_sandbox_escapes_are_outside_the_dialect(
    provider: Site, consumer: Site, survey: Path, sql: str, construct: str
) -> None:
    agreement_id = await agreed(provider, consumer, survey)
    response = await ask(consumer, agreement_id, sql)
    assert response.status_code == 400, response.text
    assert construct in response.json()["detail"], response.json()["detail"]


async def test_a_differencing_pair_is_refused(provider: Site, consumer: Site, survey: Path) -> None:
    agreement_id = await agreed(provider, consumer, survey)
    first = await ask(consumer, agreement_id, "SELECT count(*) AS n, avg(age) AS a FROM data")
    # All but person0: alone, a fine group of 22; with the first answer, it gives away person0's age.
    second = await ask(consumer, agreement_id, "SELECT count(*) AS n, avg(age) AS a FROM data WHERE region != 'east'")
    again = await ask(consumer, agreement_id, "SELECT count(*) AS n FROM data")
    apart = await ask(consumer, agreement_id, "SELECT count(*) AS n FROM data WHERE region = 'north'")

    assert first.status_code == 200, first.text
    assert first.json()["rows"] == [{"n": 23, "a": 31.0}]
    assert second.status_code == 403, second.text
    assert any(r.startswith("differencing: a group of 20 records differs by 3") for r in reasons(second))
    assert again.status_code == 200, again.text  # the same group again isolates nobody
    assert apart.status_code == 200, apart.text  # 12 records against 23: 11 apart, at least k


async def test_noised_answers_spend_the_budget_exactly_under_parallel_queries(
    provider: Site, consumer: Site, survey: Path
) -> None:
    dp = {"epsilon": 0.25, "bounds": {"age": [0, 100]}}
    agreement_id = await agreed(provider, consumer, survey, dp=dp, budget=1.0)
    sql = "SELECT region, count(*) AS n, avg(age) AS mean_age FROM data GROUP BY region ORDER BY region"
    responses = await asyncio.gather(*(ask(consumer, agreement_id, sql) for _ in range(20)))

    answered = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 403]
    assert (len(answered), len(refused)) == (4, 16), sorted(r.status_code for r in responses)
    assert all(r.json()["noised"] and r.json()["epsilon"] == 0.25 for r in answered)
    assert sorted(r.json()["epsilon_spent"] for r in answered) == [0.25, 0.5, 0.75, 1.0]
    left = "this query asks epsilon 0.25; 1 of 1 spent, 0 left"
    assert all(any(left in reason for reason in reasons(r)) for r in refused), reasons(refused[0])
    usage = (await provider.api.get("/usage")).json()["items"]
    assert [(u["uses"], u["epsilon_spent"]) for u in usage if u["agreement_id"] == agreement_id] == [(4, 1.0)]
    code, out, err = await tessera("usage", "report", "--dir", str(provider.config.directory), "--json")
    assert code == 0, err
    assert [(row["uses"], row["epsilon_spent"]) for row in json.loads(out)] == [(4, 1.0)]


async def test_a_query_names_its_epsilon_and_the_answer_says_it_is_noised(
    provider: Site, consumer: Site, survey: Path
) -> None:
    agreement_id = await agreed(provider, consumer, survey, dp={"epsilon": 0.1, "bounds": {"age": [0, 100]}}, budget=2)
    sql = "SELECT region, count(*) AS n, sum(age) AS total FROM data GROUP BY region ORDER BY region"
    response = await ask(consumer, agreement_id, sql, epsilon=1.5)
    too_much = await ask(consumer, agreement_id, sql, epsilon=1.0)
    unbounded = await ask(consumer, agreement_id, "SELECT count(*) FROM data HAVING count(*) > 3")

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["noised"], body["epsilon"], body["epsilon_spent"]) == (True, 1.5, 1.5)
    regions = [row["region"] for row in body["rows"]]
    assert set(regions) <= {"north", "south", "east"}  # groups whose noisy count is below k are left out
    assert too_much.status_code == 403
    assert any("1.5 of 2 spent, 0.5 left" in r for r in reasons(too_much)), reasons(too_much)
    assert unbounded.status_code == 400
    assert "HAVING" in unbounded.json()["detail"]


async def test_a_query_past_the_time_limit_is_stopped(space: Any, consumer: Site, tmp_path: Path) -> None:
    config = replace(await space.admit("slow"), compute=ComputeLimits(seconds=0.05))
    provider = await space.start(config)
    big = tmp_path / "big.csv"
    with big.open("w") as fh:
        fh.write("region,age\n")
        fh.writelines(f"r{i % 50000},{i % 90}\n" for i in range(1_500_000))
    agreement_id = await agreed(provider, consumer, big)
    response = await ask(consumer, agreement_id, "SELECT region, avg(age) FROM data GROUP BY region ORDER BY region")
    assert response.status_code == 400, response.text
    assert "time limit of 0.05 s" in response.json()["detail"]


async def test_tessera_query_prints_the_answer(provider: Site, consumer: Site, survey: Path) -> None:
    agreement_id = await agreed(provider, consumer, survey)
    directory = str(consumer.config.directory)
    sql = "SELECT region, count(*) AS n FROM data GROUP BY region ORDER BY region"
    code, out, err = await tessera("query", agreement_id, sql, "--dir", directory, "--json")
    refused_code, _, refused_err = await tessera("query", agreement_id, "SELECT name FROM data", "--dir", directory)

    assert code == 0, err
    assert json.loads(out)["rows"] == [{"region": "north", "n": 12}, {"region": "south", "n": 8}]
    assert refused_code != 0 and "raw rows never leave" in refused_err


async def _released(provider: Site) -> int:
    (row,) = await sql(provider.config, "SELECT count(*) AS n FROM released_group")
    return int(row["n"])


def _parquet(path: Path, incomes: list[float], row_group_size: int = 2) -> Path:
    pq.write_table(pa.table({"region": ["a"] * len(incomes), "income": incomes}), path, row_group_size=row_group_size)
    return path


def test_a_parquet_column_its_statistics_keep_inside_the_bounds_is_not_clamped(tmp_path: Path) -> None:
    bounds = {"income": (0.0, 100.0)}
    inside = FileSource(_parquet(tmp_path / "inside.parquet", [1.0, 50.0, 99.0, 100.0]), "parquet")
    outside = FileSource(_parquet(tmp_path / "outside.parquet", [1.0, 50.0, 99.0, 1e9]), "parquet")  # last group
    negative = FileSource(_parquet(tmp_path / "negative.parquet", [-5.0, 1.0]), "parquet")
    assert engine.known_within(inside, bounds) == {"income"}
    assert engine.known_within(outside, bounds) == frozenset()
    assert engine.known_within(negative, bounds) == frozenset()
    csv_file = tmp_path / "inside.csv"
    csv_file.write_text("region,income\na,1\n")
    assert engine.known_within(FileSource(csv_file, "csv"), bounds) == frozenset()  # text: no statistics

    checked = dialect.check(
        "SELECT region, sum(income) FROM data GROUP BY region", {"region": "string", "income": "double"}
    )
    clamped = privacy.noised_query(checked.tree, bounds, engine.known_within(outside, bounds)).tree.sql()
    plain = privacy.noised_query(checked.tree, bounds, engine.known_within(inside, bounds)).tree.sql()
    assert "LEAST(GREATEST(income" in clamped and "LEAST" not in plain
    limits = ComputeLimits(seconds=10, memory="256MB")
    answer = engine.run(
        outside, engine.sql_of(privacy.noised_query(checked.tree, bounds).tree, outside.schema()), limits
    )
    assert answer.column("__tessera_sum_income").to_pylist() == [250.0]  # 1e9 clamped to 100 before summing
