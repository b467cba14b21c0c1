"""The steps a scenario is made of, and the run they act on.

A step sends a message and checks the answer (`Send`), waits for a message the connector under test
sends (`Receive`), reads a process's state (`State`, `Unknown`), reads metadata (`Version`, `Dataset`),
or asks the connector's operator to act through its management API (`Operator`). A step that finds the
connector wrong raises `StepFailed`; every message the connector sends is schema-validated.
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict
from urllib.parse import quote, urlsplit

import httpx

from connector.selftest.peer import Peer
from tessera import dsp
from tessera.ids import new_id

Role = Literal["provider", "consumer", "any"]  # the connector under test's role in a scenario
Process = Literal["negotiations", "transfers"]
ProcessState = dsp.NegotiationState | dsp.TransferState
Builder = Callable[["Run"], dict[str, Any]]
Action = Callable[["Run"], Awaitable[None]]
PIDS: tuple[Literal["providerPid"], Literal["consumerPid"]] = ("providerPid", "consumerPid")
PROCESS_TYPE = {"negotiations": "ContractNegotiation", "transfers": "TransferProcess", "catalog": "Catalog"}
ERROR_TYPE = {"negotiations": "ContractNegotiationError", "transfers": "TransferError", "catalog": "CatalogError"}


class StepFailed(Exception):
    """The connector under test did something DSP does not allow (or did not do what it must)."""


@dataclass
class Management:
    """The connector under test's management API (Tessera's `/api`), to make it act on its own."""

    url: str
    api_key: str = field(repr=False)

    async def call(self, http: httpx.AsyncClient, method: str, path: str, body: object = None) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.api_key}"}
        response = await http.request(method, self.url.rstrip("/") + path, json=body, headers=headers)
        if response.status_code >= 300:
            raise StepFailed(f"management {method} {path} answered {response.status_code}: {response.text[:300]}")
        resource: dict[str, Any] = response.json()  # the management API answers JSON objects
        return resource


@dataclass
class Target:
    """The connector under test: its DSP base URL, participant id, and (optionally) management API."""

    dsp_url: str
    participant_id: str
    management: Management | None = None
    dataset: str | None = None  # the first dataset of its catalog, with its first offer
    offer: dict[str, Any] | None = None

    @property
    def root(self) -> str:
        parts = urlsplit(self.dsp_url)
        return f"{parts.scheme}://{parts.netloc}"


class Learned(TypedDict, total=False):
    """What a run has learned so far, by DSP name; a step needing what is not known yet fails with a KeyError."""

    providerPid: str
    consumerPid: str
    dataset: str  # the dataset under negotiation
    offer: dict[str, Any]  # the ODRL offer under negotiation
    ask: list[dict[str, Any]]  # ODRL permissions the harness asks for instead of the offer's
    asked: list[dict[str, Any]]  # ODRL permissions the connector under test asked for or accepted last
    agreement: dict[str, Any]  # the agreement document, without its signature
    agreementId: str | None


@dataclass
class Run:
    """One scenario's run: the pids, offer and agreement it has learned so far."""

    peer: Peer
    target: Target
    role: Role
    within: float
    vars: Learned = field(default_factory=Learned)

    @property
    def own_pid(self) -> str:
        """The process id at the connector under test."""
        return self.vars["providerPid"] if self.role == "provider" else self.vars["consumerPid"]

    def learn(self, document: dict[str, Any]) -> None:
        """Remember the pids a message or answer names, where not known yet."""
        for name in PIDS:
            if isinstance(document.get(name), str) and document[name]:
                self.vars.setdefault(name, document[name])

    def pids(self) -> dict[str, str]:
        return {k: self.vars[k] for k in PIDS if k in self.vars}

    async def manage(self, method: str, path: str, body: object = None) -> dict[str, Any]:
        assert self.target.management is not None  # the runner skips scenarios that need it
        return await self.target.management.call(self.peer.http, method, path, body)

    def check(self, response: httpx.Response, expect: int, area: str, answer: str | None) -> dict[str, Any]:
        """Status as expected; a body of the right @type that validates (an error body too)."""
        if response.status_code != expect:
            raise StepFailed(f"expected {expect}, got {response.status_code}: {response.text[:300]}")
        if expect == 200 and not response.content and answer is None:
            return {}
        try:
            body = response.json()
        except ValueError as exc:
            raise StepFailed(f"{expect} answer is not JSON: {response.text[:200]!r}") from exc
        wanted = answer if expect < 300 else ERROR_TYPE[area]
        if expect == 200 and answer is None and isinstance(body, dict) and body.get("@type") is None:
            return body
        problems = self.peer.schemas.errors(body, expected=wanted)
        if problems or not isinstance(body, dict):  # a body that is no object always has problems
            raise StepFailed(f"{expect} answer is not a valid {wanted}: {'; '.join(problems[:3])}")
        return body


def _area(path: str) -> str:
    return path.strip("/").split("/")[0]


@dataclass(frozen=True)
class Send:
    """Send a message to the connector under test and check the answer."""

    build: Builder
    path: str  # below the DSP base, with {providerPid} / {consumerPid}
    expect: int = 200
    answer: str | None = None  # the @type a 2xx answer must have (default: the process type for a 201)
    state: ProcessState | None = None  # the state a 201 answer must report

    async def __call__(self, run: Run) -> None:
        body = self.build(run)
        names = {k: quote(v, safe=":") for k, v in run.vars.items() if isinstance(v, str)}
        url = run.target.dsp_url + self.path.format(**names)
        response = await run.peer.post(url, body, run.target.participant_id)
        area = _area(self.path)
        answer = self.answer or (PROCESS_TYPE[area] if self.expect == 201 else None)
        document = run.check(response, self.expect, area, answer)
        if self.expect == 201:
            run.learn(document)
            if self.state and document.get("state") != self.state:
                raise StepFailed(f"the 201 answer reports {document.get('state')}, expected {self.state}")
        if self.answer == "Catalog" and document.get("participantId") != run.target.participant_id:
            raise StepFailed(f"the catalog's participantId is {document.get('participantId')!r}")

    def __str__(self) -> str:
        return f"send {self.build.__name__} to {self.path} (expect {self.expect})"


@dataclass(frozen=True)
class Receive:
    """Wait for a message the connector under test sends to the harness."""

    kind: str
    event: str | None = None  # a ContractNegotiationEventMessage's eventType
    has: str | None = None  # a property the message must carry

    async def __call__(self, run: Run) -> None:
        try:
            record = await run.peer.receive(self.kind, run.pids(), run.within)
        except TimeoutError as exc:
            raise StepFailed(str(exc)) from exc
        message = record.message
        if self.event and message.get("eventType") != self.event:
            raise StepFailed(f"{self.kind} has eventType {message.get('eventType')!r}, expected {self.event}")
        if self.has and not message.get(self.has):
            raise StepFailed(f"{self.kind} carries no {self.has}")
        run.learn(record.answer)
        run.learn(message)
        if self.kind == "ContractRequestMessage" and isinstance(message.get("offer"), dict):
            run.vars["asked"] = message["offer"].get("permission")  # what an agreement must not exceed
        if self.kind == "ContractAgreementMessage" and isinstance(message.get("agreement"), dict):
            document = {k: v for k, v in message["agreement"].items() if k != dsp.SIGNATURE}
            run.vars["agreement"], run.vars["agreementId"] = document, document.get("@id")

    def __str__(self) -> str:
        return f"receive {self.kind}" + (f" {self.event}" if self.event else "")


@dataclass(frozen=True)
class State:
    """The process at the connector under test reaches `state` (GET, polled briefly)."""

    area: Process
    state: ProcessState

    async def __call__(self, run: Run) -> None:
        deadline = asyncio.get_running_loop().time() + run.within
        url = f"{run.target.dsp_url}/{self.area}/{quote(run.own_pid, safe=':')}"
        while True:
            response = await run.peer.get(url, run.target.participant_id)
            found = run.check(response, 200, self.area, PROCESS_TYPE[self.area]).get("state")
            if found == self.state:
                return
            if asyncio.get_running_loop().time() > deadline:
                raise StepFailed(f"the {self.area[:-1]} is {found}, expected {self.state}")
            await asyncio.sleep(0.05)

    def __str__(self) -> str:
        return f"state {self.state}"


@dataclass(frozen=True)
class Unknown:
    """An unknown process id answers 404 with a DSP error."""

    area: Process

    async def __call__(self, run: Run) -> None:
        url = f"{run.target.dsp_url}/{self.area}/{quote(new_id(), safe=':')}"
        run.check(await run.peer.get(url, run.target.participant_id), 404, self.area, None)

    def __str__(self) -> str:
        return f"GET unknown {self.area[:-1]}"


@dataclass(frozen=True)
class Version:
    """`/.well-known/dspace-version` answers without a token and names 2025-1 at the DSP path."""

    async def __call__(self, run: Run) -> None:
        response = await run.peer.get(run.target.root + "/.well-known/dspace-version", None)
        if response.status_code != 200:
            raise StepFailed(f"expected 200, got {response.status_code}: {response.text[:200]}")
        body = response.json()
        if problems := run.peer.schemas.errors(body):
            raise StepFailed("invalid version document: " + "; ".join(problems[:3]))
        path = urlsplit(run.target.dsp_url).path.rstrip("/")
        versions = [(v.get("version"), v.get("path", "").rstrip("/")) for v in body["protocolVersions"]]
        if (dsp.VERSION, path) not in versions:
            raise StepFailed(f"no version {dsp.VERSION} at {path!r}: {versions}")

    def __str__(self) -> str:
        return "GET /.well-known/dspace-version"


@dataclass(frozen=True)
class Dataset:
    """GET a dataset of the catalog (the first one, or an unknown id)."""

    known: bool = True

    async def __call__(self, run: Run) -> None:
        dataset = run.vars.get("dataset") if self.known else new_id()
        if dataset is None:
            raise StepFailed("the catalog offers no dataset")
        url = f"{run.target.dsp_url}/catalog/datasets/{quote(dataset, safe=':')}"
        response = await run.peer.get(url, run.target.participant_id)
        body = run.check(response, 200 if self.known else 404, "catalog", "Dataset")
        if self.known and body.get("@id") != dataset:
            raise StepFailed(f"asked for dataset {dataset}, got {body.get('@id')!r}")

    def __str__(self) -> str:
        return "GET " + ("a dataset" if self.known else "an unknown dataset")


@dataclass(frozen=True)
class Operator:
    """The connector's operator acts through the management API (scenario skipped without it)."""

    action: Action

    async def __call__(self, run: Run) -> None:
        await self.action(run)

    def __str__(self) -> str:
        return f"operator: {self.action.__name__.replace('_', ' ')}"


@dataclass(frozen=True)
class NewProcess:
    """Start a new process after a negotiation: keep its agreement, forget its pids."""

    async def __call__(self, run: Run) -> None:
        run.vars.pop("providerPid", None)
        run.vars.pop("consumerPid", None)
        if run.role == "provider":
            run.vars["consumerPid"] = new_id()

    def __str__(self) -> str:
        return "new process"


@dataclass(frozen=True)
class Script:
    """The harness answers the next message of `kind` with `status` (a scripted error)."""

    kind: str
    status: int

    async def __call__(self, run: Run) -> None:
        area = "transfers" if self.kind.startswith("Transfer") else "negotiations"
        error = dsp.error(ERROR_TYPE[area], code=str(self.status), reason=["scripted by the self-test"], **_raw(run))
        run.peer.scripted[self.kind] = (self.status, error)

    def __str__(self) -> str:
        return f"answer the next {self.kind} with {self.status}"


def _raw(run: Run) -> dict[str, str | None]:
    return {"provider_pid": run.vars.get("providerPid"), "consumer_pid": run.vars.get("consumerPid")}


Step = Send | Receive | State | Unknown | Version | Dataset | Operator | NewProcess | Script
