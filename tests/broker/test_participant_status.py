"""The signed participant status: the broker's `GET /participant-status` and a connector's cache of it
(`tessera.participant_status`), against a real broker's keys. The whole path through two connectors is
tests/connector/test_revocation.py.
"""

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import jwt
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from broker.authority import set_suspended
from tessera.errors import NotEntitled, StatusUnavailable, TokenExpired, TokenRejected
from tessera.identity import JwksCache, SigningKey
from tessera.participant_status import (
    STATUS_MEDIA_TYPE,
    STATUS_PATH,
    STATUS_TYPE,
    ParticipantStatusCache,
    read_status,
)
from tests.broker.conftest import RunningBroker, new_key
from tests.utils import run_server


def authority_key(broker: RunningBroker) -> SigningKey:
    return SigningKey.load(broker.config.key_path)


def jwks(broker: RunningBroker) -> JwksCache:
    return JwksCache(broker.http, broker.url + "/.well-known/jwks.json")


def signed(key: SigningKey, issuer: str, *, suspended: list[str], iat: int, exp: int, kid: str | None = None) -> str:
    claims = {"iss": issuer, "iat": iat, "exp": exp, "suspended": suspended}
    return jwt.encode(claims, key.key, algorithm="ES256", headers={"kid": kid or key.kid, "typ": STATUS_TYPE})


async def test_the_broker_publishes_who_is_suspended_signed_by_the_authority(broker: RunningBroker) -> None:
    acme, globex = await broker.admit("acme"), await broker.admit("globex")
    await set_suspended(broker.db, acme.id, True)

    response = await broker.http.get(STATUS_PATH)
    status = await read_status(response.text, jwks(broker), issuer=broker.url)

    assert response.headers["content-type"] == STATUS_MEDIA_TYPE
    assert response.headers["cache-control"] == "no-store"
    assert status.suspended == {acme.id}
    assert globex.id not in status.suspended
    assert status.expires_at - status.issued_at == broker.config.participant_status_lifetime
    assert abs(status.issued_at - time.time()) < 5

    await set_suspended(broker.db, acme.id, False)
    resumed = await read_status((await broker.http.get(STATUS_PATH)).text, jwks(broker), issuer=broker.url)
    assert resumed.suspended == frozenset()


async def test_a_forged_document_is_refused(broker: RunningBroker) -> None:
    now = int(time.time())
    forger = new_key()
    with_our_kid = signed(forger, broker.url, suspended=[], iat=now, exp=now + 60, kid=authority_key(broker).kid)
    with_its_kid = signed(forger, broker.url, suspended=[], iat=now, exp=now + 60)

    with pytest.raises(TokenRejected, match="participant status rejected: Signature verification failed"):
        await read_status(with_our_kid, jwks(broker), issuer=broker.url)
    with pytest.raises(TokenRejected, match="unknown signing key"):
        await read_status(with_its_kid, jwks(broker), issuer=broker.url)


async def test_an_expired_document_is_refused(broker: RunningBroker) -> None:
    now = int(time.time())
    expired = signed(authority_key(broker), broker.url, suspended=[], iat=now - 120, exp=now - 60)

    with pytest.raises(TokenExpired, match="participant status expired"):
        await read_status(expired, jwks(broker), issuer=broker.url)


async def test_other_authority_tokens_are_not_status_documents(broker: RunningBroker) -> None:
    acme = await broker.admit("acme")
    access_token = await broker.token(acme)
    now = int(time.time())
    other_issuer = signed(authority_key(broker), "https://other.example", suspended=[], iat=now, exp=now + 60)
    no_list = authority_key(broker).sign_jwt(
        {"iss": broker.url, "iat": now, "exp": now + 60, "suspended": "urn:tessera:acme"}, typ=STATUS_TYPE
    )

    with pytest.raises(TokenRejected, match="type 'at\\+jwt' is not participant-status\\+jwt"):
        await read_status(access_token, jwks(broker), issuer=broker.url)
    with pytest.raises(TokenRejected, match="Invalid issuer"):
        await read_status(other_issuer, jwks(broker), issuer=broker.url)
    with pytest.raises(TokenRejected, match="must be a list"):
        await read_status(no_list, jwks(broker), issuer=broker.url)


# -- the cache, against a status endpoint the test controls -------------------------------------------------


@dataclass
class StatusServer:
    """Serves whatever document the test sets (None: answers 503), counting the requests."""

    document: str | None = None
    requests: int = 0
    delay: float = 0.0
    url: str = ""

    async def endpoint(self, _request: Request) -> Response:
        self.requests += 1
        await asyncio.sleep(self.delay)
        if self.document is None:
            return Response("down", status_code=503)
        return Response(self.document, media_type=STATUS_MEDIA_TYPE)


@pytest.fixture
async def server() -> AsyncIterator[StatusServer]:
    state = StatusServer()
    async with run_server(Starlette(routes=[Route(STATUS_PATH, state.endpoint)])) as url:
        state.url = url + STATUS_PATH
        yield state


def cache(broker: RunningBroker, server: StatusServer, *, refresh: float, grace: float) -> ParticipantStatusCache:
    return ParticipantStatusCache(
        broker.http, server.url, jwks(broker), issuer=broker.url, refresh=refresh, grace=grace
    )


def fresh(broker: RunningBroker, suspended: list[str], *, age: int = 0) -> str:
    """A genuine document, signed `age` seconds ago and valid for a minute from now."""
    now = int(time.time()) - age
    return signed(authority_key(broker), broker.url, suspended=suspended, iat=now, exp=now + 60 + age)


async def test_a_suspended_caller_is_refused_and_others_pass(broker: RunningBroker, server: StatusServer) -> None:
    server.document = fresh(broker, ["urn:tessera:acme"])
    status = cache(broker, server, refresh=5, grace=30)

    with pytest.raises(NotEntitled, match="participant urn:tessera:acme is suspended at the broker"):
        await status.require_active("urn:tessera:acme")
    await status.require_active("urn:tessera:globex")


async def test_concurrent_requests_share_one_fetch_per_refresh_period(
    broker: RunningBroker, server: StatusServer
) -> None:
    server.document, server.delay = fresh(broker, []), 0.2
    status = cache(broker, server, refresh=0.5, grace=30)

    await asyncio.gather(*(status.require_active(f"urn:tessera:p{n}") for n in range(50)))
    assert server.requests == 1

    await asyncio.sleep(0.6)
    await asyncio.gather(*(status.require_active(f"urn:tessera:p{n}") for n in range(50)))
    assert server.requests == 2


async def test_a_forged_document_fails_closed_after_the_grace_period(
    broker: RunningBroker, server: StatusServer
) -> None:
    server.document = fresh(broker, [])
    status = cache(broker, server, refresh=0.1, grace=0.6)
    await status.require_active("urn:tessera:globex")

    now = int(time.time())
    server.document = signed(new_key(), broker.url, suspended=[], iat=now, exp=now + 60, kid=authority_key(broker).kid)
    await asyncio.sleep(0.2)
    await status.require_active("urn:tessera:globex")  # within the grace period: the last verified document
    assert server.requests == 2

    await asyncio.sleep(0.6)
    with pytest.raises(StatusUnavailable, match="Signature verification failed"):
        await status.require_active("urn:tessera:globex")


async def test_an_unreachable_broker_fails_closed_and_recovery_reopens(
    broker: RunningBroker, server: StatusServer
) -> None:
    status = cache(broker, server, refresh=0.1, grace=0.3)
    with pytest.raises(StatusUnavailable, match="answered 503"):
        await status.require_active("urn:tessera:globex")  # never verified one: refuse from the start

    server.document = fresh(broker, [])
    await asyncio.sleep(0.15)
    await status.require_active("urn:tessera:globex")

    server.document = None
    await asyncio.sleep(0.4)
    with pytest.raises(StatusUnavailable) as refused:
        await status.require_active("urn:tessera:globex")
    assert refused.value.status_code == 503


async def test_a_stale_or_replayed_document_is_not_taken(broker: RunningBroker, server: StatusServer) -> None:
    server.document = fresh(broker, [], age=45)  # signed 45 s ago, not expired, but older than the grace period
    status = cache(broker, server, refresh=0.1, grace=30)
    with pytest.raises(StatusUnavailable, match="stale"):
        await status.require_active("urn:tessera:acme")

    older = fresh(broker, [], age=10)
    server.document = fresh(broker, ["urn:tessera:acme"])
    await asyncio.sleep(0.15)
    with pytest.raises(NotEntitled):
        await status.require_active("urn:tessera:acme")

    server.document = older  # an earlier document in which acme was not suspended, replayed
    await asyncio.sleep(0.15)
    with pytest.raises(NotEntitled):
        await status.require_active("urn:tessera:acme")
    assert server.requests == 3


async def test_the_refresh_period_must_fit_in_the_grace_period(broker: RunningBroker) -> None:
    with pytest.raises(ValueError, match="no longer than the grace period"):
        ParticipantStatusCache(broker.http, broker.url, jwks(broker), issuer=broker.url, refresh=10, grace=5)
