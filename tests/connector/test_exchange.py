"""A full exchange between two real connectors: catalog, negotiation, agreement, transfer, usage decisions."""

from pathlib import Path

import httpx
import jwt

from connector.agreements import usage_policy_ref
from tessera.crypto import verify_document
from tessera.identity import canonical_json
from tests.dataspace import Dataspace, Site, negotiate, publish, rows, start_transfer
from tests.dsp_schemas import validate_message


async def test_catalog_lists_the_offer_as_valid_dsp(provider: Site, consumer: Site, people_csv: Path) -> None:
    offer = await publish(provider, people_csv)
    catalog = await consumer.post(
        "/catalog/request", {"provider_url": provider.dsp_url, "provider_id": provider.id}, 200
    )
    assert validate_message(catalog) == []
    assert catalog["participantId"] == provider.id
    (dataset,) = catalog["dataset"]
    assert dataset["@id"] == offer["asset_id"]
    assert [o["@id"] for o in dataset["hasPolicy"]] == [offer["id"]]


async def test_negotiation_yields_an_agreement_signed_by_both(
    space: Dataspace, provider: Site, consumer: Site, people_csv: Path
) -> None:
    offer = await publish(provider, people_csv)
    negotiation = await negotiate(consumer, provider, offer)
    assert negotiation["state"] == "FINALIZED"
    agreement_id = negotiation["agreement_id"]
    ours = (await consumer.api.get(f"/agreements/{agreement_id}")).json()
    theirs = (await provider.api.get(f"/agreements/{agreement_id}")).json()
    assert ours["agreement"] == theirs["agreement"]
    document = ours["agreement"]
    assert (
        validate_message(
            {
                "@context": ["https://w3id.org/dspace/2025/1/context.jsonld"],
                "@type": "ContractAgreementMessage",
                "providerPid": "p",
                "consumerPid": "c",
                "agreement": document,
            }
        )
        == []
    )
    # Both signatures cover exactly this agreement, and it binds the uploaded policy's hash.
    async with httpx.AsyncClient() as http:
        provider_jwk = (await http.get(f"{space.broker_url}/participants/{provider.id}")).json()["jwk"]
    assert canonical_json(verify_document(ours["provider_signature"], provider_jwk)) == canonical_json(document)
    consumer_key = jwt.get_unverified_header(ours["consumer_signature"])["kid"]
    assert consumer_key != jwt.get_unverified_header(ours["provider_signature"])["kid"]
    policy = (await provider.api.get(f"/policies/{offer['usage_policy_id']}")).json()
    assert usage_policy_ref(document) == (policy["id"], policy["hash"])


async def test_pull_is_masked_counted_and_denied_with_reasons(provider: Site, consumer: Site, people_csv: Path) -> None:
    offer = await publish(provider, people_csv)
    negotiation = await negotiate(consumer, provider, offer)
    transfer = await start_transfer(consumer, negotiation["agreement_id"])
    assert transfer["state"] == "STARTED"
    data = f"/transfers/{transfer['id']}/data"

    first = await consumer.api.get(data, params={"purpose": "research"})
    assert first.status_code == 200, first.text
    assert [r["name"] for r in rows(first)] == ["Ada", "Grace", "Linus"]
    assert all("email" not in r for r in rows(first))

    wrong = await consumer.api.get(data, params={"purpose": "marketing"})
    assert wrong.status_code == 403
    assert wrong.headers["content-type"] == "application/problem+json"
    assert any("marketing" in r and "not allowed" in r for r in wrong.json()["reasons"])

    for _ in range(2):
        assert (await consumer.api.get(data, params={"purpose": "research"})).status_code == 200
    fourth = await consumer.api.get(data, params={"purpose": "research"})
    assert fourth.status_code == 403
    assert "use limit reached: 3 of 3 uses consumed" in fourth.json()["reasons"]

    (usage,) = (await provider.api.get("/usage")).json()["items"]
    assert usage["agreement_id"] == negotiation["agreement_id"]
    assert (usage["uses"], usage["denials"]) == (3, 2)
    assert usage["bytes"] == 3 * len(first.content)  # metered: what was sent, after masking


async def test_access_policy_refusal_terminates_with_the_reason(
    provider: Site, consumer: Site, people_csv: Path
) -> None:
    access = """package tessera.access.germany
default allow := false
allow if input.caller.region == "EU-DE"
deny contains msg if {
    input.caller.region != "EU-DE"
    msg := sprintf("region %s is not admitted", [input.caller.region])
}
"""
    offer = await publish(provider, people_csv, access=access)
    catalog = await consumer.post(
        "/catalog/request", {"provider_url": provider.dsp_url, "provider_id": provider.id}, 200
    )
    assert "dataset" not in catalog  # the offer is invisible to a consumer in EU-FR
    negotiation = await negotiate(consumer, provider, offer)
    assert negotiation["state"] == "TERMINATED"
    assert negotiation["reasons"] == ["region EU-FR is not admitted"]


async def test_provider_restart_mid_exchange_keeps_the_agreement(
    provider: Site, consumer: Site, people_csv: Path
) -> None:
    offer = await publish(provider, people_csv)
    negotiation = await negotiate(consumer, provider, offer)
    await provider.server.restart()
    agreement = (await provider.api.get(f"/agreements/{negotiation['agreement_id']}")).json()
    assert agreement["consumer_id"] == consumer.id
    transfer = await start_transfer(consumer, negotiation["agreement_id"])
    await provider.server.restart()
    pulled = await consumer.api.get(f"/transfers/{transfer['id']}/data", params={"purpose": "research"})
    assert pulled.status_code == 200
    assert len(rows(pulled)) == 3


async def test_unchanged_catalog_answers_304_to_revalidation(provider: Site, consumer: Site, people_csv: Path) -> None:
    await publish(provider, people_csv)
    token = await consumer.token_for(provider.id)
    body = {"@context": ["https://w3id.org/dspace/2025/1/context.jsonld"], "@type": "CatalogRequestMessage"}
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http:
        first = await http.post(provider.dsp_url + "/catalog/request", json=body)
        etag = first.headers["etag"]
        again = await http.post(provider.dsp_url + "/catalog/request", json=body, headers={"If-None-Match": etag})
        assert again.status_code == 304
        await publish(provider, people_csv)
        changed = await http.post(provider.dsp_url + "/catalog/request", json=body, headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
