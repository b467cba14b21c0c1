"""A minimal plain DSP 2025-1 connector, written for the tests: no Tessera extensions at all.

It is what another vendor's connector looks like to ours: compact JSON with the DSP context, no
signatures, no usage-policy binding, no Tessera endpoint properties. It gets its access tokens from the
broker like any participant (OAuth 2 client credentials) and checks the ones it is sent. It ignores
terms it does not know (our signature). Like the TCK, it sends each message it decides on by itself
asynchronously, a little after answering the message it reacts to, and answers agreements,
verifications and events with 200 and an empty body.

As consumer it asks for the first offer of the provider's catalog, verifies the agreement, requests a
pull transfer and pulls from the data address it is given. As provider it agrees at once to what is
requested, finalizes after the verification, starts a pull transfer with an open data address (no
`authorization` property) and serves `DATA` there.
"""

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connector.config import ConnectorConfig
from tessera.clock import rfc3339
from tessera.errors import TesseraError
from tessera.identity import JwksCache, SigningKey, TokenClient, TokenVerifier, bearer_token
from tessera.ids import new_id
from tests.utils import run_server

CONTEXT = ["https://w3id.org/dspace/2025/1/context.jsonld"]
PULL = "HttpData-PULL"
DATA = "name,country\nAda,DE\nGrace,US\n"
STEP_DELAY = 0.2  # seconds between answering a message and sending the reaction to it


def message(kind: str, **fields: Any) -> dict[str, Any]:
    """A DSP message as plain peers (and the TCK) send it: with a message `@id` of its own."""
    return {"@context": CONTEXT, "@id": new_id(), "@type": kind, **fields}


@dataclass
class Process:
    """A negotiation or transfer as the plain peer keeps it: pids, state, what it learned."""

    kind: str  # ContractNegotiation | TransferProcess
    ours: str
    theirs: str | None
    role: str  # provider | consumer
    counterparty: str  # the other side's participant id
    address: str  # the other side's DSP base URL or callbackAddress
    state: str = "REQUESTED"
    agreement: dict[str, Any] | None = None
    data_address: dict[str, Any] | None = None
    failure: str | None = None  # a message of ours the other side refused
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def pids(self) -> dict[str, str | None]:
        provider, consumer = (self.ours, self.theirs) if self.role == "provider" else (self.theirs, self.ours)
        return {"providerPid": provider, "consumerPid": consumer}

    def document(self) -> dict[str, Any]:
        return {"@context": CONTEXT, "@type": self.kind, **self.pids, "state": self.state}

    def move(self, state: str) -> None:
        self.state = state
        self.changed.set()


NewProcess = Callable[[str, dict[str, Any]], Awaitable[Response]]  # (caller, message) -> answer
OnProcess = Callable[[Process, dict[str, Any]], Awaitable[Response]]  # (our process, message) -> answer


class PlainPeer:
    """A plain DSP participant with an identity the broker admitted (`config`), serving `config.url`."""

    def __init__(self, config: ConnectorConfig, http: httpx.AsyncClient) -> None:
        self.id = config.participant_id
        self.url = config.url
        self.dsp_url = config.url + "/dsp"
        self.port = config.port
        self.http = http
        broker = config.broker_url.rstrip("/")
        self.tokens = TokenClient(
            http, signer=SigningKey.load(config.key_path), participant_id=self.id, authority_url=broker
        )
        self.verifier = TokenVerifier(
            JwksCache(http, broker + "/.well-known/jwks.json"), issuer=broker, audience=self.id
        )
        self.processes: dict[str, Process] = {}
        self.data_headers: dict[str, str] = {}  # sent with the data: a test makes the peer a hostile provider
        self._tasks: set[asyncio.Task[None]] = set()

    @asynccontextmanager
    async def serving(self) -> AsyncIterator["PlainPeer"]:
        async with run_server(self.app(), self.port):
            yield self
        for task in self._tasks:
            task.cancel()

    # -- as consumer -----------------------------------------------------------------------------------

    async def catalog(self, provider_id: str, dsp_url: str) -> dict[str, Any]:
        return await self.post(provider_id, dsp_url + "/catalog/request", message("CatalogRequestMessage"))

    async def negotiate(self, provider_id: str, dsp_url: str, dataset: str, offer: dict[str, Any]) -> Process:
        """Ask for an offer as the catalog listed it (the ODRL rules; no parties, no extension terms)."""
        rules = {k: v for k, v in offer.items() if k in ("permission", "prohibition", "obligation")}
        process = self._new("ContractNegotiation", "consumer", dsp_url, provider_id)
        request = message(
            "ContractRequestMessage",
            consumerPid=process.ours,
            callbackAddress=self.dsp_url,
            offer={"@id": offer["@id"], "@type": "Offer", "target": dataset, **rules},
        )
        answer = await self.post(provider_id, dsp_url + "/negotiations/request", request)
        process.theirs = answer["providerPid"]
        return process

    async def transfer(self, provider_id: str, dsp_url: str, agreement_id: str) -> Process:
        process = self._new("TransferProcess", "consumer", dsp_url, provider_id)
        request = message(
            "TransferRequestMessage",
            consumerPid=process.ours,
            agreementId=agreement_id,
            format=PULL,
            callbackAddress=self.dsp_url,
        )
        answer = await self.post(provider_id, dsp_url + "/transfers/request", request)
        process.theirs = answer["providerPid"]
        return process

    async def pull(self, process: Process) -> httpx.Response:
        """GET the data address, with the token its `authorization` endpoint property carries."""
        assert process.data_address is not None
        properties = {p["name"]: p["value"] for p in process.data_address.get("endpointProperties", [])}
        headers = {"Authorization": f"Bearer {properties['authorization']}"} if "authorization" in properties else {}
        return await self.http.get(process.data_address["endpoint"], headers=headers)

    # -- talking to the other connector ----------------------------------------------------------------

    async def post(self, audience: str, url: str, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {await self.tokens.token_for(audience)}"}
        response = await self.http.post(url, json=body, headers=headers)
        assert response.is_success, f"{body['@type']} to {url}: {response.status_code} {response.text}"
        answer: dict[str, Any] = response.json() if response.content else {}
        return answer

    async def wait_for(self, process: Process, state: str, within: float = 10.0) -> Process:
        async with asyncio.timeout(within):
            while process.state != state:
                assert process.failure is None, process.failure
                process.changed.clear()
                await process.changed.wait()
        return process

    def _new(self, kind: str, role: str, address: str, counterparty: str, theirs: str | None = None) -> Process:
        process = Process(kind, new_id(), theirs, role, counterparty, address)
        self.processes[process.ours] = process
        return process

    def _later(self, process: Process, path: str, body: dict[str, Any], then: str | None = None) -> None:
        """Send `body` to the other side a little later (after our answer has reached it)."""

        async def send() -> None:
            await asyncio.sleep(STEP_DELAY)
            if then:
                process.move(then)  # before sending: the answer to it may come before our post returns
            try:
                await self.post(process.counterparty, process.address.rstrip("/") + path, body)
            except (AssertionError, httpx.HTTPError) as exc:
                process.failure = str(exc)
                process.changed.set()

        self._spawn(send())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the DSP endpoints ------------------------------------------------------------------------------

    def app(self) -> Starlette:
        def new(path: str, handler: NewProcess) -> Route:
            return Route("/dsp" + path, self._guarded(handler), methods=["POST"])

        def on(path: str, handler: OnProcess, method: str = "POST") -> Route:
            return Route("/dsp" + path, self._guarded(self._known(handler)), methods=[method])

        return Starlette(
            routes=[
                new("/negotiations/request", self._negotiation_requested),
                on("/negotiations/{pid}", self._get, "GET"),
                on("/negotiations/{pid}/offers", self._offered),
                on("/negotiations/{pid}/agreement", self._agreed),
                on("/negotiations/{pid}/agreement/verification", self._verified),
                on("/negotiations/{pid}/events", self._event),
                on("/negotiations/{pid}/termination", self._state("TERMINATED")),
                new("/transfers/request", self._transfer_requested),
                on("/transfers/{pid}", self._get, "GET"),
                on("/transfers/{pid}/start", self._started),
                on("/transfers/{pid}/completion", self._state("COMPLETED")),
                on("/transfers/{pid}/suspension", self._state("SUSPENDED")),
                on("/transfers/{pid}/termination", self._state("TERMINATED")),
                Route("/data/{pid}", self._data, methods=["GET"]),
            ]
        )

    def _guarded(self, handler: NewProcess) -> Callable[[Request], Awaitable[Response]]:
        """Check the access token and the body, then hand the caller and the message to `handler`."""

        async def endpoint(request: Request) -> Response:
            try:
                caller = await self.verifier.verify(bearer_token(request.headers.get("authorization")))
            except TesseraError as exc:
                return JSONResponse({"error": str(exc)}, status_code=401)
            body = json.loads(await request.body() or b"{}")
            if not isinstance(body, dict):
                return JSONResponse({"error": "not a JSON object"}, status_code=400)
            body["pid"] = request.path_params.get("pid")
            return await handler(caller.participant_id, body)

        return endpoint

    def _known(self, handler: OnProcess) -> NewProcess:
        """A handler for a message about one of our processes (the path's pid); 404 for any other."""

        async def known(_caller: str, body: dict[str, Any]) -> Response:
            process = self.processes.get(body["pid"])
            if process is None:
                return JSONResponse({}, status_code=404)
            return await handler(process, body)

        return known

    async def _get(self, process: Process, _body: dict[str, Any]) -> Response:
        return JSONResponse(process.document())

    async def _negotiation_requested(self, caller: str, body: dict[str, Any]) -> Response:
        """As provider: agree to the requested offer as it is."""
        process = self._new("ContractNegotiation", "provider", body["callbackAddress"], caller, body["consumerPid"])
        offer = body["offer"]
        process.agreement = {
            "@id": new_id(),
            "@type": "Agreement",
            "target": offer["target"],
            "assigner": self.id,
            "assignee": caller,
            "timestamp": rfc3339(),
            "permission": offer.get("permission", [{"action": "use"}]),
        }
        agreement = message("ContractAgreementMessage", **process.pids, agreement=process.agreement)
        self._later(process, f"/negotiations/{process.theirs}/agreement", agreement, then="AGREED")
        return JSONResponse(process.document(), status_code=201)

    async def _offered(self, process: Process, _body: dict[str, Any]) -> Response:
        """As consumer: accept an offer the provider makes."""
        process.move("OFFERED")
        accepted = message("ContractNegotiationEventMessage", **process.pids, eventType="ACCEPTED")
        self._later(process, f"/negotiations/{process.theirs}/events", accepted, then="ACCEPTED")
        return JSONResponse(process.document())

    async def _agreed(self, process: Process, body: dict[str, Any]) -> Response:
        """As consumer: keep the agreement and verify it."""
        process.agreement = body["agreement"]
        process.move("AGREED")
        verification = message("ContractAgreementVerificationMessage", **process.pids)
        self._later(process, f"/negotiations/{process.theirs}/agreement/verification", verification, then="VERIFIED")
        return Response(status_code=200)

    async def _verified(self, process: Process, _body: dict[str, Any]) -> Response:
        """As provider: finalize once the consumer verified."""
        process.move("VERIFIED")
        finalized = message("ContractNegotiationEventMessage", **process.pids, eventType="FINALIZED")
        self._later(process, f"/negotiations/{process.theirs}/events", finalized, then="FINALIZED")
        return Response(status_code=200)

    async def _event(self, process: Process, body: dict[str, Any]) -> Response:
        process.move(body["eventType"])
        return Response(status_code=200)

    async def _transfer_requested(self, caller: str, body: dict[str, Any]) -> Response:
        """As provider: start a pull transfer with an open data address (no `authorization`)."""
        process = self._new("TransferProcess", "provider", body["callbackAddress"], caller, body["consumerPid"])
        address = {"@type": "DataAddress", "endpointType": "https://w3id.org/idsa/v4.1/HTTP"}
        address["endpoint"] = f"{self.url}/data/{process.ours}"
        start = message("TransferStartMessage", **process.pids, dataAddress=address)
        self._later(process, f"/transfers/{process.theirs}/start", start, then="STARTED")
        return JSONResponse(process.document(), status_code=201)

    async def _started(self, process: Process, body: dict[str, Any]) -> Response:
        process.data_address = body.get("dataAddress") or process.data_address
        process.move("STARTED")
        return JSONResponse(process.document())

    def _state(self, state: str) -> OnProcess:
        async def handler(process: Process, _body: dict[str, Any]) -> Response:
            process.move(state)
            return JSONResponse(process.document())

        return handler

    async def _data(self, request: Request) -> Response:
        """The open data address of a transfer this peer started."""
        process = self.processes.get(request.path_params["pid"])
        if process is None or process.role != "provider" or process.state != "STARTED":
            return Response("no such transfer", status_code=404)
        return Response(DATA, media_type="text/csv", headers=self.data_headers)
