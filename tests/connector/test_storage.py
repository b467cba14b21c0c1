"""Where a connector keeps its state: a SQLite file in its directory, or on the PostgreSQL pass of `make test`
(`TESSERA_TEST_DATABASE=postgresql`) a database of its own on the test server, the file never made."""

from pathlib import Path

import pytest

from tests.dataspace import Site, negotiate, publish, sql
from tests.postgres import on_postgres


async def test_each_connector_keeps_its_records_in_the_database_of_this_pass(
    provider: Site, consumer: Site, people_csv: Path
) -> None:
    offer = await publish(provider, people_csv)
    negotiation = await negotiate(consumer, provider, offer)
    assert negotiation["state"] == "FINALIZED"

    expected = "postgresql+asyncpg://" if on_postgres() else "sqlite+aiosqlite:///"
    assert provider.config.database_url.startswith(expected)
    assert provider.config.database_url != consumer.config.database_url
    assert (provider.config.directory / "connector.db").exists() is not on_postgres()
    for site in (provider, consumer):
        (counted,) = await sql(site.config, "SELECT count(*) AS n FROM audit_entry WHERE action LIKE 'negotiation.%'")
        assert counted["n"] > 0


@pytest.mark.parametrize(
    ("change", "field"),
    [({"title": "a\u0000b"}, "title"), ({"keywords": ["ok", "x\u0000"]}, "keywords.1"), ({"id": "\u0000"}, "id")],
)
async def test_text_holding_nul_is_a_400_naming_the_field(
    provider: Site, people_csv: Path, change: dict[str, object], field: str
) -> None:
    """PostgreSQL's text columns cannot hold U+0000: it was a 500 there, whatever the field."""
    body = {"title": "People", "format": "csv", "path": str(people_csv)} | change
    response = await provider.api.post("/assets", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["reasons"] == [f"{field}: must not hold U+0000 (NUL)"]
    assert (await provider.api.get("/assets")).json()["items"] == []


@pytest.mark.parametrize("path", ["/assets/a%00b", "/negotiations/%00", "/assets?state=%00"])
async def test_a_path_or_query_holding_nul_is_a_400(provider: Site, path: str) -> None:
    response = await provider.api.get(path)
    assert response.status_code == 400, response.text
    assert response.json()["detail"] == "the request's path or query holds U+0000 (%00)"
