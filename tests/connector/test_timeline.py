"""The timeline of a negotiation or transfer (`connector/timeline.py`) through the management API and the
CLI: every message sent and received with our answer's status, every decision with its reasons, every
delivery attempt with its error, asked by either party's pid."""

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import httpx

from tests.dataspace import Site, negotiate, publish, start_transfer, tessera


def events(timeline: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e for e in timeline["events"] if e["kind"] == kind]


async def timeline_of(site: Site, pid: str, route: str = "timeline") -> dict[str, Any]:
    response = await site.api.get(f"/{route}/{pid}" if route == "timeline" else f"/{route}/{pid}/timeline")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_negotiation_shows_what_each_side_received_decided_and_sent(
    provider: Site, consumer: Site, people_csv: Path
) -> None:
    negotiation = await negotiate(consumer, provider, await publish(provider, people_csv))
    assert negotiation["state"] == "FINALIZED"
    # The provider's timeline, asked by the consumer's pid (the one the consumer's operator knows). The
    # consumer is FINALIZED on receiving the last message, maybe before the provider has heard its answer.
    for _ in range(100):
        theirs = await timeline_of(provider, negotiation["consumer_pid"], "negotiations")
        if len(events(theirs, "sent")) == 2:
            break
        await asyncio.sleep(0.05)
    assert theirs["process"]["id"] == negotiation["provider_pid"]
    received = [(e["message_type"], e["party"], e["status"]) for e in events(theirs, "received")]
    assert received == [
        ("ContractRequestMessage", consumer.id, 201),
        ("ContractAgreementVerificationMessage", consumer.id, 200),
    ]
    assert [(e["party"], e["detail"]) for e in events(theirs, "decided")] == [("agent", "accept")]
    sent = [e["message_type"] for e in events(theirs, "sent")]
    assert sent == ["ContractAgreementMessage", "ContractNegotiationEventMessage"]
    assert all(e["status"] == 200 for e in events(theirs, "sent"))
    # The consumer's, by the provider's pid: what it sent and what it received in return.
    ours = await timeline_of(consumer, negotiation["provider_pid"])
    assert ours["process"]["id"] == negotiation["id"]
    assert [e["message_type"] for e in events(ours, "received")] == [
        "ContractAgreementMessage",
        "ContractNegotiationEventMessage",
    ]
    assert [e["status"] for e in events(ours, "sent")] == [201, 200]


async def test_a_refused_message_is_recorded_with_our_answer(provider: Site, consumer: Site, people_csv: Path) -> None:
    negotiation = await negotiate(consumer, provider, await publish(provider, people_csv))
    pid = negotiation["provider_pid"]
    body = {
        "@context": ["https://w3id.org/dspace/2025/1/context.jsonld"],
        "@type": "ContractNegotiationEventMessage",
        "providerPid": pid,
        "consumerPid": negotiation["consumer_pid"],
        "eventType": "ACCEPTED",
    }
    headers = {"Authorization": f"Bearer {await consumer.token_for(provider.id)}"}
    async with httpx.AsyncClient() as http:
        answer = await http.post(f"{provider.dsp_url}/negotiations/{pid}/events", json=body, headers=headers)
    assert answer.status_code == 400
    (refused,) = [e for e in events(await timeline_of(provider, pid), "received") if e["status"] == 400]
    assert refused["message_type"] == "ContractNegotiationEventMessage" and refused["party"] == consumer.id
    assert "FINALIZED" in refused["detail"]


async def test_a_transfer_shows_usage_decisions_with_their_reasons(
    provider: Site, consumer: Site, people_csv: Path
) -> None:
    negotiation = await negotiate(consumer, provider, await publish(provider, people_csv))
    transfer = await start_transfer(consumer, negotiation["agreement_id"])
    data = f"/transfers/{transfer['id']}/data"
    assert (await consumer.api.get(data, params={"purpose": "research"})).status_code == 200
    assert (await consumer.api.get(data, params={"purpose": "advertising"})).status_code == 403
    theirs = await timeline_of(provider, transfer["id"], "transfers")  # the consumer's pid
    assert [e["message_type"] for e in events(theirs, "received")] == ["TransferRequestMessage"]
    usage = [e["detail"] for e in events(theirs, "decided") if e["party"] == "usage"]
    assert usage[0] == "allow: purpose 'research' declared"
    assert usage[1].startswith('deny: purpose "advertising" is not allowed')


async def test_delivery_attempts_carry_their_error(provider: Site, consumer: Site) -> None:
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    started = await consumer.post(
        "/negotiations",
        {"provider_id": provider.id, "provider_url": f"http://127.0.0.1:{port}/dsp", "offer_id": "o", "target": "t"},
    )
    for _ in range(100):
        retries = events(await timeline_of(consumer, started["id"]), "retry")
        if retries:
            break
        await asyncio.sleep(0.05)
    assert retries and retries[0]["message_type"] == "ContractRequestMessage"
    assert retries[0]["detail"].startswith("unreachable: ") and "next attempt in" in retries[0]["detail"]


async def test_the_timeline_command_takes_either_pid(provider: Site, consumer: Site, people_csv: Path) -> None:
    negotiation = await negotiate(consumer, provider, await publish(provider, people_csv))
    directory = str(provider.config.directory)
    code, out, err = await tessera("connector", "timeline", negotiation["consumer_pid"], "--dir", directory, "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["process"]["id"] == negotiation["provider_pid"]
    assert ("received", "ContractRequestMessage", 201) in [
        (e["kind"], e["message_type"], e["status"]) for e in shown["events"]
    ]
    code, out, _err = await tessera("connector", "timeline", negotiation["consumer_pid"], "--dir", directory)
    assert code == 0 and "received" in out and "201" in out  # a table (its cells wrap in a narrow terminal)
    code, _out, err = await tessera("connector", "timeline", "urn:uuid:nobody", "--dir", directory)
    assert code == 2 and "nobody" in err
