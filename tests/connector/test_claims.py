"""Verified claims reach every decision exactly as the access token proved them: the catalog's access
decision, the data plane's use decision (claims captured at transfer start, renewed with each data-token
refresh), and the explain/simulate answers. Admission checks are in tests/broker/test_claims.py.
"""

from pathlib import Path
from typing import Any

import httpx

from tests.dataspace import Dataspace, Site, negotiate, publish, start_transfer, tessera

CLAIMS: dict[str, Any] = {
    "security_profile": "trust",
    "jurisdiction": "FR",
    "roles": ["researcher", "member"],
    "industry": "J62.01",
    "registry_type": "lei",
    "registry_id": "529900T8BM49AURSDO55",
}
CALLER = {
    "sub": "urn:tessera:consumer",
    "org": "Consumer",
    "region": "EU-FR",
    "security_profile": "trust",
    "jurisdiction": "FR",
    "roles": ["researcher", "member"],
    "industry": "J62.01",
    "registry_id": {"type": "lei", "value": "529900T8BM49AURSDO55"},
}
TRUST_PLUS_ONLY = """package tessera.usage.trust_plus

default allow := false

allow if input.caller.security_profile == "trust_plus"

deny contains msg if {
	not allow
	msg := sprintf("security profile %v is not trust_plus", [input.caller.security_profile])
}
"""
FRENCH_ACCESS = 'package tessera.access.fr\ndefault allow := false\nallow if input.caller.jurisdiction == "FR"\n'


async def consumer_with_claims(space: Dataspace) -> Site:
    return await space.start(await space.admit("consumer", region="EU-FR", **CLAIMS))


async def test_the_policy_input_is_exactly_what_the_token_proved(
    space: Dataspace, provider: Site, people_csv: Path
) -> None:
    consumer = await consumer_with_claims(space)
    offer = await publish(provider, people_csv, policy=TRUST_PLUS_ONLY, access=FRENCH_ACCESS)
    agreement = (await negotiate(consumer, provider, offer))["agreement_id"]  # the access policy read "FR"
    await start_transfer(consumer, agreement)

    use = await provider.post("/explain/use", {"agreement_id": agreement, "purpose": "research"}, 200)
    seen = await provider.post("/explain/offer", {"participant_id": consumer.id, "offer_id": offer["id"]}, 200)

    assert use["input"]["caller"] == CALLER  # captured from the access token at transfer start
    assert seen["participant"] == CALLER  # simulated from the authority's record of what its tokens carry
    assert seen["allow"] is True
    # A participant admitted without roles or jurisdiction: roles is empty, jurisdiction null.
    bare = await provider.post("/explain/offer", {"participant_id": provider.id, "offer_id": offer["id"]}, 200)
    assert (bare["participant"]["roles"], bare["participant"]["jurisdiction"]) == ([], None)


async def test_a_claim_updated_at_the_broker_decides_from_the_next_token_on(
    space: Dataspace, provider: Site, people_csv: Path
) -> None:
    consumer = await consumer_with_claims(space)
    offer = await publish(provider, people_csv, policy=TRUST_PLUS_ONLY)
    transfer = await start_transfer(consumer, (await negotiate(consumer, provider, offer))["agreement_id"])
    data = f"/transfers/{transfer['id']}/data"
    denied = await consumer.api.get(data, params={"purpose": "research"})
    assert denied.status_code == 403
    assert denied.json()["reasons"] == ["security profile trust is not trust_plus"]

    assert space.broker_config is not None
    space.broker_config.save()
    broker_dir = str(space.broker_config.directory)
    code, _, err = await tessera(
        "participant", "update", consumer.id, "--broker-dir", broker_dir, "--security-profile", "trust_plus"
    )
    assert code == 0, err
    # The running transfer decides on the token that started it until the consumer brings a newer one:
    assert (await consumer.api.get(data, params={"purpose": "research"})).status_code == 403
    fresh = {"Authorization": f"Bearer {await consumer.token_for(provider.id)}"}
    async with httpx.AsyncClient(base_url=provider.config.url, headers=fresh) as peer:
        assert (await peer.post(f"/data/{transfer['provider_pid']}/token")).status_code == 200

    assert (await consumer.api.get(data, params={"purpose": "research"})).status_code == 200
