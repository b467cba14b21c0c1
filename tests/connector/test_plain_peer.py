"""Issue 9's first "done when": a plain DSP peer (`tests/plain_peer.py`, no Tessera extensions) and
our connector complete catalog -> negotiation -> FINALIZED -> transfer -> pull, in both roles.

Our provider faces a plain consumer that does not countersign; our consumer faces a plain provider that
does not sign, binds no usage policy and starts the transfer with an open data address.
"""

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from tests.dataspace import Dataspace, Site, rows
from tests.plain_peer import CONTEXT, DATA, PlainPeer

OPEN_POLICY = "package tessera.usage.open\n\ndefault allow := true\n"


@pytest.fixture
async def plain(space: Dataspace) -> AsyncIterator[PlainPeer]:
    identity = await space.admit("plain")
    async with httpx.AsyncClient(timeout=10) as http, PlainPeer(identity, http).serving() as peer:
        yield peer


async def publish_open(provider: Site, data: Path) -> None:
    asset = await provider.post("/assets", {"title": "People", "format": "csv", "path": str(data)})
    policy = await provider.post("/policies", {"title": "open", "source": OPEN_POLICY})
    await provider.post("/offers", {"asset_id": asset["id"], "usage_policy_id": policy["id"]})


async def test_a_plain_consumer_finds_us_from_version_metadata_and_catalog(
    provider: Site, plain: PlainPeer, people_csv: Path
) -> None:
    await publish_open(provider, people_csv)
    [version] = (await plain.http.get(provider.config.url + "/.well-known/dspace-version")).json()["protocolVersions"]
    dsp_url = provider.config.url + version["path"]
    catalog = await plain.catalog(provider.id, dsp_url)
    assert catalog["participantId"] == provider.id
    assert [service["@id"] for service in catalog["service"]] == [version["serviceId"]]
    [dataset] = catalog["dataset"]
    [offer] = dataset["hasPolicy"]
    assert offer["@type"] == "Offer" and offer["permission"] and "target" not in offer  # the dataset is the target
    assert dataset["distribution"] == [
        {
            "@type": "Distribution",
            "format": "HttpData-PULL",
            "mediaType": "text/csv",
            "accessService": version["serviceId"],
        }
    ]
    missing = await plain.http.get(
        f"{dsp_url}/catalog/datasets/nothing-here",
        headers={"Authorization": f"Bearer {await plain.tokens.token_for(provider.id)}"},
    )
    assert missing.status_code == 404
    assert missing.json()["@type"] == "CatalogError" and missing.json()["@context"] == CONTEXT


@pytest.mark.parametrize("transfer_start", ["immediate", "async"])
async def test_a_plain_consumer_negotiates_transfers_and_pulls_from_our_provider(
    space: Dataspace, plain: PlainPeer, people_csv: Path, transfer_start: str
) -> None:
    provider = await space.start(replace(await space.admit("provider"), transfer_start=transfer_start))
    await publish_open(provider, people_csv)
    [dataset] = (await plain.catalog(provider.id, provider.dsp_url))["dataset"]
    [offer] = dataset["hasPolicy"]
    negotiation = await plain.negotiate(provider.id, provider.dsp_url, dataset["@id"], offer)
    await plain.wait_for(negotiation, "FINALIZED")
    assert negotiation.agreement is not None
    ours = await provider.wait_for(f"/negotiations/{negotiation.theirs}", "FINALIZED")
    assert ours["agreement_id"] == negotiation.agreement["@id"]

    transfer = await plain.transfer(provider.id, provider.dsp_url, negotiation.agreement["@id"])
    if transfer_start == "async":  # the TCK's way: answered REQUESTED, started after the answer
        assert (await provider.api.get(f"/transfers/{transfer.theirs}")).json()["state"] == "REQUESTED"
    await plain.wait_for(transfer, "STARTED")
    pulled = await plain.pull(transfer)
    assert pulled.status_code == 200, pulled.text
    assert [r["name"] for r in rows(pulled)] == ["Ada", "Grace", "Linus"]


async def test_our_consumer_negotiates_transfers_and_pulls_from_a_plain_provider(
    consumer: Site, plain: PlainPeer
) -> None:
    started = await consumer.post(
        "/negotiations",
        {"provider_id": plain.id, "provider_url": plain.dsp_url, "offer_id": "offer-1", "target": "dataset-1"},
    )
    negotiation = await consumer.wait_for(f"/negotiations/{started['id']}", "FINALIZED", "TERMINATED")
    assert negotiation["state"] == "FINALIZED", negotiation
    assert plain.processes[negotiation["provider_pid"]].state == "FINALIZED"

    requested = await consumer.post("/transfers", {"agreement_id": negotiation["agreement_id"]})
    transfer = await consumer.wait_for(f"/transfers/{requested['id']}", "STARTED", "TERMINATED")
    assert transfer["state"] == "STARTED", transfer
    pulled = await consumer.api.get(f"/transfers/{transfer['id']}/data")
    assert pulled.status_code == 200, pulled.text
    assert pulled.text == DATA
