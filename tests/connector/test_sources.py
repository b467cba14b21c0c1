"""Assets read from backends (`connector/sources/http.py`, `connector/sources/sql.py`) through real exchanges:
an HTTP backend with an API key on a loopback port, SQLite files and a real PostgreSQL server
(`tests/postgres.py`). The backend's address and secret never show outside the provider's database."""

import csv
import io
import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from connector.assets import Asset
from connector.sources import SourceError, source_of
from connector.sources.sql import BATCH_ROWS
from connector.transfers import Transfer
from tessera.store import Database
from tests.dataspace import PEOPLE, Dataspace, Site, negotiate, start_transfer
from tests.postgres import PASSWORD, Postgres
from tests.utils import run_server, unused_port

KEY = "backend-key-93c1e7"
QUERY_SECRET = "qs-5d2b9a"
EXPORT = "/internal/people-export"
# Email masked, rows from the US dropped: the reference semantics of tessera/policy/obligations.py.
MASK_AND_FILTER = """package tessera.usage.backend
default allow := true
obligations contains {"kind": "mask", "fields": ["email"]}
obligations contains {"kind": "filter_rows", "field": "country", "op": "eq", "value": "US"}
"""
OPEN = "package tessera.usage.open\ndefault allow := true\n"
SHAPED = [{k: v for k, v in person.items() if k != "email"} for person in PEOPLE if person["country"] != "US"]
MANY = 30_000  # past one Arrow block (1 MiB) of JSON Lines, and past a SQL batch (BATCH_ROWS)


def rows(body: bytes) -> list[list[str]]:
    """CSV as its rows: the writer may quote values the file did not."""
    return list(csv.reader(io.StringIO(body.decode())))


def encoded(fmt: str, records: list[dict[str, Any]]) -> bytes:
    if fmt == "csv":
        lines = [",".join(records[0])] + [",".join(str(v) for v in record.values()) for record in records]
        return ("\n".join(lines) + "\n").encode()
    if fmt == "json":
        return json.dumps(records).encode()
    return "".join(json.dumps(record) + "\n" for record in records).encode()


def backend_app(state: dict[str, Any]) -> Starlette:
    """An internal API that wants its key; `state["fail"]` makes it answer 500."""

    async def export(request: Request) -> Response:
        if request.headers.get("x-api-key") != KEY or request.query_params.get("token") != QUERY_SECRET:
            return PlainTextResponse("who are you?", status_code=401)
        if state.get("fail"):
            return PlainTextResponse("backend on fire", status_code=500)
        return Response(encoded(request.path_params["fmt"], PEOPLE))

    async def many(request: Request) -> Response:
        lines = (json.dumps({"n": n, "name": f"person {n}"}) + "\n" for n in range(MANY))
        return StreamingResponse((line.encode() for line in lines), media_type="application/x-ndjson")

    async def away(request: Request) -> Response:
        return RedirectResponse(f"http://localhost:{unused_port()}/steal")

    async def garbage(request: Request) -> Response:
        return Response(b'[{"name": "Ada"}, {"name": ')

    return Starlette(
        routes=[
            Route(EXPORT + ".{fmt}", export),
            Route("/internal/many.jsonl", many),
            Route("/internal/away", away),
            Route("/internal/garbage.json", garbage),
        ]
    )


@pytest.fixture
def backend_state() -> dict[str, Any]:
    return {}


@pytest.fixture
async def backend(backend_state: dict[str, Any]) -> AsyncIterator[str]:
    async with run_server(backend_app(backend_state)) as url:
        yield url


def http_source(url: str, fmt: str = "csv", **headers: Any) -> dict[str, Any]:
    return {"kind": "http", "url": url, "format": fmt, "headers": headers or {"X-Api-Key": KEY}}


def export_url(backend: str, fmt: str = "csv") -> str:
    return f"{backend}{EXPORT}.{fmt}?token={QUERY_SECRET}"


async def offer_source(provider: Site, source: dict[str, Any], fmt: str, policy: str = MASK_AND_FILTER) -> dict:
    asset = await provider.post("/assets", {"title": "People", "format": fmt, "source": source})
    usage = await provider.post("/policies", {"title": "shaped", "source": policy})
    return await provider.post("/offers", {"asset_id": asset["id"], "usage_policy_id": usage["id"]})


async def pulled(consumer: Site, provider: Site, offer: dict[str, Any]) -> tuple[str, Any]:
    """Negotiate, start a transfer and pull once: (transfer id, the consumer's response)."""
    negotiation = await negotiate(consumer, provider, offer)
    transfer = await start_transfer(consumer, negotiation["agreement_id"])
    return transfer["id"], await consumer.api.get(f"/transfers/{transfer['id']}/data")


async def test_an_http_backend_is_pulled_through_a_full_exchange_masked_and_filtered(
    provider: Site, consumer: Site, backend: str
) -> None:
    offer = await offer_source(provider, http_source(export_url(backend)), "csv")
    _, response = await pulled(consumer, provider, offer)
    assert response.status_code == 200, response.text
    assert rows(response.content) == [["name", "country", "age"], ["Ada", "DE", "36"], ["Linus", "FI", "28"]]
    assert response.headers["content-type"].startswith("text/csv")


@pytest.mark.parametrize(("backend_format", "served"), [("csv", "jsonl"), ("json", "json"), ("jsonl", "csv")])
async def test_each_backend_format_is_read_and_served_in_the_assets_format(
    provider: Site, consumer: Site, backend: str, backend_format: str, served: str
) -> None:
    offer = await offer_source(provider, http_source(export_url(backend, backend_format), backend_format), served)
    _, response = await pulled(consumer, provider, offer)
    assert response.status_code == 200, response.text
    assert records_of(response.text, served) == SHAPED


def records_of(text: str, fmt: str) -> list[dict[str, Any]]:
    if fmt == "csv":
        return list(csv.DictReader(text.splitlines()))
    if fmt == "json":
        records: list[dict[str, Any]] = json.loads(text)
        return records
    return [json.loads(line) for line in text.splitlines()]


async def test_a_large_backend_body_streams_record_exact(provider: Site, consumer: Site, backend: str) -> None:
    offer = await offer_source(provider, http_source(f"{backend}/internal/many.jsonl", "jsonl"), "jsonl", OPEN)
    _, response = await pulled(consumer, provider, offer)
    assert response.status_code == 200, response.text
    records = [json.loads(line) for line in response.text.splitlines()]
    assert records == [{"n": n, "name": f"person {n}"} for n in range(MANY)]


async def test_the_backends_address_and_key_show_nowhere_but_in_the_providers_database(
    space: Dataspace, provider: Site, consumer: Site, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)  # at DEBUG, aiosqlite logs the values it stores (docs/dataplane.md)
    offer = await offer_source(provider, http_source(export_url(backend)), "csv")
    assert (await provider.api.put("/registration", json={"title": "Provider"})).status_code == 200
    transfer_id, response = await pulled(consumer, provider, offer)
    assert response.status_code == 200, response.text
    shown = {
        "asset view": (await provider.api.get(f"/assets/{offer['asset_id']}")).json(),
        "asset list": (await provider.api.get("/assets")).json(),
        "catalog": await consumer.post(
            "/catalog/request", {"provider_url": provider.dsp_url, "provider_id": provider.id}, 200
        ),
        "broker registration": (await space_client_get(space, f"/registrations/{provider.id}")),
        "data address": await data_address(consumer, transfer_id),
        "provider's transfers": (await provider.api.get("/transfers")).json(),
        "provider's audit": (await provider.api.get("/audit", params={"limit": 1000})).json(),
        "consumer's audit": (await consumer.api.get("/audit", params={"limit": 1000})).json(),
    }
    assert shown["asset view"]["source"] == {"kind": "http", "format": "csv"}
    assert shown["data address"]["endpoint"].startswith(provider.config.url)
    texts = {name: json.dumps(value) for name, value in shown.items()} | {"logs": caplog.text}
    backend_host = backend.removeprefix("http://")
    for name, text in texts.items():
        for secret in (KEY, QUERY_SECRET, EXPORT, backend_host):
            assert secret not in text, f"{secret} shows in the {name}"
    created = [e for e in shown["provider's audit"]["items"] if e["action"] == "asset.created"]
    assert created[0]["details"]["source"] == {"kind": "http", "format": "csv"}


async def data_address(consumer: Site, transfer_id: str) -> dict[str, Any]:
    """The DSP data address the provider sent, as the consumer keeps it."""
    db = await Database.open(consumer.config.database_url)
    try:
        async with db.session() as session:
            transfer = await session.get(Transfer, transfer_id)
    finally:
        await db.close()
    assert transfer is not None and transfer.data_address is not None
    return transfer.data_address


async def space_client_get(space: Dataspace, path: str) -> Any:
    async with httpx.AsyncClient(base_url=space.broker_url) as http:
        response = await http.get(path)
        assert response.status_code == 200, response.text
        return response.json()


async def test_a_backend_that_fails_at_use_is_a_502_that_names_no_address(
    provider: Site, consumer: Site, backend: str, backend_state: dict[str, Any]
) -> None:
    offer = await offer_source(provider, http_source(export_url(backend)), "csv")
    negotiation = await negotiate(consumer, provider, offer)
    transfer = await start_transfer(consumer, negotiation["agreement_id"])
    backend_state["fail"] = True
    failed = await consumer.api.get(f"/transfers/{transfer['id']}/data")
    assert failed.status_code == 502
    assert "the HTTP backend answered 500" in failed.json()["detail"]
    for secret in (KEY, QUERY_SECRET, EXPORT, backend.removeprefix("http://"), "fire"):
        assert secret not in failed.text
    # The use the source could not serve is given back, and the audit trail says why.
    (counter,) = [c for c in (await provider.api.get("/usage")).json()["items"]]
    assert counter["uses"] == 0
    audit = (await provider.api.get("/audit", params={"limit": 5})).json()["items"]
    returned = [e for e in audit if e["action"] == "usage.returned"]
    assert returned and "answered 500" in returned[0]["details"]["reason"]
    backend_state["fail"] = False
    assert (await consumer.api.get(f"/transfers/{transfer['id']}/data")).status_code == 200
    (counter,) = [c for c in (await provider.api.get("/usage")).json()["items"]]
    assert counter["uses"] == 1


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        ("down", "could not be reached (ConnectError)"),
        ("/internal/away", "redirected to another host"),
        ("/internal/garbage.json", "not valid json"),
        (EXPORT + ".csv", "answered 401"),  # the key is wrong
    ],
)
async def test_a_backend_that_cannot_be_read_at_creation_is_a_400_that_names_no_address(
    provider: Site, backend: str, where: str, reason: str
) -> None:
    url = f"http://127.0.0.1:{unused_port()}{EXPORT}.csv" if where == "down" else backend + where
    fmt = "json" if where.endswith(".json") else "csv"
    body = {"title": "People", "format": "csv", "source": http_source(url, fmt, **{"X-Api-Key": "wrong-" + KEY})}
    response = await provider.api.post("/assets", json=body)
    assert response.status_code == 400, response.text
    assert reason in response.json()["detail"]
    for secret in (KEY, EXPORT, backend.removeprefix("http://"), url):
        assert secret not in response.text
    assert (await provider.api.get("/assets")).json()["items"] == []


async def test_a_header_secret_can_come_from_the_providers_environment(
    provider: Site, consumer: Site, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PEOPLE_API_KEY", KEY)
    source = http_source(export_url(backend), **{"X-Api-Key": {"env": "PEOPLE_API_KEY"}})
    offer = await offer_source(provider, source, "csv")
    monkeypatch.setenv("PEOPLE_API_KEY", "rotated")  # read at each use: the backend now refuses
    transfer_id, response = await pulled(consumer, provider, offer)
    assert response.status_code == 502 and "answered 401" in response.text
    monkeypatch.setenv("PEOPLE_API_KEY", KEY)
    again = await consumer.api.get(f"/transfers/{transfer_id}/data")
    assert rows(again.content) == [["name", "country", "age"], ["Ada", "DE", "36"], ["Linus", "FI", "28"]]


# -- SQL -------------------------------------------------------------------------------------------------


def people_db(path: Path, extra: int = 0) -> Path:
    with sqlite3.connect(path, timeout=30) as db:
        db.execute("CREATE TABLE people (id INTEGER, name TEXT, email TEXT, country TEXT, score REAL)")
        rows = [(n + 1, p["name"], p["email"], p["country"], n + 0.5) for n, p in enumerate(PEOPLE)]
        rows += [(n, f"person {n}", f"p{n}@example.org", "DE", 1.0) for n in range(10, 10 + extra)]
        db.executemany("INSERT INTO people VALUES (?, ?, ?, ?, ?)", rows)
    db.close()
    return path


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


async def test_a_sqlite_table_is_pulled_with_its_types_masked_and_filtered(
    provider: Site, consumer: Site, tmp_path: Path
) -> None:
    db = people_db(tmp_path / "people.sqlite")
    offer = await offer_source(provider, {"kind": "sql", "url": sqlite_url(db), "table": "people"}, "jsonl")
    _, response = await pulled(consumer, provider, offer)
    assert response.status_code == 200, response.text
    assert [json.loads(line) for line in response.text.splitlines()] == [
        {"id": 1, "name": "Ada", "country": "DE", "score": 0.5},
        {"id": 3, "name": "Linus", "country": "FI", "score": 2.5},
    ]


async def test_a_named_sqlite_query_is_pulled_as_csv(provider: Site, consumer: Site, tmp_path: Path) -> None:
    db = people_db(tmp_path / "people.sqlite")
    query = "SELECT name, country, id * 10 AS rank FROM people WHERE id > 1 ORDER BY id"
    offer = await offer_source(provider, {"kind": "sql", "url": sqlite_url(db), "query": query}, "csv", OPEN)
    _, response = await pulled(consumer, provider, offer)
    assert rows(response.content) == [["name", "country", "rank"], ["Grace", "US", "20"], ["Linus", "FI", "30"]]


def test_a_sql_source_streams_in_batches_of_bounded_size(tmp_path: Path) -> None:
    db = people_db(tmp_path / "people.sqlite", extra=2 * BATCH_ROWS + 5)
    asset = Asset(id="a", title="t", format="jsonl", source={"kind": "sql", "url": sqlite_url(db), "table": "people"})
    sizes = [batch.num_rows for batch in source_of(asset).batches()]
    assert sizes == [BATCH_ROWS, BATCH_ROWS, 8]


async def test_a_sqlite_table_whose_columns_changed_since_the_offer_is_refused(
    provider: Site, consumer: Site, tmp_path: Path
) -> None:
    db = people_db(tmp_path / "people.sqlite")
    offer = await offer_source(provider, {"kind": "sql", "url": sqlite_url(db), "table": "people"}, "jsonl", OPEN)
    with sqlite3.connect(db, timeout=30) as connection:
        connection.execute("ALTER TABLE people ADD COLUMN salary INTEGER")
    connection.close()
    _, response = await pulled(consumer, provider, offer)
    assert response.status_code == 409, response.text
    assert "columns changed since the asset was offered" in response.text and "salary INTEGER" in response.text


async def test_a_postgresql_table_is_pulled_from_a_real_server(
    provider: Site, consumer: Site, postgres: Postgres
) -> None:
    table = fresh_table(postgres)
    offer = await offer_source(provider, {"kind": "sql", "url": postgres.url, "table": f"public.{table}"}, "jsonl")
    _, response = await pulled(consumer, provider, offer)
    assert response.status_code == 200, response.text
    records = [json.loads(line) for line in response.text.splitlines()]
    assert records[0] == {
        "id": 1,
        "name": "Ada",
        "country": "DE",
        "balance": "12.50",
        "active": True,
        "seen": "2024-05-01T10:00:00+00:00",
    }
    assert len(records) == 1 + MANY and records[-1]["name"] == f"person {MANY - 1}"  # the US row dropped
    view = (await provider.api.get(f"/assets/{offer['asset_id']}")).json()
    assert view["source"] == {"kind": "sql"}
    audit = (await provider.api.get("/audit", params={"limit": 1000})).text
    assert PASSWORD not in json.dumps(view) and PASSWORD not in audit and postgres.url not in audit


async def test_a_postgresql_table_whose_columns_changed_is_refused_and_a_wrong_password_names_none(
    provider: Site, consumer: Site, postgres: Postgres
) -> None:
    table = fresh_table(postgres, rows=0)
    offer = await offer_source(provider, {"kind": "sql", "url": postgres.url, "table": table}, "jsonl", OPEN)
    with psycopg.connect(postgres.url, autocommit=True) as connection:
        connection.execute(f"ALTER TABLE {table} ALTER COLUMN balance TYPE text")
    _, response = await pulled(consumer, provider, offer)
    assert response.status_code == 409, response.text
    assert "balance numeric" in response.text and "balance text" in response.text
    wrong = postgres.url.replace(PASSWORD, "not-" + PASSWORD)
    refused = await provider.api.post("/assets", json={"title": "x", "format": "csv", "source": sql(wrong, table)})
    assert refused.status_code == 400 and "could not be reached" in refused.json()["detail"]
    assert PASSWORD not in refused.text and f"127.0.0.1:{postgres.port}" not in refused.text


def sql(url: str, table: str) -> dict[str, Any]:
    return {"kind": "sql", "url": url, "table": table}


_tables = iter(range(1_000_000))


def fresh_table(postgres: Postgres, rows: int = MANY) -> str:
    """A new table of people (one from the US) and `rows` more, in the session's server."""
    name = f"people_{next(_tables)}"
    with psycopg.connect(postgres.url, autocommit=True) as connection:
        connection.execute(
            f"CREATE TABLE {name} (id int, name text, email text, country text, balance numeric(10, 2),"
            " active boolean, seen timestamptz)"
        )
        connection.execute(
            f"INSERT INTO {name} VALUES (1, 'Ada', 'ada@example.org', 'DE', 12.5, true, '2024-05-01 10:00Z'),"
            " (2, 'Grace', 'grace@example.org', 'US', 3, false, NULL)"
        )
        connection.execute(
            f"INSERT INTO {name} SELECT n + 3, 'person ' || n, 'p@example.org', 'FI', n, true, NULL"
            " FROM generate_series(0, %s) AS n",
            (rows - 1,),
        )
    return name


def test_a_source_error_never_quotes_the_url_it_failed_on(tmp_path: Path) -> None:
    missing = tmp_path / "secret-name-1d4.sqlite"
    asset = Asset(id="a", title="t", format="csv", source={"kind": "sql", "url": sqlite_url(missing), "table": "t"})
    with pytest.raises(SourceError) as raised:
        list(source_of(asset).batches())
    assert "secret-name-1d4" not in raised.value.detail


# -- bad specs -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "field"),
    [
        ({"kind": "ftp", "url": "ftp://x"}, "source"),
        ({"kind": "http", "url": "ftp://example.org/x", "format": "csv"}, "source.http.url"),
        ({"kind": "http", "url": "http://example.org/x", "format": "xml"}, "source.http.format"),
        ({"kind": "http", "format": "csv"}, "source.http.url"),
        ({"kind": "http", "url": "http://e.org/x", "format": "csv", "headers": {"X Key": "v"}}, "source.http.headers"),
        ({"kind": "http", "url": "http://e.org/x", "format": "csv", "headers": {"K": "a\r\nb"}}, "source.http.headers"),
        ({"kind": "http", "url": "http://e.org/x", "format": "csv", "headers": {"Host": "e"}}, "source.http.headers"),
        ({"kind": "http", "url": "http://e.org/x", "format": "csv", "headers": {"K": {"env": "1X"}}}, "source.http"),
        ({"kind": "http", "url": "http://e.org/x", "format": "csv", "extra": 1}, "source.http.extra"),
        ({"kind": "sql", "url": "mysql://u:p@h/db", "table": "t"}, "source.sql.url"),
        ({"kind": "sql", "url": "sqlite:///relative.db", "table": "t"}, "source.sql.url"),
        ({"kind": "sql", "url": "sqlite:////db.sqlite", "table": "t", "query": "SELECT 1"}, "source.sql"),
        ({"kind": "sql", "url": "sqlite:////db.sqlite"}, "source.sql"),
        ({"kind": "sql", "url": "sqlite:////db.sqlite", "table": "a.b.c"}, "source.sql.table"),
        ({"kind": "sql", "url": "sqlite:////db.sqlite", "query": "SELECT '\x00'"}, "source.sql.query"),
        ({"kind": "sql", "url": "sqlite:////db.sqlite", "table": "t", "columns": []}, "source.sql.columns"),
        ("http://example.org/x", "source"),
    ],
)
async def test_a_bad_source_spec_is_a_400_naming_the_field(provider: Site, source: Any, field: str) -> None:
    response = await provider.api.post("/assets", json={"title": "People", "format": "csv", "source": source})
    assert response.status_code == 400, response.text
    assert any(reason.startswith(field) for reason in response.json()["reasons"]), response.json()["reasons"]


async def test_a_source_and_a_path_together_are_a_400(provider: Site, people_csv: Path, tmp_path: Path) -> None:
    body = {"title": "People", "format": "csv", "path": str(people_csv), "source": sql(sqlite_url(tmp_path), "t")}
    response = await provider.api.post("/assets", json=body)
    assert response.status_code == 400 and "give one of path" in response.text


async def test_a_database_that_cannot_be_read_at_creation_is_a_400(provider: Site, tmp_path: Path) -> None:
    db = people_db(tmp_path / "people.sqlite")
    for source, reason in [
        (sql(sqlite_url(tmp_path / "missing.sqlite"), "people"), "could not be opened"),
        (sql(sqlite_url(db), "nobody"), "no such table: nobody"),
        ({"kind": "sql", "url": sqlite_url(db), "query": "SELEKT 1"}, "syntax error"),
    ]:
        response = await provider.api.post("/assets", json={"title": "People", "format": "csv", "source": source})
        assert response.status_code == 400 and reason in response.json()["detail"], response.text
