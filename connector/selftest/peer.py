"""The harness's side of every exchange: a participant that talks DSP to the connector under test.

A `Peer` has its own participant identity (a connector directory whose key the broker's authority
knows), so it gets access tokens addressed to the connector under test and can sign agreements. It
serves a small callback app on its own loopback port: every message the connector under test sends
there is checked (access token, schema), recorded, and answered as a DSP peer would (201 with the
process for an initial request, 200 otherwise), or with an error a scenario scripted. A plain peer
answers as the Eclipse TCK does: 200 also for an initial request, and 200 with an empty body for an
agreement, a verification and an event.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from connector.anchoring import RECEIPTS_PATH
from connector.config import ConnectorConfig
from connector.selftest.schemas import Schemas
from tessera import dsp
from tessera.bodies import read_body
from tessera.errors import TesseraError
from tessera.identity import JwksCache, SigningKey, TokenClient, TokenVerifier, bearer_token
from tessera.ids import new_id
from tessera.json import parse

NEGOTIATION_STATE = {
    "ContractRequestMessage": "REQUESTED",
    "ContractOfferMessage": "OFFERED",
    "ContractAgreementMessage": "AGREED",
    "ContractAgreementVerificationMessage": "VERIFIED",
    "ContractNegotiationTerminationMessage": "TERMINATED",
}
TRANSFER_STATE = {
    "TransferRequestMessage": "REQUESTED",
    "TransferStartMessage": "STARTED",
    "TransferCompletionMessage": "COMPLETED",
    "TransferSuspensionMessage": "SUSPENDED",
    "TransferTerminationMessage": "TERMINATED",
}
POLL_SECONDS = 0.02
# What the TCK answers with 200 and no body.
EMPTY_ANSWERS = {"ContractAgreementMessage", "ContractAgreementVerificationMessage", "ContractNegotiationEventMessage"}

MAX_MESSAGE_BYTES = 1024 * 1024  # as the connector's own DSP endpoints


@dataclass
class Received:
    """One message the connector under test sent to the peer, with what the peer found wrong in it."""

    path: str
    message: dict[str, Any]
    status: int
    answer: dict[str, Any]
    problems: list[str] = field(default_factory=list)
    taken: bool = False

    @property
    def kind(self) -> str:
        return str(self.message.get("@type"))


class Participant:
    """A participant as its connector directory describes it: its id and its DSP endpoint."""

    config: ConnectorConfig

    @property
    def id(self) -> str:
        return self.config.participant_id

    @property
    def dsp_url(self) -> str:
        return self.config.dsp_url


class Peer(Participant):
    """The other side of the connector under test, with an identity, a callback app and an inbox."""

    def __init__(
        self, config: ConnectorConfig, schemas: Schemas, http: httpx.AsyncClient, *, plain: bool = False
    ) -> None:
        self.config = config
        self.plain = plain  # behave as a plain DSP peer (the TCK), without Tessera's extensions
        self.schemas = schemas
        self.http = http
        self.signer = SigningKey.load(config.key_path)
        broker = config.broker_url.rstrip("/")
        self.tokens = TokenClient(http, signer=self.signer, participant_id=config.participant_id, authority_url=broker)
        jwks = JwksCache(http, broker + "/.well-known/jwks.json")
        self.verifier = TokenVerifier(jwks, issuer=broker, audience=config.participant_id)
        self.sender: str | None = None  # the participant id the connector under test speaks for
        self.inbox: list[Received] = []
        self.scripted: dict[str, tuple[int, dict[str, Any]]] = {}
        self.processes: dict[str, dict[str, Any]] = {}  # our pid -> its DSP process document

    def reset(self) -> None:
        self.inbox.clear()
        self.scripted.clear()

    # -- talking to the connector under test -------------------------------------------------------------

    async def headers(self, audience: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.tokens.token_for(audience)}"}

    async def post(self, url: str, body: dict[str, Any], audience: str) -> httpx.Response:
        return await self.http.post(url, json=body, headers=await self.headers(audience))

    async def get(self, url: str, audience: str | None) -> httpx.Response:
        return await self.http.get(url, headers=await self.headers(audience) if audience else None)

    async def receive(self, kind: str, pids: dict[str, str], within: float) -> Received:
        """The next message of @type `kind` that names no pid other than `pids`; waits up to `within`."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            for record in self.inbox:
                if not record.taken and record.kind == kind and _matches(record.message, pids):
                    record.taken = True
                    return record
            if asyncio.get_running_loop().time() > deadline:
                seen = [r.kind for r in self.inbox if not r.taken] or "nothing"
                raise TimeoutError(f"no {kind} within {within:g} s (received {seen})")
            await asyncio.sleep(POLL_SECONDS)

    # -- the callback app -----------------------------------------------------------------------------------

    def app(self) -> Starlette:
        routes = [
            Route("/negotiations/{pid}", self._get_process, methods=["GET"]),
            Route("/transfers/{pid}", self._get_process, methods=["GET"]),
            # Tessera's audit receipts sit beside DSP: a plain DSP peer has no such endpoint (and nothing to validate)
            Route(RECEIPTS_PATH, self._not_dsp, methods=["POST"]),
            Route("/{path:path}", self._on_message, methods=["POST"]),
        ]
        base = urlsplit(self.dsp_url).path.rstrip("/")
        version = dsp.version_document(base or "/")
        return Starlette(
            routes=[
                Route("/.well-known/dspace-version", lambda _r: JSONResponse(version), methods=["GET"]),
                Mount(base, routes=routes) if base else Mount("/", routes=routes),
            ]
        )

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        """Serve the callback app on the identity's host and port inside the running event loop."""
        config = uvicorn.Config(
            self.app(), host=self.config.host, port=self.config.port, log_level="warning", lifespan="off"
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError(f"the self-test peer could not listen on port {self.config.port}")
            await asyncio.sleep(POLL_SECONDS)
        try:
            yield self.dsp_url
        finally:
            server.should_exit = True
            await task

    async def _get_process(self, request: Request) -> Response:
        kind = "ContractNegotiationError" if "/negotiations/" in request.url.path else "TransferError"
        found = self.processes.get(request.path_params["pid"])
        if found is None:
            body = dsp.error(kind, provider_pid=None, consumer_pid=None, code="404", reason=["unknown process"])
            return JSONResponse(body, status_code=404)
        return JSONResponse(found)

    async def _not_dsp(self, _request: Request) -> Response:
        return Response(status_code=404)

    async def _on_message(self, request: Request) -> Response:
        problems = await self._token_problems(request)
        try:
            message = parse(await read_body(request, MAX_MESSAGE_BYTES, "message"), "the message", ValueError)
        except (ValueError, TesseraError):  # not strict JSON, or too large: the schemas report it as no message
            message = None
        problems += self.schemas.errors(message)
        if not isinstance(message, dict):
            message = {}
        path = "/" + request.path_params["path"]
        status, answer = self._answer(path, message)
        self.inbox.append(Received(path, message, status, answer, problems))
        if self.plain and status == 200 and message.get("@type") in EMPTY_ANSWERS:
            return Response(status_code=200)
        return JSONResponse(answer, status_code=status)

    async def _token_problems(self, request: Request) -> list[str]:
        try:
            caller = await self.verifier.verify(bearer_token(request.headers.get("authorization")))
        except TesseraError as exc:
            return [f"access token: {exc.detail}"]
        if self.sender and caller.participant_id != self.sender:
            return [f"access token: subject {caller.participant_id}, expected {self.sender}"]
        return []

    def _answer(self, path: str, message: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        kind = str(message.get("@type"))
        if kind in self.scripted:
            return self.scripted.pop(kind)
        provider_pid, consumer_pid = message.get("providerPid"), message.get("consumerPid")
        status = 200
        created = 200 if self.plain else 201
        if path in ("/negotiations/request", "/transfers/request"):
            provider_pid, status = new_id(), created
        elif path == "/negotiations/offers":
            consumer_pid, status = new_id(), created
        return status, self._track(path, kind, message, str(provider_pid or ""), str(consumer_pid or ""))

    def _track(
        self, path: str, kind: str, message: dict[str, Any], provider_pid: str, consumer_pid: str
    ) -> dict[str, Any]:
        if path.startswith("/transfers/"):
            state = TRANSFER_STATE.get(kind, "REQUESTED")
            document = dsp.transfer_process(provider_pid, consumer_pid, state)
        else:
            state = str(message.get("eventType") or NEGOTIATION_STATE.get(kind, "REQUESTED"))
            document = dsp.negotiation(provider_pid, consumer_pid, state)
        ours = path.split("/")[2] if path.count("/") >= 3 else (provider_pid if "request" in path else consumer_pid)
        self.processes[ours] = document
        return document


def _matches(message: dict[str, Any], pids: dict[str, str]) -> bool:
    return all(message.get(name) in (None, value) for name, value in pids.items())
