"""Verified claims: checked on admission and update (`broker.claims`), recorded, carried by the next token.

The registry-id checks themselves are in tests/tessera/test_registry_ids.py; the CLI in test_cli.py.
"""

from typing import Any

import pytest

from broker.authority import add_participant, get_participant, list_participants, update_participant
from broker.events import since
from tessera.errors import BadRequest, NotFound, PeerError
from tessera.identity import JwksCache, TokenVerifier
from tests.broker.conftest import Member, RunningBroker, new_key

FULL = {
    "org": "Fuzhou Example Co., Ltd.",
    "region": "CN-east",
    "security_profile": "trust",
    "jurisdiction": "CN",
    "roles": ["researcher", "member"],
    "industry": "I64",
    "registry_type": "uscc",
    "registry_id": "91350100M000100Y43",
}


async def admit(broker: RunningBroker, name: str, **claims: Any) -> Member:
    member = Member(f"urn:tessera:{name}", new_key())
    await add_participant(broker.db, member.id, jwk=member.key.jwk, **{**FULL, **claims})
    return member


async def token_claims(broker: RunningBroker, member: Member) -> dict[str, Any]:
    """The claims of a fresh access token for `member`, as a receiver verifies it."""
    token = await broker.token(member, audience=broker.url)
    keys = JwksCache(broker.http, broker.url + "/.well-known/jwks.json")
    caller = await TokenVerifier(keys, issuer=broker.url, audience=broker.url).verify(token)
    return caller.to_policy_input()


async def test_every_claim_is_recorded_and_carried_by_the_token(broker: RunningBroker) -> None:
    acme = await admit(broker, "acme")

    caller = await token_claims(broker, acme)

    assert caller == {
        "sub": acme.id,
        "org": "Fuzhou Example Co., Ltd.",
        "region": "CN-east",
        "security_profile": "trust",
        "jurisdiction": "CN",
        "roles": ["researcher", "member"],
        "industry": "I64",
        "registry_id": {"type": "uscc", "value": "91350100M000100Y43"},
    }


@pytest.mark.parametrize(
    ("claims", "names"),
    [
        ({"security_profile": "trusted"}, "security_profile: 'trusted' is not one of base, trust, trust_plus"),
        ({"jurisdiction": "cn"}, "jurisdiction: 'cn' is not an ISO 3166-1 alpha-2 country code in upper case"),
        ({"jurisdiction": "EU"}, "jurisdiction: 'EU' is not an ISO 3166-1 alpha-2"),
        ({"registry_id": "91350100M000100Y44"}, "registry_id: check character (position 18) is '4', expected '3'"),
        ({"registry_type": "lei"}, "registry_id: an LEI has 20 characters"),
        ({"registry_type": "duns"}, "registry_type: 'duns' is not one of uscc, lei, other"),
        ({"registry_type": None}, "registry_type, registry_id: give both or neither"),
        ({"roles": "researcher"}, "roles: must be a list"),
        ({"roles": ["research team"]}, "roles: 'research team' not tokens"),
        ({"industry": "I 64"}, "industry: 'I 64' is not a code"),
        ({"org": " "}, "org: must be 1-256 printable characters"),
        ({"region": ""}, "region: must be 1-64 printable characters"),
    ],
)
async def test_a_bad_claim_is_refused_naming_field_and_allowed_values(
    broker: RunningBroker, claims: dict[str, Any], names: str
) -> None:
    with pytest.raises(BadRequest) as refused:
        await admit(broker, "acme", **claims)

    assert names in refused.value.detail
    assert refused.value.status_code == 400
    assert await list_participants(broker.db) == []  # nothing half-written


async def test_every_bad_field_is_named_at_once(broker: RunningBroker) -> None:
    with pytest.raises(BadRequest) as refused:
        await admit(broker, "acme", security_profile="gold", jurisdiction="XX", industry="")

    assert [reason.partition(":")[0] for reason in refused.value.reasons] == [
        "security_profile",
        "jurisdiction",
        "industry",
    ]


async def test_the_brokers_own_enumeration_of_security_profiles_decides(broker: RunningBroker) -> None:
    member = Member("urn:tessera:acme", new_key())
    profiles = ("bronze", "silver", "gold")
    with pytest.raises(BadRequest, match="'trust' is not one of bronze, silver, gold"):
        await add_participant(broker.db, member.id, jwk=member.key.jwk, **FULL, security_profiles=profiles)

    record = await add_participant(
        broker.db, member.id, jwk=member.key.jwk, **{**FULL, "security_profile": "gold"}, security_profiles=profiles
    )
    assert record.security_profile == "gold"


async def test_roles_are_kept_once_in_their_order(broker: RunningBroker) -> None:
    acme = await admit(broker, "acme", roles=["member", "researcher", "member"])

    assert (await get_participant(broker.db, acme.id)).roles == ["member", "researcher"]


async def test_an_update_takes_effect_in_the_next_token(broker: RunningBroker) -> None:
    acme = await admit(broker, "acme")
    before = await token_claims(broker, acme)

    await update_participant(
        broker.db,
        acme.id,
        {
            "security_profile": "trust_plus",
            "roles": ["auditor"],
            "registry_type": "lei",
            "registry_id": "529900T8BM49AURSDO55",
            "industry": None,
        },
    )
    after = await token_claims(broker, acme)

    assert before["security_profile"] == "trust" and after["security_profile"] == "trust_plus"
    assert after["roles"] == ["auditor"]
    assert after["registry_id"] == {"type": "lei", "value": "529900T8BM49AURSDO55"}
    assert after["industry"] is None  # cleared: the token no longer carries it
    assert after["jurisdiction"] == "CN"  # untouched
    (event,) = [e for e in await since(broker.db) if e.action == "participant.updated"]
    assert event.detail == {"changed": ["industry", "registry_id", "registry_type", "roles", "security_profile"]}


@pytest.mark.parametrize(
    ("changes", "names"),
    [
        ({"security_profile": "trusted"}, "security_profile: 'trusted' is not one of"),
        ({"org": None}, "org: required, cannot be cleared"),
        ({"registry_id": None}, "registry_type, registry_id: give both or neither"),
        ({"registry_id": "914403001922038217"}, "registry_id: check character"),
        ({"colour": "blue"}, "colour: not a participant attribute"),
        ({}, "nothing to update"),
    ],
)
async def test_a_bad_update_is_refused_and_changes_nothing(
    broker: RunningBroker, changes: dict[str, Any], names: str
) -> None:
    acme = await admit(broker, "acme")
    before = (await get_participant(broker.db, acme.id)).public()

    with pytest.raises(BadRequest) as refused:
        await update_participant(broker.db, acme.id, changes)

    assert names in refused.value.detail
    assert (await get_participant(broker.db, acme.id)).public() == before
    assert not [e for e in await since(broker.db) if e.action == "participant.updated"]


async def test_updating_an_unknown_participant_is_not_found(broker: RunningBroker) -> None:
    with pytest.raises(NotFound):
        await update_participant(broker.db, "urn:tessera:nobody", {"org": "Nobody"})


async def test_the_public_record_holds_exactly_the_token_claims(broker: RunningBroker) -> None:
    acme = await admit(broker, "acme", roles=[], industry=None)

    record = (await broker.http.get(f"/participants/{acme.id}")).json()
    token = await broker.token(acme, audience=broker.url)
    keys = JwksCache(broker.http, broker.url + "/.well-known/jwks.json")
    verified = (await TokenVerifier(keys, issuer=broker.url, audience=broker.url).verify(token)).claims

    assert record["claims"] == {name: verified[name] for name in record["claims"]}
    assert set(record["claims"]) == {"org", "region", "security_profile", "jurisdiction", "registry_id"}
    assert "roles" not in verified and "industry" not in verified


async def test_a_rotated_key_signs_from_now_on_and_the_old_one_no_longer(broker: RunningBroker) -> None:
    acme = await admit(broker, "acme")
    old_kid, rotated = acme.key.kid, Member(acme.id, new_key())

    record = await update_participant(broker.db, acme.id, {}, jwk=rotated.key.jwk)

    assert record.jwk["kid"] == rotated.key.kid != old_kid
    assert (await token_claims(broker, rotated))["sub"] == acme.id
    with pytest.raises(PeerError, match=r"401|invalid_client"):
        await broker.token(acme)  # a client assertion signed with the old key
    (event,) = [e for e in await since(broker.db) if e.action == "participant.updated"]
    assert event.detail == {"changed": ["jwk"], "previous_kid": old_kid, "kid": rotated.key.kid}


async def test_a_key_that_is_no_p256_jwk_is_refused_and_the_old_one_kept(broker: RunningBroker) -> None:
    acme = await admit(broker, "acme")

    with pytest.raises(BadRequest, match="EC P-256"):
        await update_participant(broker.db, acme.id, {}, jwk={"kty": "RSA", "n": "AQAB", "e": "AQAB"})

    assert (await get_participant(broker.db, acme.id)).jwk["kid"] == acme.key.kid
