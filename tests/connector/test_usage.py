"""Usage control through real exchanges: pattern-built policies in the catalog as ODRL, explanations without side
effects, fail-closed obligations, and delete-after carried out on the consumer's copy and reported back."""

import asyncio
from pathlib import Path

import anyio

from tests.dataspace import Site, negotiate, start_transfer
from tests.dsp_schemas import validate_message

PATTERNS = [
    {"name": "purpose", "params": {"allowed_purposes": ["research"]}},
    {"name": "max_uses", "params": {"max_uses": 2}},
    {"name": "masked_fields", "params": {"masked_fields": ["email"]}},
]


async def publish_patterns(provider: Site, data: Path, patterns: list[dict], **offer: object) -> dict:
    asset = await provider.post("/assets", {"title": "People", "format": "csv", "path": str(data)})
    policy = await provider.post("/policies", {"title": "from patterns", "patterns": patterns})
    return await provider.post("/offers", {"asset_id": asset["id"], "usage_policy_id": policy["id"], **offer})


async def test_pattern_policy_is_offered_as_odrl_in_a_valid_catalog(
    provider: Site, consumer: Site, people_csv: Path
) -> None:
    offer = await publish_patterns(provider, people_csv, PATTERNS, terms={"duration_days": 30})
    catalog = await consumer.post(
        "/catalog/request", {"provider_url": provider.dsp_url, "provider_id": provider.id}, 200
    )
    assert validate_message(catalog) == []
    (odrl,) = catalog["dataset"][0]["hasPolicy"]
    assert odrl["@id"] == offer["id"]
    constraints = odrl["permission"][0]["constraint"]
    assert {"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": ["research"]} in constraints
    assert {"leftOperand": "elapsedTime", "operator": "lteq", "rightOperand": "P30D"} in constraints
    assert any(c["leftOperand"] == "count" for c in constraints)
    assert odrl["https://w3id.org/tessera/v1/usagePolicy"]["hash"].startswith("sha256:")


async def test_pattern_policy_is_enforced_end_to_end(provider: Site, consumer: Site, people_csv: Path) -> None:
    offer = await publish_patterns(provider, people_csv, PATTERNS)
    negotiation = await negotiate(consumer, provider, offer)
    transfer = await start_transfer(consumer, negotiation["agreement_id"])
    data = f"/transfers/{transfer['id']}/data"
    first = await consumer.api.get(data, params={"purpose": "research"})
    assert first.status_code == 200 and "email" not in first.text
    denied = await consumer.api.get(data, params={"purpose": "advertising"})
    assert denied.status_code == 403
    assert any("advertising" in reason for reason in denied.json()["reasons"])


async def test_explanations_answer_without_side_effects(provider: Site, consumer: Site, people_csv: Path) -> None:
    access = 'package tessera.access.eu\ndefault allow := false\nallow if startswith(input.caller.region, "EU")\n'
    access_policy = await provider.post("/policies", {"source": access})
    offer = await publish_patterns(provider, people_csv, PATTERNS, access_policy_id=access_policy["id"])
    seen = await provider.post("/explain/offer", {"participant_id": consumer.id, "offer_id": offer["id"]}, 200)
    assert seen["allow"] is True and seen["participant"]["region"] == "EU-FR"
    negotiation = await negotiate(consumer, provider, offer)
    audit_before = len((await provider.api.get("/audit", params={"limit": 1000})).json()["items"])
    question = {"agreement_id": negotiation["agreement_id"], "purpose": "marketing"}
    answer = await provider.post("/explain/use", question, 200)
    assert answer["allow"] is False
    (purpose,) = [p for p in answer["patterns"] if p["pattern"] == "purpose"]
    assert purpose["allow"] is False and purpose["inputs"]["purpose"] == "marketing"
    allowed = await provider.post("/explain/use", question | {"purpose": "research"}, 200)
    assert allowed["allow"] is True
    assert {"kind": "mask", "fields": ["email"]} in allowed["obligations"]
    assert (await provider.api.get("/usage")).json()["items"] == []
    assert len((await provider.api.get("/audit", params={"limit": 1000})).json()["items"]) == audit_before


async def test_an_obligation_nobody_can_carry_out_is_denied_by_explain_and_the_data_plane_alike(
    provider: Site, consumer: Site, people_csv: Path
) -> None:
    """Explain, simulate and the data plane take one decision (`usage.judge`): once, explain allowed this."""
    rego = (
        'package tessera.usage.odd\ndefault allow := true\nobligations contains {"kind": "teleport", "where": "moon"}\n'
    )
    asset = await provider.post("/assets", {"title": "People", "format": "csv", "path": str(people_csv)})
    policy = await provider.post("/policies", {"source": rego})
    offer = await provider.post("/offers", {"asset_id": asset["id"], "usage_policy_id": policy["id"]})
    agreement_id = (await negotiate(consumer, provider, offer))["agreement_id"]
    transfer = await start_transfer(consumer, agreement_id)
    explained = await provider.post("/explain/use", {"agreement_id": agreement_id, "purpose": "research"}, 200)
    refused = await consumer.api.get(f"/transfers/{transfer['id']}/data", params={"purpose": "research"})
    assert refused.status_code == 403
    assert "obligation cannot be carried out" in refused.json()["reasons"][0]
    assert "teleport" in refused.json()["reasons"][0]
    assert explained["allow"] is False and explained["reasons"] == refused.json()["reasons"]


async def test_delete_after_removes_the_consumers_copy_and_both_sides_record_it(
    provider: Site, consumer: Site, people_csv: Path
) -> None:
    patterns = [{"name": "delete_after", "params": {"delete_after_seconds": 1}}]
    offer = await publish_patterns(provider, people_csv, patterns)
    transfer = await start_transfer(consumer, (await negotiate(consumer, provider, offer))["agreement_id"])
    pulled = await consumer.api.get(f"/transfers/{transfer['id']}/data", params={"purpose": "research"})
    assert pulled.status_code == 200
    assert "Tessera-Delete-After" in pulled.headers
    (copy,) = (await consumer.api.get("/copies")).json()["items"]
    assert copy["bytes"] == len(pulled.content)  # the copy is what was received (it may be gone already)
    for _ in range(200):
        (copy,) = (await consumer.api.get("/copies")).json()["items"]
        if copy["deleted_at"]:
            break
        await asyncio.sleep(0.05)
    assert copy["deleted_at"] and not await anyio.Path(copy["path"]).exists()
    assert "copy.deleted" in [e["action"] for e in (await consumer.api.get("/audit")).json()["items"]]
    for _ in range(100):
        actions = [e["action"] for e in (await provider.api.get("/audit")).json()["items"]]
        if "usage.deleted" in actions:
            break
        await asyncio.sleep(0.05)
    assert "usage.deleted" in actions
