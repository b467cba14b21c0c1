"""Negotiating with plain DSP peers: no signatures, no usage-policy binding, prefixed terms; never stuck.

The plain consumer is httpx in the test and a callback server that records what it receives; the plain
provider is a small Starlette app that answers like a non-signing DSP provider. Both get their access
tokens from the data space's authority, as any participant does, and use no Tessera extension.
"""

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connector.config import ConnectorConfig
from tessera.identity import SigningKey, TokenClient
from tests.dataspace import Dataspace, Site, negotiate, publish, tessera
from tests.dsp_schemas import validate_message
from tests.utils import run_server

CONTEXT = ["https://w3id.org/dspace/2025/1/context.jsonld"]
SIGNATURE = "https://w3id.org/tessera/v1/signature"
USAGE_POLICY = "https://w3id.org/tessera/v1/usagePolicy"
DATASET = "plain-dataset"
OFFER = "plain-offer"


class PlainPeer:
    """A participant with an identity at the authority, a DSP server that records what it receives, and no
    Tessera extensions. `script(kind, message)` may answer a received message with messages of its own."""

    def __init__(self, config: ConnectorConfig) -> None:
        self.config = config
        self.id = config.participant_id
        self.received: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()
        self.script: Callable[[dict[str, Any]], Any] = lambda message: None
        self.url = ""
        self._http = httpx.AsyncClient(timeout=10)
        self._tasks: set[asyncio.Task[None]] = set()

    async def token(self, audience: str) -> str:
        signer = SigningKey.load(self.config.key_path)
        client = TokenClient(self._http, signer=signer, participant_id=self.id, authority_url=self.config.broker_url)
        return await client.token_for(audience)

    async def post(self, audience: str, url: str, body: dict[str, Any]) -> httpx.Response:
        headers = {"Authorization": f"Bearer {await self.token(audience)}"}
        return await self._http.post(url, json=body, headers=headers)

    async def get(self, audience: str, url: str) -> httpx.Response:
        return await self._http.get(url, headers={"Authorization": f"Bearer {await self.token(audience)}"})

    async def message(self, kind: str, within: float = 10.0) -> dict[str, Any]:
        """The first received message of `kind`, waiting for it if need be."""
        async with asyncio.timeout(within):
            while True:
                for found in self.received:
                    if found["@type"] in (kind, "dspace:" + kind):
                        return found
                self.arrived.clear()
                await self.arrived.wait()

    def later(self, work: Any) -> None:
        """Send something after answering, as a DSP peer does."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _receive(self, request: Request) -> Response:
        message = await request.json()
        message["_path"] = request.url.path
        self.received.append(message)
        self.arrived.set()
        answer = self.script(message)
        return JSONResponse(answer, status_code=201 if answer else 200) if answer else Response(status_code=200)

    async def _dataset(self, request: Request) -> Response:
        if request.path_params["id"] != DATASET:
            return JSONResponse({"@context": CONTEXT, "@type": "CatalogError", "code": "404"}, status_code=404)
        return JSONResponse(plain_dataset())

    @asynccontextmanager
    async def serving(self) -> AsyncIterator["PlainPeer"]:
        routes = [
            Route("/dsp/catalog/datasets/{id}", self._dataset, methods=["GET"]),
            Route("/dsp/{path:path}", self._receive, methods=["POST"]),
        ]
        async with run_server(Starlette(routes=routes)) as url:
            self.url = url + "/dsp"
            try:
                yield self
            finally:
                for task in list(self._tasks):
                    task.cancel()
                await self._http.aclose()


@pytest.fixture
async def plain(space: Dataspace) -> AsyncIterator[PlainPeer]:
    async with PlainPeer(await space.admit("plain")).serving() as peer:
        yield peer


async def start_site(space: Dataspace, name: str, **settings: Any) -> Site:
    config = dataclasses.replace(await space.admit(name), **settings)
    config.save()
    return await space.start(config)


def plain_dataset() -> dict[str, Any]:
    """A dataset as another connector writes it: prefixed terms, node objects for terms and ids."""
    offer = {"@id": OFFER, "@type": "odrl:Offer", "odrl:permission": [{"odrl:action": {"@id": "odrl:use"}}]}
    return {"@context": CONTEXT, "@id": DATASET, "@type": "dcat:Dataset", "odrl:hasPolicy": [offer]}


def plain_agreement(plain: PlainPeer, consumer: Site, message: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A ContractAgreementMessage from a provider that does not sign, in prefixed form with full IRIs."""
    agreement = {
        "@id": "urn:uuid:plain-agreement",
        "@type": "odrl:Agreement",
        "odrl:target": {"@id": DATASET},
        "odrl:assigner": {"@id": plain.id},
        "odrl:assignee": {"@id": consumer.id},
        "dspace:timestamp": "2026-08-12T06:59:34.123456Z",
        "odrl:permission": [
            {
                "odrl:action": {"@id": "http://www.w3.org/ns/odrl/2/use"},
                "odrl:constraint": [
                    {
                        "odrl:leftOperand": "odrl:spatial",
                        "odrl:operator": {"@id": "odrl:eq"},
                        "odrl:rightOperand": "EU-FR",
                    }
                ],
            }
        ],
        **changes,
    }
    return {
        "@context": CONTEXT,
        "@type": "dspace:ContractAgreementMessage",
        "dspace:providerPid": "plain-pid",
        "dspace:consumerPid": message["consumerPid"],
        "dspace:agreement": agreement,
    }


def agreeing(plain: PlainPeer, consumer: Site, **changes: Any) -> Callable[[dict[str, Any]], Any]:
    """A plain provider's script: answer the request, agree, and finalize once verified."""

    async def send(path: str, body: dict[str, Any]) -> None:
        await asyncio.sleep(0.2)
        await plain.post(consumer.id, consumer.dsp_url + path, body)

    def script(message: dict[str, Any]) -> Any:
        kind, pid = message["@type"], message.get("consumerPid")
        if kind == "ContractRequestMessage":
            plain.later(send(f"/negotiations/{pid}/agreement", plain_agreement(plain, consumer, message, **changes)))
            return {"@context": CONTEXT, "@type": "ContractNegotiation", "providerPid": "plain-pid",
                    "consumerPid": pid, "state": "REQUESTED"}  # fmt: skip
        if kind == "ContractAgreementVerificationMessage":
            event = {"@context": CONTEXT, "@type": "ContractNegotiationEventMessage", "providerPid": "plain-pid",
                     "consumerPid": pid, "eventType": "FINALIZED"}  # fmt: skip
            plain.later(send(f"/negotiations/{pid}/events", event))
        if kind == "TransferRequestMessage":  # a provider that never starts
            return {"@context": CONTEXT, "@type": "TransferProcess", "providerPid": "plain-transfer",
                    "consumerPid": pid, "state": "REQUESTED"}  # fmt: skip
        return None

    return script


async def request_from(consumer: Site, plain: PlainPeer) -> dict[str, Any]:
    body = {"provider_id": plain.id, "provider_url": plain.url, "offer_id": OFFER, "target": DATASET}
    return await consumer.post("/negotiations", body)


# -- a plain consumer against our provider ------------------------------------------------------------------


async def plain_request(
    plain: PlainPeer, provider: Site, *, valid: bool = True, **ask: Any
) -> tuple[dict[str, Any], httpx.Response]:
    """The plain consumer reads our catalog and requests the offer as published (or with `ask` instead)."""
    catalog = (await plain.post(provider.id, provider.dsp_url + "/catalog/request", {
        "@context": CONTEXT, "@type": "CatalogRequestMessage"})).json()  # fmt: skip
    offer = {k: v for k, v in catalog["dataset"][0]["hasPolicy"][0].items() if k != USAGE_POLICY}
    offer = {**offer, "target": catalog["dataset"][0]["@id"], **ask}
    request = {"@context": CONTEXT, "@type": "ContractRequestMessage", "consumerPid": "plain-consumer",
               "offer": offer, "callbackAddress": plain.url}  # fmt: skip
    assert (validate_message(request) == []) is valid
    return offer, await plain.post(provider.id, provider.dsp_url + "/negotiations/request", request)


async def verify_unsigned(plain: PlainPeer, provider: Site) -> tuple[dict[str, Any], httpx.Response]:
    agreement = await plain.message("ContractAgreementMessage")
    assert SIGNATURE in agreement["agreement"]  # we always sign; the plain consumer ignores it
    pid = agreement["providerPid"]
    verification = {"@context": CONTEXT, "@type": "ContractAgreementVerificationMessage", "providerPid": pid,
                    "consumerPid": "plain-consumer"}  # fmt: skip
    return agreement, await plain.post(provider.id, f"{provider.dsp_url}/negotiations/{pid}/agreement/verification",
                                       verification)  # fmt: skip


async def test_a_plain_consumer_that_does_not_sign_reaches_finalized_and_pulls(
    provider: Site, plain: PlainPeer, people_csv: Path
) -> None:
    await publish(provider, people_csv)
    _offer, answer = await plain_request(plain, provider)
    assert answer.status_code == 201, answer.text
    agreement, verified = await verify_unsigned(plain, provider)
    assert verified.status_code == 200, verified.text
    finalized = await plain.message("ContractNegotiationEventMessage")
    assert finalized["eventType"] == "FINALIZED"
    kept = (await provider.api.get(f"/agreements/{agreement['agreement']['@id']}")).json()
    assert kept["countersigned"] is False and kept["consumer_signature"] is None
    audit = (await provider.api.get("/audit", params={"subject": agreement["providerPid"]})).json()["items"]
    assert [e["details"]["countersigned"] for e in audit if e["action"] == "negotiation.verified"] == [False]
    transfer = {"@context": CONTEXT, "@type": "TransferRequestMessage", "consumerPid": "plain-transfer",
                "agreementId": kept["id"], "format": "HttpData-PULL", "callbackAddress": plain.url}  # fmt: skip
    assert (await plain.post(provider.id, provider.dsp_url + "/transfers/request", transfer)).status_code == 201
    address = (await plain.message("TransferStartMessage"))["dataAddress"]
    token = next(p["value"] for p in address["endpointProperties"] if p["name"] == "authorization")
    async with httpx.AsyncClient() as http:
        pulled = await http.get(address["endpoint"], params={"purpose": "research"},
                                headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert pulled.status_code == 200 and "Ada" in pulled.text
    # the negotiation's end was anchored at the broker only: a plain DSP peer gets nothing beside DSP
    (made,) = (await provider.api.get("/audit/checkpoints")).json()["items"]
    assert made["reason"].endswith("FINALIZED") and made["recipients"] == [provider.config.broker_url]
    assert all("@type" in message for message in plain.received)


async def test_required_signatures_refuse_a_plain_consumer_with_a_termination(
    space: Dataspace, plain: PlainPeer, people_csv: Path
) -> None:
    provider = await start_site(space, "provider", agreement_signatures="required")
    await publish(provider, people_csv)
    await plain_request(plain, provider)
    agreement, verified = await verify_unsigned(plain, provider)
    assert verified.status_code == 400
    reason = "the agreement carries no consumer signature, and this connector requires one"
    assert verified.json()["@type"] == "ContractNegotiationError" and verified.json()["reason"] == [reason]
    ended = (await provider.api.get(f"/negotiations/{agreement['providerPid']}")).json()
    assert ended["state"] == "TERMINATED" and ended["reasons"] == [reason]
    termination = await plain.message("ContractNegotiationTerminationMessage")
    assert termination["reason"] == [reason] and validate_message(termination) == []
    assert (await provider.api.get("/agreements")).json()["items"] == []


async def test_a_wider_request_gets_the_offer_narrowed_as_a_counter_offer(
    provider: Site, plain: PlainPeer, people_csv: Path
) -> None:
    asset = await provider.post("/assets", {"title": "People", "format": "csv", "path": str(people_csv)})
    regions = [{"name": "regions", "params": {"allowed_regions": ["EU-DE", "EU-FR"]}}]
    usage = await provider.post("/policies", {"patterns": regions})
    terms = {"purposes": ["research", "grid-planning"], "uses": 5}
    await provider.post("/offers", {"asset_id": asset["id"], "usage_policy_id": usage["id"], "terms": terms})
    wider = [{"action": "use", "constraint": [
        {"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": ["research", "marketing"]}]}]  # fmt: skip
    _offer, answer = await plain_request(plain, provider, permission=wider)
    assert answer.status_code == 201, answer.text
    counter = await plain.message("ContractOfferMessage")
    assert validate_message({k: v for k, v in counter.items() if k != "_path"}) == []
    constraints = counter["offer"]["permission"][0]["constraint"]
    assert {"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": ["research"]} in constraints
    assert {"leftOperand": "spatial", "operator": "isAnyOf", "rightOperand": ["EU-DE", "EU-FR"]} in constraints
    assert {"leftOperand": "count", "operator": "lteq", "rightOperand": "5"} in constraints
    state = (await provider.api.get(f"/negotiations/{counter['providerPid']}")).json()
    assert state["state"] == "OFFERED" and state["rounds"] == 1


async def test_a_request_offer_we_cannot_read_gets_a_dsp_error_naming_the_element(
    provider: Site, plain: PlainPeer, people_csv: Path
) -> None:
    await publish(provider, people_csv)
    _offer, answer = await plain_request(plain, provider, valid=False, permission=[{"constraint": []}])
    assert answer.status_code == 400
    assert answer.json()["reason"] == ["offer.permission[0]: a rule needs an action"]
    assert (await provider.api.get("/negotiations")).json()["items"] == []


async def test_the_agreement_keeps_the_offers_spatial_constraint_and_anonymize_duty(
    provider: Site, consumer: Site, people_csv: Path
) -> None:
    asset = await provider.post("/assets", {"title": "People", "format": "csv", "path": str(people_csv)})
    patterns = [
        {"name": "regions", "params": {"allowed_regions": ["EU-FR"]}},
        {"name": "masked_fields", "params": {"masked_fields": ["email"]}},
    ]
    usage = await provider.post("/policies", {"patterns": patterns})
    body = {"asset_id": asset["id"], "usage_policy_id": usage["id"], "terms": {"uses": 3}}
    offer = await provider.post("/offers", body)
    done = await negotiate(consumer, provider, offer)
    assert done["state"] == "FINALIZED", done
    for site in (provider, consumer):
        kept = (await site.api.get(f"/agreements/{done['agreement_id']}")).json()
        [permission] = kept["agreement"]["permission"]
        assert {"leftOperand": "spatial", "operator": "isAnyOf", "rightOperand": ["EU-FR"]} in permission["constraint"]
        assert {"leftOperand": "count", "operator": "lteq", "rightOperand": "3"} in permission["constraint"]
        [duty] = permission["duty"]
        assert duty["action"] == "anonymize"
        assert duty["constraint"][0]["rightOperand"] == ["email"]
        assert kept["agreement"][USAGE_POLICY]["@id"] == usage["id"]
        assert kept["countersigned"] is True
        assert kept["terms"]["uses"] == 3


# -- our consumer against a plain provider ------------------------------------------------------------------


async def test_our_consumer_completes_with_a_plain_provider_that_does_not_sign(
    consumer: Site, plain: PlainPeer
) -> None:
    plain.script = agreeing(plain, consumer)
    started = await request_from(consumer, plain)
    done = await consumer.wait_for(f"/negotiations/{started['id']}", "FINALIZED", "TERMINATED")
    assert done["state"] == "FINALIZED", done
    request = await plain.message("ContractRequestMessage")
    assert request["offer"]["@id"] == OFFER and request["offer"]["permission"] == [{"action": "use"}]
    verification = await plain.message("ContractAgreementVerificationMessage")
    assert SIGNATURE in verification  # ours, which a plain provider may ignore
    kept = (await consumer.api.get(f"/agreements/{done['agreement_id']}")).json()
    assert kept["countersigned"] is False and kept["provider_signature"] is None
    assert kept["usage_policy_id"] is None and kept["usage_policy_hash"] is None
    assert kept["agreement"]["permission"][0]["constraint"][0]["leftOperand"] == "spatial"


async def test_our_consumer_refuses_an_agreement_it_did_not_ask_for_with_a_termination(
    consumer: Site, plain: PlainPeer
) -> None:
    plain.script = agreeing(plain, consumer, **{"odrl:target": {"@id": "another-dataset"}})
    started = await request_from(consumer, plain)
    done = await consumer.wait_for(f"/negotiations/{started['id']}", "FINALIZED", "TERMINATED")
    assert done["state"] == "TERMINATED"
    expected = f"the agreement is refused: target is 'another-dataset', expected '{DATASET}'"
    assert done["reasons"] == [expected]
    termination = await plain.message("ContractNegotiationTerminationMessage")
    assert termination["reason"] == [expected] and termination["consumerPid"] == started["id"]
    assert (await consumer.api.get("/agreements")).json()["items"] == []


async def test_a_silent_provider_is_terminated_after_the_deadline(space: Dataspace, plain: PlainPeer) -> None:
    consumer = await start_site(space, "consumer", negotiation_deadline=0.5)
    plain.script = lambda message: {"@context": CONTEXT, "@type": "ContractNegotiation", "providerPid": "plain-pid",
                                    "consumerPid": message["consumerPid"], "state": "REQUESTED"}  # fmt: skip
    started = await request_from(consumer, plain)
    done = await consumer.wait_for(f"/negotiations/{started['id']}", "TERMINATED")
    reason = f"no answer from {plain.id} within 0.5 seconds (the negotiation was REQUESTED)"
    assert done["reasons"] == [reason]
    assert (await plain.message("ContractNegotiationTerminationMessage"))["reason"] == [reason]
    timeline = (await consumer.api.get(f"/negotiations/{started['id']}/timeline")).json()
    assert [e["detail"] for e in timeline["events"] if e["kind"] == "terminated"] == [reason]
    code, out, _err = await tessera("connector", "timeline", started["id"], "--dir", str(consumer.config.directory))
    assert code == 0 and f"reasons: {reason}" in out


async def test_a_transfer_the_provider_never_starts_is_terminated_after_the_deadline(
    space: Dataspace, plain: PlainPeer
) -> None:
    consumer = await start_site(space, "consumer", transfer_deadline=0.5)
    plain.script = agreeing(plain, consumer)
    done = await consumer.wait_for(f"/negotiations/{(await request_from(consumer, plain))['id']}", "FINALIZED")
    started = await consumer.post("/transfers", {"agreement_id": done["agreement_id"]})
    ended = await consumer.wait_for(f"/transfers/{started['id']}", "TERMINATED")
    assert ended["reasons"] == [f"no answer from {plain.id} within 0.5 seconds (the transfer was REQUESTED)"]
    assert (await plain.message("TransferTerminationMessage"))["consumerPid"] == started["id"]
