"""Negotiation agents: counter-offers, Rego negotiation policies, operator approval, provider-initiated offers."""

import asyncio
from pathlib import Path

from tests.dataspace import RESEARCH_POLICY, Site

NEGOTIATION_POLICY = """package tessera.negotiation.thirty_days

# Accept up to 30 days of use, counter anything longer with 30, refuse purposes outside the list.
allowed := {"research", "education"}

default decision := "terminate"

decision := "accept" if {
    purposes_ok
    input.request.duration_days <= 30
}

decision := "counter" if {
    purposes_ok
    input.request.duration_days > 30
}

counter := {"purposes": input.request.purposes, "duration_days": 30, "uses": input.request.uses}

purposes_ok if {
    count(input.request.purposes) > 0
    every p in input.request.purposes { p in allowed }
}

deny contains msg if {
    some p in input.request.purposes
    not p in allowed
    msg := sprintf("purpose %s is not negotiable (allowed: %v)", [p, allowed])
}
"""


async def offer_with(provider: Site, data: Path, **extra: object) -> dict:
    asset = await provider.post("/assets", {"title": "People", "format": "csv", "path": str(data)})
    usage = await provider.post("/policies", {"source": RESEARCH_POLICY})
    return await provider.post("/offers", {"asset_id": asset["id"], "usage_policy_id": usage["id"], **extra})


async def first_negotiation(site: Site) -> dict:
    """The first negotiation `site` knows of, once the counter-party's message has arrived."""
    await site.wait_for("/negotiations", "present", within=5)  # see Site.wait_for's list form
    return (await site.api.get("/negotiations")).json()["items"][0]


async def request(consumer: Site, provider: Site, offer: dict, **needs: object) -> dict:
    body = {
        "provider_id": provider.id,
        "provider_url": provider.dsp_url,
        "offer_id": offer["id"],
        "target": offer["asset_id"],
    }
    if needs:
        body["needs"] = needs
    return await consumer.post("/negotiations", body)


async def test_request_within_the_offer_is_accepted_on_those_terms(
    provider: Site, consumer: Site, people_csv: Path
) -> None:
    offer = await offer_with(provider, people_csv, terms={"purposes": ["research"], "duration_days": 90, "uses": 10})
    started = await request(consumer, provider, offer, purposes=["research"], duration_days=30, uses=5)
    done = await consumer.wait_for(f"/negotiations/{started['id']}", "FINALIZED", "TERMINATED")
    assert done["state"] == "FINALIZED"
    agreement = (await consumer.api.get(f"/agreements/{done['agreement_id']}")).json()
    assert agreement["terms"] == {"purposes": ["research"], "duration_days": 30, "uses": 5}
    assert {"leftOperand": "elapsedTime", "operator": "lteq", "rightOperand": "P30D"} in (
        agreement["agreement"]["permission"][0]["constraint"]
    )


async def test_provider_counters_and_consumer_accepts_within_its_minimum(
    provider: Site, consumer: Site, people_csv: Path
) -> None:
    policy = await provider.post("/policies", {"source": NEGOTIATION_POLICY})
    offer = await offer_with(provider, people_csv, negotiation_policy_id=policy["id"])
    started = await request(consumer, provider, offer, purposes=["research"], duration_days=90, min_duration_days=14)
    done = await consumer.wait_for(f"/negotiations/{started['id']}", "FINALIZED", "TERMINATED")
    assert done["state"] == "FINALIZED", done
    assert done["terms"]["duration_days"] == 30
    timeline = (await consumer.api.get(f"/negotiations/{started['id']}/timeline")).json()
    sent = [e["message_type"] for e in timeline["events"] if e["kind"] == "queued"]
    assert sent == ["ContractRequestMessage", "ContractNegotiationEventMessage", "ContractAgreementVerificationMessage"]
    assert timeline["waiting_for"] is None
    provider_side = (await provider.api.get(f"/negotiations/{done['provider_pid']}")).json()
    assert provider_side["state"] == "FINALIZED" and provider_side["rounds"] == 1


async def test_purposes_outside_the_list_are_refused_with_reasons(
    provider: Site, consumer: Site, people_csv: Path
) -> None:
    policy = await provider.post("/policies", {"source": NEGOTIATION_POLICY})
    offer = await offer_with(provider, people_csv, negotiation_policy_id=policy["id"])
    started = await request(consumer, provider, offer, purposes=["marketing"], duration_days=10)
    done = await consumer.wait_for(f"/negotiations/{started['id']}", "FINALIZED", "TERMINATED")
    assert done["state"] == "TERMINATED"
    assert done["reasons"] == ['purpose marketing is not negotiable (allowed: {"education", "research"})']


async def test_agents_that_cannot_meet_stop_bargaining_and_terminate(
    provider: Site, consumer: Site, people_csv: Path
) -> None:
    offer = await offer_with(provider, people_csv, terms={"duration_days": 7})
    started = await request(consumer, provider, offer, duration_days=60, min_duration_days=30)
    done = await consumer.wait_for(f"/negotiations/{started['id']}", "FINALIZED", "TERMINATED")
    assert done["state"] == "TERMINATED"
    assert "does not meet our needs" in done["reasons"][0]
    await provider.wait_for(f"/negotiations/{done['provider_pid']}", "TERMINATED")


async def test_manual_approval_waits_for_the_operator(provider: Site, consumer: Site, people_csv: Path) -> None:
    offer = await offer_with(provider, people_csv, approval="manual")
    started = await request(consumer, provider, offer)
    provider_pid = (await first_negotiation(provider))["id"]
    waiting = await provider.wait_for(f"/negotiations/{provider_pid}", "REQUESTED")
    assert waiting["waiting"] == "the offer needs an operator's approval"
    timeline = (await provider.api.get(f"/negotiations/{provider_pid}/timeline")).json()
    assert timeline["waiting_for"] == "an operator: the offer needs an operator's approval"
    await provider.post(f"/negotiations/{provider_pid}/accept", {}, 200)
    done = await consumer.wait_for(f"/negotiations/{started['id']}", "FINALIZED", "TERMINATED")
    assert done["state"] == "FINALIZED"


async def test_provider_initiated_offer_accepted_by_the_consumers_operator(
    provider: Site, consumer: Site, people_csv: Path
) -> None:
    offer = await offer_with(provider, people_csv, terms={"purposes": ["research"], "uses": 3})
    offered = await provider.post(
        "/negotiations/offers", {"consumer_id": consumer.id, "consumer_url": consumer.dsp_url, "offer_id": offer["id"]}
    )
    await provider.wait_for(f"/negotiations/{offered['id']}", "OFFERED")
    received = await first_negotiation(consumer)
    assert received["state"] == "OFFERED" and received["terms"]["uses"] == 3
    await consumer.post(f"/negotiations/{received['id']}/accept", {}, 200)
    done = await consumer.wait_for(f"/negotiations/{received['id']}", "FINALIZED", "TERMINATED")
    assert done["state"] == "FINALIZED"
    assert (await provider.wait_for(f"/negotiations/{offered['id']}", "FINALIZED"))["agreement_id"] == done[
        "agreement_id"
    ]


async def test_operator_counter_offer_is_answered_by_the_consumers_agent(
    provider: Site, consumer: Site, people_csv: Path
) -> None:
    offer = await offer_with(provider, people_csv, approval="manual")
    started = await request(consumer, provider, offer, duration_days=20, min_duration_days=10)
    provider_pid = (await first_negotiation(provider))["id"]
    await provider.wait_for(f"/negotiations/{provider_pid}", "REQUESTED")
    await provider.post(f"/negotiations/{provider_pid}/counter", {"terms": {"duration_days": 10}}, 200)
    done = await consumer.wait_for(f"/negotiations/{started['id']}", "FINALIZED", "TERMINATED")
    assert done["state"] == "FINALIZED"
    assert done["terms"]["duration_days"] == 10


async def test_operator_terminates_a_running_negotiation(provider: Site, consumer: Site, people_csv: Path) -> None:
    offer = await offer_with(provider, people_csv, approval="manual")
    started = await request(consumer, provider, offer)
    provider_pid = (await first_negotiation(provider))["id"]
    for _ in range(250):  # the provider's answer to the request names its pid
        if (await consumer.api.get(f"/negotiations/{started['id']}")).json()["provider_pid"]:
            break
        await asyncio.sleep(0.02)
    await consumer.post(f"/negotiations/{started['id']}/terminate", {"reason": "no longer needed"}, 200)
    ended = await provider.wait_for(f"/negotiations/{provider_pid}", "TERMINATED")
    assert ended["reasons"] == ["no longer needed"]
