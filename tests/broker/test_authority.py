"""The token endpoint, JWKS and participant lookup, through real HTTP."""

import asyncio
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import jwt
import pytest
from sqlmodel import select

from broker.app import create_app
from broker.authority import UsedAssertion, public_part
from tessera.errors import BadRequest
from tessera.identity import ACCESS_TOKEN_LIFETIME, JwksCache, TokenVerifier
from tests.broker.conftest import RunningBroker, broker_config, new_key
from tests.utils import run_server, unused_port


async def test_token_issued_for_a_valid_assertion_verifies_against_the_jwks(broker: RunningBroker) -> None:
    acme, globex = await broker.admit("acme"), await broker.admit("globex", region="US")

    token = await broker.token(acme, audience=globex.id)

    keys = JwksCache(broker.http, broker.url + "/.well-known/jwks.json")
    caller = await TokenVerifier(keys, issuer=broker.url, audience=globex.id).verify(token)
    assert (caller.participant_id, caller.org, caller.region, caller.security_profile) == (
        acme.id,
        "Acme",
        "EU",
        "base",
    )
    assert caller.claims["client_id"] == acme.id
    assert caller.claims["exp"] - caller.claims["iat"] == ACCESS_TOKEN_LIFETIME
    assert jwt.get_unverified_header(token)["typ"] == "at+jwt"


async def test_token_response_is_bearer_and_never_cached(broker: RunningBroker) -> None:
    acme = await broker.admit("acme")

    response = await broker.http.post("/token", data=broker.form(acme, broker.url))

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.json()["token_type"] == "Bearer"
    assert response.json()["expires_in"] == ACCESS_TOKEN_LIFETIME


async def test_assertion_audience_may_be_the_broker_url(broker: RunningBroker) -> None:
    acme = await broker.admit("acme")
    form = broker.form(acme, broker.url, client_assertion=broker.assertion(acme, aud=broker.url))

    assert (await broker.http.post("/token", data=form)).status_code == 200


async def test_assertion_of_an_unknown_participant_is_rejected(broker: RunningBroker) -> None:
    acme = await broker.admit("acme")
    stranger = type(acme)("urn:tessera:stranger", new_key())

    response = await broker.http.post("/token", data=broker.form(stranger, acme.id))

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


@pytest.mark.parametrize(
    ("case", "claims"),
    [
        ("wrong audience", {"aud": "http://elsewhere.example/token"}),
        ("expired", {"iat": int(time.time()) - 600, "exp": int(time.time()) - 300}),
        ("lives too long", {"exp": int(time.time()) + 3600}),
        ("iat in the future", {"iat": int(time.time()) + 600, "exp": int(time.time()) + 700}),
        ("no exp", {"exp": None}),
        ("no jti", {"jti": None}),
        ("sub differs from iss", {"sub": "urn:tessera:globex"}),
    ],
)
async def test_assertion_with_bad_claims_is_rejected(broker: RunningBroker, case: str, claims: dict[str, Any]) -> None:
    acme = await broker.admit("acme")
    form = broker.form(acme, broker.url, client_assertion=broker.assertion(acme, **claims))

    response = await broker.http.post("/token", data=form)

    assert response.status_code == 401, case
    assert response.json()["error"] == "invalid_client"


async def test_assertion_signed_by_another_key_is_rejected(broker: RunningBroker) -> None:
    acme = await broker.admit("acme")
    forged = broker.assertion(acme, key=new_key())

    response = await broker.http.post("/token", data=broker.form(acme, broker.url, client_assertion=forged))

    assert response.status_code == 401
    assert "signature" in response.json()["error_description"].lower()


@pytest.mark.parametrize("alg", ["none", "HS256"])
async def test_assertion_with_another_algorithm_is_rejected(broker: RunningBroker, alg: str) -> None:
    acme = await broker.admit("acme")
    claims = jwt.decode(broker.assertion(acme), options={"verify_signature": False})
    key = "shared-secret-of-32-bytes-at-least!" if alg == "HS256" else ""  # PyJWT reads "" as no key for "none"
    forged = jwt.encode(claims, key, algorithm=alg)

    response = await broker.http.post("/token", data=broker.form(acme, broker.url, client_assertion=forged))

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


async def test_replayed_assertion_is_rejected(broker: RunningBroker) -> None:
    acme = await broker.admit("acme")
    form = broker.form(acme, broker.url)

    first = await broker.http.post("/token", data=form)
    second = await broker.http.post("/token", data=form)

    assert first.status_code == 200
    assert second.status_code == 401
    assert "replay" in second.json()["error_description"]


async def test_replay_is_still_rejected_after_a_restart(broker: RunningBroker) -> None:
    acme = await broker.admit("acme")
    form = broker.form(acme, broker.url)
    assert (await broker.http.post("/token", data=form)).status_code == 200

    # A second broker process on the same directory: the spent jti lives in the database, not in memory.
    async with run_server(create_app(broker.config)) as url, httpx.AsyncClient(base_url=url) as http:
        response = await http.post("/token", data=form)

    assert response.status_code == 401


async def test_suspended_participant_gets_no_token(broker: RunningBroker) -> None:
    acme = await broker.admit("acme", suspended=True)

    response = await broker.http.post("/token", data=broker.form(acme, broker.url))

    assert response.status_code == 401
    assert "suspended" in response.json()["error_description"]


@pytest.mark.parametrize(
    ("fields", "status", "error"),
    [
        ({"grant_type": None}, 400, "invalid_request"),
        ({"audience": None}, 400, "invalid_request"),
        ({"client_assertion": None}, 401, "invalid_client"),
        ({"client_assertion_type": None}, 401, "invalid_client"),
        ({"client_assertion_type": "urn:example:other"}, 401, "invalid_client"),
        ({"grant_type": "password"}, 400, "unsupported_grant_type"),
        ({"client_id": "urn:tessera:globex"}, 401, "invalid_client"),
        ({"client_assertion": "not-a-jwt"}, 401, "invalid_client"),
        ({"audience": "urn:tessera:nobody"}, 400, "invalid_target"),
    ],
)
async def test_bad_token_request_gets_an_oauth_error(
    broker: RunningBroker, fields: dict[str, str | None], status: int, error: str
) -> None:
    acme = await broker.admit("acme")

    response = await broker.http.post("/token", data=broker.form(acme, broker.url, **fields))

    assert (response.status_code, response.json()["error"]) == (status, error)
    assert response.json()["error_description"]


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b'{"grant_type": "client_credentials"}', {"content-type": "application/json"}),
        (b"grant_type=a&grant_type=b", {"content-type": "application/x-www-form-urlencoded"}),
        (b"\xff\xfe=1", {"content-type": "application/x-www-form-urlencoded"}),
        (b"a=" + b"x" * 20_000, {"content-type": "application/x-www-form-urlencoded"}),
    ],
)
async def test_malformed_token_request_is_invalid_request(
    broker: RunningBroker, content: bytes, headers: dict[str, str]
) -> None:
    response = await broker.http.post("/token", content=content, headers=headers)

    assert (response.status_code, response.json()["error"]) == (400, "invalid_request")


async def test_jwks_holds_the_authority_key(broker: RunningBroker) -> None:
    response = await broker.http.get("/.well-known/jwks.json")

    (key,) = response.json()["keys"]
    assert key["kty"] == "EC" and key["alg"] == "ES256" and "d" not in key


async def test_participant_lookup_returns_the_public_key(broker: RunningBroker) -> None:
    acme = await broker.admit("acme")

    response = await broker.http.get("/participants/" + quote(acme.id, safe=""))

    assert response.status_code == 200
    assert response.json()["id"] == acme.id
    assert response.json()["jwk"] == acme.key.jwk
    assert (await broker.http.get(f"/participants/{acme.id}")).json()["org"] == "Acme"


async def test_unknown_participant_is_a_404_problem(broker: RunningBroker) -> None:
    response = await broker.http.get("/participants/urn%3Atessera%3Anobody")

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_public_part_drops_private_members() -> None:
    jwk = {**new_key().jwk, "d": "secret"}

    assert "d" not in public_part(jwk)
    with pytest.raises(BadRequest):
        public_part({"kty": "RSA", "n": "x", "e": "AQAB"})


async def test_restarted_broker_reuses_its_directory(tmp_path: Path) -> None:
    config = broker_config(tmp_path, unused_port())
    async with run_server(create_app(config)) as url, httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/health")).json()["status"] == "ok"


async def test_concurrent_replays_yield_exactly_one_token(broker: RunningBroker) -> None:
    acme = await broker.admit("acme")
    form = broker.form(acme, broker.url)

    responses = await asyncio.gather(*(broker.http.post("/token", data=form) for _ in range(5)))

    assert sorted(r.status_code for r in responses) == [200, 401, 401, 401, 401]


async def test_expired_replay_records_are_pruned(broker: RunningBroker) -> None:
    acme = await broker.admit("acme")
    async with broker.db.session() as session:
        session.add(UsedAssertion(issuer=acme.id, jti="old", expires_at=int(time.time()) - 10))
        await session.commit()

    assert (await broker.http.post("/token", data=broker.form(acme, broker.url))).status_code == 200

    async with broker.db.session() as session:
        assert len(list(await session.exec(select(UsedAssertion)))) == 1
        assert await session.get(UsedAssertion, (acme.id, "old")) is None
