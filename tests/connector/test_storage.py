"""Where a connector keeps its state: a SQLite file in its directory, or on the PostgreSQL pass of `make test`
(`TESSERA_TEST_DATABASE=postgresql`) a database of its own on the test server, the file never made."""

from pathlib import Path

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
