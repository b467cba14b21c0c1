"""Crash and outage: kill the provider process at each step of an exchange; the exchange still completes.

The relay holds back one kind of message (its sender's outbox keeps retrying), the provider is killed
with SIGKILL at that point and restarted, the message is let through, and the process must reach its
final state with exactly one agreement on each side.
"""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.dataspace import Dataspace, Site, management_client, publish
from tests.faults import ConnectorProcess, Relay
from tests.utils import run_server, unused_port


@dataclass
class Exchange:
    provider: Site
    provider_process: ConnectorProcess
    consumer: Site
    relay: Relay

    @property
    def provider_url(self) -> str:
        return f"{self.relay.base}/to-provider/dsp"


@pytest.fixture
async def exchange(space: Dataspace, consumer: Site, people_csv: Path) -> AsyncIterator[Exchange]:
    config = await space.admit("provider")
    process = ConnectorProcess(config)
    await process.start()
    try:
        async with management_client(config) as api:
            provider = Site(config, api)
            relay = Relay(config.url, consumer.config.url)
            port = unused_port()
            relay.base = f"http://127.0.0.1:{port}"
            async with run_server(relay.app, port):
                await publish(provider, people_csv)
                yield Exchange(provider, process, consumer, relay)
    finally:
        process.stop()


async def request_offer(ex: Exchange) -> str:
    offer = (await ex.provider.api.get("/offers")).json()["items"][0]
    started = await ex.consumer.post(
        "/negotiations",
        {
            "provider_id": ex.provider.id,
            "provider_url": ex.provider_url,
            "offer_id": offer["id"],
            "target": offer["asset_id"],
        },
    )
    return started["id"]


async def assert_one_agreement(ex: Exchange, negotiation: dict) -> None:
    for site in (ex.provider, ex.consumer):
        agreements = (await site.api.get("/agreements")).json()["items"]
        assert [a["id"] for a in agreements] == [negotiation["agreement_id"]]


@pytest.mark.parametrize(
    "step",
    [
        "ContractRequestMessage",
        "ContractAgreementMessage",
        "ContractAgreementVerificationMessage",
        "ContractNegotiationEventMessage",
    ],
)
async def test_provider_crash_during_negotiation_still_yields_one_agreement(exchange: Exchange, step: str) -> None:
    held = exchange.relay.hold(step)
    negotiation_id = await request_offer(exchange)
    await held.wait()
    await exchange.provider_process.restart_after_crash()
    exchange.relay.release(step)
    done = await exchange.consumer.wait_for(f"/negotiations/{negotiation_id}", "FINALIZED", "TERMINATED", within=30)
    assert done["state"] == "FINALIZED", done
    await exchange.provider.wait_for(f"/negotiations/{done['provider_pid']}", "FINALIZED", within=30)
    await assert_one_agreement(exchange, done)


@pytest.mark.parametrize("step", ["TransferRequestMessage", "TransferStartMessage", "TransferCompletionMessage"])
async def test_provider_crash_during_transfer_still_completes(exchange: Exchange, step: str) -> None:
    negotiation_id = await request_offer(exchange)
    done = await exchange.consumer.wait_for(f"/negotiations/{negotiation_id}", "FINALIZED", within=30)
    held = exchange.relay.hold(step)
    transfer = await exchange.consumer.post("/transfers", {"agreement_id": done["agreement_id"]})
    if step == "TransferCompletionMessage":
        await exchange.consumer.wait_for(f"/transfers/{transfer['id']}", "STARTED", within=30)
        await exchange.consumer.post(f"/transfers/{transfer['id']}/complete", {}, 200)
    await held.wait()
    await exchange.provider_process.restart_after_crash()
    exchange.relay.release(step)
    if step != "TransferCompletionMessage":
        await exchange.consumer.wait_for(f"/transfers/{transfer['id']}", "STARTED", within=30)
        await exchange.consumer.post(f"/transfers/{transfer['id']}/complete", {}, 200)
    ours = await exchange.consumer.wait_for(f"/transfers/{transfer['id']}", "COMPLETED", within=30)
    await exchange.provider.wait_for(f"/transfers/{ours['provider_pid']}", "COMPLETED", within=30)
    transfers = (await exchange.provider.api.get("/transfers")).json()["items"]
    assert len(transfers) == 1
    await assert_one_agreement(exchange, done)


async def test_outbox_delivers_once_a_peer_that_was_down_returns(exchange: Exchange) -> None:
    exchange.relay.down = True
    negotiation_id = await request_offer(exchange)
    timeline = {}
    for _ in range(100):
        timeline = (await exchange.consumer.api.get(f"/negotiations/{negotiation_id}/timeline")).json()
        if any(e["kind"] == "retry" for e in timeline["events"]):
            break
        await asyncio.sleep(0.05)
    assert timeline["waiting_for"].startswith("delivery of ContractRequestMessage")
    exchange.relay.down = False
    done = await exchange.consumer.wait_for(f"/negotiations/{negotiation_id}", "FINALIZED", within=30)
    assert done["state"] == "FINALIZED"
    await assert_one_agreement(exchange, done)
