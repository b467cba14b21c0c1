"""Readiness (`/ready`, the orchestrator's probe): ready while the database answers, 503 once it does not,
and the answer names nothing of the database (the probe is public; the reason goes to the log)."""

import dataclasses

import httpx
import psycopg
from sqlalchemy.engine.url import make_url

from tests.dataspace import Dataspace
from tests.postgres import PASSWORD, Postgres


async def test_ready_answers_while_the_database_does_and_names_nothing_when_it_stops(
    space: Dataspace, postgres: Postgres
) -> None:
    url = postgres.create_database()
    config = dataclasses.replace(await space.admit("provider"), database_url=url)
    site = await space.start(config)
    async with httpx.AsyncClient(base_url=site.config.url) as http:
        assert (await http.get("/ready")).json() == {"status": "ok"}

        with psycopg.connect(postgres.url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{make_url(url).database}" WITH (FORCE)')
        down = await http.get("/ready")
        assert (await http.get("/health")).status_code == 200  # alive: the orchestrator need not restart it

    assert down.status_code == 503
    assert down.json() == {"status": "unavailable"}
    assert PASSWORD not in down.text and "127.0.0.1" not in down.text
