"""A whole data space on loopback ports: a broker and connectors, each a real server with its own database
(a SQLite file in its directory; a fresh PostgreSQL database with `TESSERA_TEST_DATABASE=postgresql`)."""

import asyncio
import csv
import json
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text

from broker.app import create_app as create_broker_app
from broker.authority import add_participant
from broker.config import BrokerConfig
from connector.app import create_app as create_connector_app
from connector.config import ConnectorConfig
from connector.selftest import Participant
from policies import LIBRARY
from tessera.identity import SigningKey, TokenClient, generate_key, public_jwk, save_private_key
from tessera.store import Database
from tests.postgres import database_url_for
from tests.utils import run_server, unused_port

RESEARCH_POLICY = (LIBRARY / "examples" / "research_limited.rego").read_text()
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
PEOPLE = [
    {"name": "Ada", "email": "ada@example.org", "country": "DE", "age": "36"},
    {"name": "Grace", "email": "grace@example.org", "country": "US", "age": "45"},
    {"name": "Linus", "email": "linus@example.org", "country": "FI", "age": "28"},
]


@dataclass
class Site(Participant):
    """A running connector and a management client for it."""

    config: ConnectorConfig
    api: httpx.AsyncClient
    server: Any = None

    async def token_for(self, audience: str) -> str:
        """An access token from the authority, as this connector would get it."""
        async with httpx.AsyncClient() as http:
            signer = SigningKey.load(self.config.key_path)
            tokens = TokenClient(http, signer=signer, participant_id=self.id, authority_url=self.config.broker_url)
            return await tokens.token_for(audience)

    async def post(self, path: str, body: dict[str, Any], expect: int = 201) -> dict[str, Any]:
        response = await self.api.post(path, json=body)
        assert response.status_code == expect, response.text
        resource: dict[str, Any] = response.json()
        return resource

    async def wait_for(self, path: str, *states: str, within: float = 10.0) -> dict[str, Any]:
        """Poll a management resource until its `state` is one of `states` (a list: until it has items)."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            body: dict[str, Any] = (await self.api.get(path)).json()
            if body.get("state") in states or ("present" in states and body.get("items")):
                return body
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{path} stayed {body.get('state')}, wanted {states}: {body}")
            await asyncio.sleep(0.02)


@dataclass
class Dataspace:
    root: Path
    stack: AsyncExitStack
    broker_config: BrokerConfig | None = None
    broker_url: str = ""
    sites: dict[str, Site] = field(default_factory=dict)

    async def start_broker(self) -> None:
        port = unused_port()
        directory = self.root / "broker"
        url = f"http://127.0.0.1:{port}"
        database_url = database_url_for(directory, broker=True)
        self.broker_config = BrokerConfig(directory=directory, url=url, port=port, database_url=database_url)
        self.broker_config.directory.mkdir(parents=True)
        save_private_key(generate_key(), self.broker_config.key_path)
        self.broker_url = await self.stack.enter_async_context(run_server(create_broker_app(self.broker_config), port))

    async def admit(
        self, name: str, *, region: str = "EU-DE", security_profile: str = "base", **claims: Any
    ) -> ConnectorConfig:
        """Create a connector identity and register it with the authority (the operator's step); `claims`
        are the other verified attributes (`jurisdiction`, `roles`, `industry`, `registry_type`, `registry_id`)."""
        assert self.broker_config is not None
        port = unused_port()
        directory = self.root / name
        directory.mkdir()
        config = ConnectorConfig(
            directory=directory,
            participant_id=f"urn:tessera:{name}",
            url=f"http://127.0.0.1:{port}",
            broker_url=self.broker_url,
            port=port,
            database_url=database_url_for(directory),
        )
        key = generate_key()
        save_private_key(key, config.key_path)
        config.save()
        db = await Database.open(self.broker_config.database_url)
        try:
            await add_participant(
                db,
                config.participant_id,
                jwk=public_jwk(key),
                org=name.title(),
                region=region,
                security_profile=security_profile,
                **claims,
            )
        finally:
            await db.close()
        return config

    async def start(self, config: ConnectorConfig) -> Site:
        site = Site(config, await self.stack.enter_async_context(management_client(config)))
        site.server = await self.stack.enter_async_context(_restartable(config))
        self.sites[config.participant_id] = site
        return site


@asynccontextmanager
async def management_client(config: ConnectorConfig) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {config.management_token}"}
    async with httpx.AsyncClient(base_url=config.url + "/api", headers=headers, timeout=10) as client:
        yield client


class _Server:
    """A connector server that a test can stop and start again on the same port and database."""

    def __init__(self, config: ConnectorConfig) -> None:
        self.config = config
        self._context: Any = None

    async def start(self) -> None:
        self._context = run_server(create_connector_app(self.config), self.config.port)
        await self._context.__aenter__()

    async def stop(self) -> None:
        if self._context is not None:
            await self._context.__aexit__(None, None, None)
            self._context = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()


@asynccontextmanager
async def _restartable(config: ConnectorConfig) -> AsyncIterator[_Server]:
    server = _Server(config)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@asynccontextmanager
async def dataspace(root: Path) -> AsyncIterator[Dataspace]:
    async with AsyncExitStack() as stack:
        space = Dataspace(root, stack)
        await space.start_broker()
        yield space


def write_people_csv(path: Path) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(PEOPLE[0]))
        writer.writeheader()
        writer.writerows(PEOPLE)
    return path


async def publish(
    provider: Site, data_file: Path, *, policy: str = RESEARCH_POLICY, access: str | None = None, **asset: Any
) -> dict[str, Any]:
    """Asset (with the fields in `asset`: labels, state …) + usage policy (+ access policy) + offer on the
    provider; returns the offer."""
    fmt = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".parquet": "parquet"}[data_file.suffix]
    created = await provider.post("/assets", {"title": "People", "format": fmt, "path": str(data_file)} | asset)
    usage = await provider.post("/policies", {"title": "research", "source": policy})
    body = {"asset_id": created["id"], "usage_policy_id": usage["id"]}
    if access:
        body["access_policy_id"] = (await provider.post("/policies", {"source": access}))["id"]
    return await provider.post("/offers", body)


async def negotiate(
    consumer: Site, provider: Site, offer: dict[str, Any], *, until: tuple[str, ...] = ("FINALIZED",)
) -> dict[str, Any]:
    started = await consumer.post(
        "/negotiations",
        {
            "provider_id": provider.id,
            "provider_url": provider.dsp_url,
            "offer_id": offer["id"],
            "target": offer["asset_id"],
        },
    )
    return await consumer.wait_for(f"/negotiations/{started['id']}", *until, "TERMINATED")


async def start_transfer(
    consumer: Site, agreement_id: str, *, until: tuple[str, ...] = ("STARTED",), **options: str
) -> dict[str, Any]:
    """Request a transfer (`options`: format, purpose …) and wait until it reaches `until` or is terminated."""
    started = await consumer.post("/transfers", {"agreement_id": agreement_id, **options})
    return await consumer.wait_for(f"/transfers/{started['id']}", *until, "TERMINATED")


async def sql(config: ConnectorConfig, statement: str, /, **params: Any) -> list[dict[str, Any]]:
    """Run one statement on a connector's own database, as its operator (or an intruder) could, on SQLite or
    PostgreSQL alike; the rows it returns, by column. JSON columns come back as their text (`json_value`)."""
    db = await Database.open(config.database_url)
    try:
        async with db.engine.begin() as connection:
            result = await connection.execute(text(statement), params)
            return [dict(row._mapping) for row in result] if result.returns_rows else []
    finally:
        await db.close()


def json_value(column: Any) -> Any:
    """A JSON column's value as `sql` read it: text to parse (a driver may have parsed it already)."""
    return json.loads(column) if isinstance(column, str) else column


def rows(response: httpx.Response) -> list[dict[str, str]]:
    return list(csv.DictReader(response.text.splitlines()))


def as_json(response: httpx.Response) -> Any:
    return json.loads(response.text)


async def tessera(*args: str) -> tuple[int, str, str]:
    """Run the `tessera` CLI without blocking the servers in this event loop: (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "tessera"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()
