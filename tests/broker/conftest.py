"""A real broker on a loopback port, with helpers to admit participants and sign client assertions.

The `broker` fixture runs without its crawler: the registrations here name endpoints nobody serves, and
the crawler would (rightly) mark them OFFLINE. `tests/broker/test_crawler.py` crawls real connectors.
"""

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from broker.app import create_app
from broker.authority import add_participant, set_suspended
from broker.config import BrokerConfig
from tessera.identity import CLIENT_ASSERTION_TYPE, SigningKey, TokenClient, generate_key, public_jwk, save_private_key
from tessera.store import Database
from tests.postgres import database_url_for
from tests.utils import run_server, unused_port


def new_key() -> SigningKey:
    key = generate_key()
    return SigningKey(key, public_jwk(key)["kid"])


@dataclass
class Member:
    """A participant the test admitted, with its private key."""

    id: str
    key: SigningKey


@dataclass
class RunningBroker:
    config: BrokerConfig
    url: str
    http: httpx.AsyncClient
    db: Database
    members: dict[str, Member] = field(default_factory=dict)

    async def admit(self, name: str, *, region: str = "EU", suspended: bool = False) -> Member:
        member = Member(f"urn:tessera:{name}", new_key())
        await add_participant(
            self.db, member.id, jwk=member.key.jwk, org=name.title(), region=region, security_profile="base"
        )
        if suspended:
            await set_suspended(self.db, member.id, True)
        return member

    def assertion(self, member: Member, *, key: SigningKey | None = None, **claims: Any) -> str:
        now = int(time.time())
        defaults = {"iss": member.id, "sub": member.id, "aud": self.url + "/token", "iat": now, "exp": now + 60}
        body = {**defaults, "jti": str(uuid.uuid4()), **claims}
        return (key or member.key).sign_jwt({k: v for k, v in body.items() if v is not None})

    def form(self, member: Member, audience: str, /, **fields: str | None) -> dict[str, str]:
        defaults = {
            "grant_type": "client_credentials",
            "client_id": member.id,
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": self.assertion(member),
            "audience": audience,
        }
        return {k: v for k, v in {**defaults, **fields}.items() if v is not None}

    async def token(self, member: Member, audience: str | None = None) -> str:
        tokens = TokenClient(self.http, signer=member.key, participant_id=member.id, authority_url=self.url)
        return await tokens.token_for(audience or self.url)


def broker_config(directory: Any, port: int) -> BrokerConfig:
    url = f"http://127.0.0.1:{port}"
    config = BrokerConfig(
        directory=directory, url=url, port=port, database_url=database_url_for(directory, broker=True)
    )
    config.directory.mkdir(parents=True, exist_ok=True)
    if not config.key_path.exists():
        save_private_key(generate_key(), config.key_path)
    return config


@pytest.fixture
async def broker(tmp_path: Any) -> AsyncIterator[RunningBroker]:
    port = unused_port()
    config = broker_config(tmp_path / "broker", port)
    db = await Database.open(config.database_url)
    try:
        async with (
            run_server(create_app(config, crawl=False), port=port) as url,
            httpx.AsyncClient(base_url=url) as http,
        ):
            yield RunningBroker(config, url, http, db)
    finally:
        await db.close()
