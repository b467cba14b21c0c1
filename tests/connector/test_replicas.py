"""Replicas: two connector processes with one identity on one PostgreSQL database, behind a balancer.

Write transactions are serialised across the replicas in the database (an advisory lock), so the audit
chain and the use counters stay exact whichever replica a request reaches; background work (outbox
queues, pushes, sweeps) is claimed by leases, so a replica killed with SIGKILL at any step of an
exchange leaves it to the other, which completes it with nothing lost or done twice.
"""

import asyncio
import itertools
import json
import os
import shutil
import signal
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connector.app import create_app
from connector.config import ConnectorConfig
from policies.patterns import PatternUse, render
from tests.dataspace import Dataspace, Site, management_client, negotiate, publish, start_transfer
from tests.faults import ConnectorProcess, message_type
from tests.postgres import Postgres
from tests.utils import run_server, unused_port

LEASE_SECONDS = 1.0  # short, so a killed replica's work is taken over quickly
HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}


class Balancer:
    """Round-robin over the replicas, skipping one that does not answer; `/to-consumer/...` goes to the
    consumer, whose callback address in messages to the provider is rewritten to pass here. Like
    `tests.faults.Relay`, it can hold back one kind of DSP message (answering 503)."""

    def __init__(self, replicas: list[str], consumer_url: str) -> None:
        self.replicas = replicas
        self.consumer_url = consumer_url.rstrip("/")
        self.base = ""  # set once served
        self.held: set[str] = set()
        self.arrived: dict[str, asyncio.Event] = {}
        self.served: Counter[str] = Counter()  # DSP requests each replica answered
        self.last_port = 0  # of the replica that answered the last DSP request
        self._turn = itertools.count()
        methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
        self.app = Starlette(routes=[Route("/{path:path}", self.forward, methods=methods)])

    def hold(self, message_type: str) -> asyncio.Event:
        self.held.add(message_type)
        return self.arrived.setdefault(message_type, asyncio.Event())

    def release(self, message_type: str) -> None:
        self.held.discard(message_type)

    async def forward(self, request: Request) -> Response:
        body = await request.body()
        kind = message_type(body)
        if kind in self.held:
            self.arrived.setdefault(kind, asyncio.Event()).set()
            return Response(status_code=503)
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        headers = {k: v for k, v in request.headers.items() if k not in HOP_HEADERS}
        if path.startswith("/to-consumer/"):
            return await _send(request.method, self.consumer_url + path.removeprefix("/to-consumer"), body, headers)
        body = body.replace(f"{self.consumer_url}/dsp".encode(), f"{self.base}/to-consumer/dsp".encode())
        first = next(self._turn)
        for i in range(len(self.replicas)):
            replica = self.replicas[(first + i) % len(self.replicas)]
            try:
                answer = await _send(request.method, replica + path, body, headers)
            except httpx.TransportError:
                continue  # down: the next replica
            if path.startswith("/dsp"):
                self.served[replica] += 1
                self.last_port = int(replica.rsplit(":", 1)[1])
            return answer
        return Response(status_code=502)


async def _send(method: str, url: str, body: bytes, headers: dict[str, str]) -> Response:
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.request(method, url, content=body, headers=headers)
    kept = {k: v for k, v in answer.headers.items() if k not in HOP_HEADERS | {"content-encoding"}}
    return Response(answer.content, status_code=answer.status_code, headers=kept)


def replica_configs(config: ConnectorConfig, database_url: str, public_url: str, count: int) -> list[ConnectorConfig]:
    """`count` copies of a connector's configuration and key, on their own ports, sharing one database and
    announcing the balancer's address."""
    configs = []
    for i in range(count):
        directory = config.directory.with_name(f"{config.directory.name}-{i}")
        directory.mkdir()
        shutil.copy(config.key_path, directory / config.key_path.name)
        replica = replace(
            config,
            directory=directory,
            port=unused_port(),
            url=public_url,
            database_url=database_url,
            lease_seconds=LEASE_SECONDS,
        )
        replica.save()
        configs.append(replica)
    return configs


def libpq(database_url: str) -> str:
    return database_url.replace("postgresql+asyncpg://", "postgresql://")


async def query(database_url: str, sql: str) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(libpq(database_url)) as connection:
        return list(await (await connection.execute(sql)).fetchall())


@dataclass
class Replicated:
    """A provider served by replicas behind a balancer, and a consumer (its own SQLite) that talks to it."""

    provider: Site
    consumer: Site
    balancer: Balancer
    database_url: str
    processes: list[ConnectorProcess]  # when the replicas run as processes
    killed: list[ConnectorProcess] = field(default_factory=list)

    restarting: list["asyncio.Task[None]"] = field(default_factory=list)

    async def kill_the_busy_replica(self) -> None:
        """SIGKILL the replica that holds a lease on an outbox queue (it is sending the held message), else
        the one that answered the last DSP message; it restarts meanwhile (as an orchestrator restarts
        it), which takes longer than its leases take to expire: the other replica takes over."""
        await asyncio.gather(*self.restarting)  # both replicas up, so one is left
        leases = await query(self.database_url, "SELECT holder FROM lease WHERE resource LIKE 'outbox:%'")
        pids = {int(holder.split(":")[1]) for (holder,) in leases}
        busy = [p for p in self.processes if p.process and p.process.pid in pids]
        victim = busy[0] if busy else next(p for p in self.processes if p.config.port == self.balancer.last_port)
        victim.kill()
        self.killed.append(victim)
        self.restarting = [asyncio.create_task(victim.start())]

    @property
    def ports(self) -> list[int]:
        return [int(url.rsplit(":", 1)[1]) for url in self.balancer.replicas]

    async def audit(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = (await self.provider.api.get("/audit", params={"limit": 1000})).json()["items"]
        return items

    async def chain_ok(self) -> None:
        report = (await self.provider.api.get("/audit/verify", params={"local": "true"})).json()
        assert report["ok"], report


async def replicated(
    space: Dataspace, stack: AsyncExitStack, consumer: Site, postgres: Postgres, *, processes: bool
) -> Replicated:
    config = await space.admit("provider")
    port = unused_port()
    public_url = f"http://127.0.0.1:{port}"
    database_url = postgres.create_database()
    configs = replica_configs(config, database_url, public_url, 2)
    balancer = Balancer([f"http://127.0.0.1:{c.port}" for c in configs], consumer.config.url)
    balancer.base = public_url
    running: list[ConnectorProcess] = []
    if processes:
        running = [ConnectorProcess(c) for c in configs]
        stack.callback(lambda: [p.stop() for p in running])
        await asyncio.gather(*(p.start() for p in running))
    else:
        for replica in configs:
            await stack.enter_async_context(run_server(create_app(replica), replica.port))
    await stack.enter_async_context(run_server(balancer.app, port))
    shared = replace(configs[0], port=port)
    provider = Site(shared, await stack.enter_async_context(management_client(shared)))
    return Replicated(provider, consumer, balancer, database_url, running)


@pytest.fixture
async def in_process(space: Dataspace, consumer: Site, postgres: Postgres) -> AsyncIterator[Replicated]:
    async with AsyncExitStack() as stack:
        yield await replicated(space, stack, consumer, postgres, processes=False)


@pytest.fixture
async def as_processes(space: Dataspace, consumer: Site, postgres: Postgres) -> AsyncIterator[Replicated]:
    async with AsyncExitStack() as stack:
        running = await replicated(space, stack, consumer, postgres, processes=True)
        yield running
        await asyncio.gather(*running.restarting, return_exceptions=True)


async def data_address(consumer: Site, transfer_id: str) -> tuple[str, dict[str, str]]:
    """The data URL and Authorization header of a started pull, as the consumer's connector keeps them."""
    db = consumer.config.directory / "connector.db"
    (text,) = await asyncio.to_thread(_read_one, db, "SELECT data_address FROM transfer WHERE id = ?", transfer_id)
    address = json.loads(text)
    token = next(p["value"] for p in address["endpointProperties"] if p["name"] == "authorization")
    return address["endpoint"], {"Authorization": f"Bearer {token}"}


async def long_poll(ex: "Replicated", port: int, path: str, state: str) -> dict[str, Any]:
    """`GET path?wait_for=state` on one replica, which answers once it sees the state (or after 20 s)."""
    headers = {"Authorization": f"Bearer {ex.provider.config.management_token}"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/api", headers=headers, timeout=30) as api:
        found: dict[str, Any] = (await api.get(path, params={"wait_for": state, "timeout": 20})).json()
        return found


def _read_one(path: Path, sql: str, *args: str) -> tuple[Any, ...]:
    import sqlite3

    with sqlite3.connect(path, timeout=30) as db:
        row: tuple[Any, ...] = db.execute(sql, args).fetchone()
        return row


async def test_an_exchange_works_whichever_replica_each_message_reaches(
    in_process: Replicated, people_csv: Path
) -> None:
    ex = in_process
    offer = await publish(ex.provider, people_csv)
    negotiation = await negotiate(ex.consumer, ex.provider, offer)
    assert negotiation["state"] == "FINALIZED", negotiation
    transfer = await start_transfer(ex.consumer, negotiation["agreement_id"])
    url, headers = await data_address(ex.consumer, transfer["id"])
    async with httpx.AsyncClient(headers=headers) as http:
        pulled = await asyncio.gather(*(http.get(url, params={"purpose": "research"}) for _ in range(4)))
    assert Counter(r.status_code for r in pulled) == {200: 3, 403: 1}  # the policy grants 3 uses
    # A long poll on each replica: one commits the completion, the other must notice it too.
    polls = [
        asyncio.create_task(long_poll(ex, port, f"/transfers/{transfer['provider_pid']}", "COMPLETED"))
        for port in ex.ports
    ]
    await asyncio.sleep(0.3)
    await ex.consumer.post(f"/transfers/{transfer['id']}/complete", {}, 200)
    async with asyncio.timeout(5):  # well before the polls' own 20 s
        assert [(await poll)["state"] for poll in polls] == ["COMPLETED", "COMPLETED"]

    assert len(ex.balancer.served) == 2, ex.balancer.served  # both replicas answered DSP messages
    assert [a["id"] for a in (await ex.provider.api.get("/agreements")).json()["items"]] == [
        negotiation["agreement_id"]
    ]
    await ex.chain_ok()


async def test_fifty_parallel_pulls_on_two_replicas_under_ten_uses_let_exactly_ten_through(
    in_process: Replicated, people_csv: Path
) -> None:
    ex = in_process
    policy = render("tessera.usage.counted", [PatternUse.of("max_uses", max_uses=10)])
    offer = await publish(ex.provider, people_csv, policy=policy)
    negotiation = await negotiate(ex.consumer, ex.provider, offer)
    transfer = await start_transfer(ex.consumer, negotiation["agreement_id"])
    url, headers = await data_address(ex.consumer, transfer["id"])
    async with httpx.AsyncClient(headers=headers, timeout=30) as http:
        responses = await asyncio.gather(*(http.get(url, params={"purpose": "research"}) for _ in range(50)))

    codes = Counter(r.status_code for r in responses)
    assert codes == {200: 10, 403: 40}, codes
    counter = next(
        c
        for c in (await ex.provider.api.get("/usage")).json()["items"]
        if c["agreement_id"] == negotiation["agreement_id"]
    )
    assert (counter["uses"], counter["denials"]) == (10, 40)
    actions = Counter(e["action"] for e in await ex.audit())
    assert (actions["usage.allowed"], actions["usage.denied"]) == (10, 40), actions
    await ex.chain_ok()


NEGOTIATION_STEPS = [
    "ContractRequestMessage",
    "ContractAgreementMessage",
    "ContractAgreementVerificationMessage",
    "ContractNegotiationEventMessage",
]
TRANSFER_STEPS = ["TransferRequestMessage", "TransferStartMessage", "TransferCompletionMessage"]


async def settled_outbox(ex: Replicated) -> list[tuple[Any, ...]]:
    """The provider's outbox once nothing in it is pending (a checkpoint may still be on its way)."""
    for _ in range(100):
        rows = await query(ex.database_url, "SELECT process_id, body, status FROM outbox_message")
        if all(status != "pending" for *_, status in rows):
            return rows
        await asyncio.sleep(0.1)
    raise AssertionError(f"outbox still pending: {rows}")


async def assert_nothing_lost_or_doubled(ex: Replicated, agreements: list[str]) -> None:
    for site in (ex.provider, ex.consumer):
        assert sorted(a["id"] for a in (await site.api.get("/agreements")).json()["items"]) == sorted(agreements)
    outbox = await settled_outbox(ex)
    assert all(status == "delivered" for *_, status in outbox), outbox
    queued = Counter((pid, json.loads(body).get("@type")) for pid, body, _ in outbox if '"@type"' in body)
    assert all(n == 1 for n in queued.values()), queued  # every DSP message was queued once
    entries = await ex.audit()
    acts = Counter((e["action"], e["subject"]) for e in entries if e["action"] != "audit.checkpoint")
    assert all(n == 1 for n in acts.values()), [act for act, n in acts.items() if n > 1]
    await ex.chain_ok()


async def request_offer(ex: Replicated) -> str:
    offer = (await ex.provider.api.get("/offers")).json()["items"][0]
    started = await ex.consumer.post(
        "/negotiations",
        {
            "provider_id": ex.provider.id,
            "provider_url": ex.provider.dsp_url,
            "offer_id": offer["id"],
            "target": offer["asset_id"],
        },
    )
    return str(started["id"])


async def negotiate_killing_at(ex: Replicated, step: str | None) -> dict[str, Any]:
    held = ex.balancer.hold(step) if step else None
    negotiation_id = await request_offer(ex)
    if held is not None and step is not None:
        await held.wait()
        await ex.kill_the_busy_replica()
        ex.balancer.release(step)
    done = await ex.consumer.wait_for(f"/negotiations/{negotiation_id}", "FINALIZED", "TERMINATED", within=30)
    assert done["state"] == "FINALIZED", (step, done)
    await ex.provider.wait_for(f"/negotiations/{done['provider_pid']}", "FINALIZED", within=30)
    return done


async def transfer_killing_at(ex: Replicated, agreement_id: str, step: str) -> None:
    held = ex.balancer.hold(step)
    transfer = await ex.consumer.post("/transfers", {"agreement_id": agreement_id})
    if step == "TransferCompletionMessage":
        await ex.consumer.wait_for(f"/transfers/{transfer['id']}", "STARTED", within=30)
        await ex.consumer.post(f"/transfers/{transfer['id']}/complete", {}, 200)
    await held.wait()
    await ex.kill_the_busy_replica()
    ex.balancer.release(step)
    if step != "TransferCompletionMessage":
        await ex.consumer.wait_for(f"/transfers/{transfer['id']}", "STARTED", within=30)
        await ex.consumer.post(f"/transfers/{transfer['id']}/complete", {}, 200)
    ours = await ex.consumer.wait_for(f"/transfers/{transfer['id']}", "COMPLETED", within=30)
    assert ours["state"] == "COMPLETED", (step, ours)
    await ex.provider.wait_for(f"/transfers/{ours['provider_pid']}", "COMPLETED", within=30)


async def test_a_replica_killed_at_any_step_leaves_the_exchange_to_the_other(
    as_processes: Replicated, people_csv: Path
) -> None:
    """One exchange per step; the replica busy at that step is killed with SIGKILL."""
    ex = as_processes
    await publish(ex.provider, people_csv)
    agreements = []
    for step in NEGOTIATION_STEPS:
        agreements.append((await negotiate_killing_at(ex, step))["agreement_id"])
    for step in TRANSFER_STEPS:
        agreement_id = (await negotiate_killing_at(ex, None))["agreement_id"]
        agreements.append(agreement_id)
        await transfer_killing_at(ex, agreement_id, step)

    assert len(ex.killed) == len(NEGOTIATION_STEPS) + len(TRANSFER_STEPS)
    assert len((await ex.provider.api.get("/transfers")).json()["items"]) == len(TRANSFER_STEPS)
    await assert_nothing_lost_or_doubled(ex, agreements)


async def test_a_replica_told_to_stop_finishes_the_pull_in_flight_first(
    as_processes: Replicated, tmp_path: Path
) -> None:
    ex = as_processes
    big = tmp_path / "big.csv"
    big.write_text("n,text\n" + "".join(f"{i},{'x' * 90}\n" for i in range(300_000)))  # ~28 MB
    policy = render("tessera.usage.counted", [PatternUse.of("max_uses", max_uses=10)])
    offer = await publish(ex.provider, big, policy=policy)
    negotiation = await negotiate(ex.consumer, ex.provider, offer)
    transfer = await start_transfer(ex.consumer, negotiation["agreement_id"])
    url, headers = await data_address(ex.consumer, transfer["id"])
    stopping = ex.processes[0]
    direct = url.replace(ex.balancer.base, f"http://127.0.0.1:{stopping.config.port}")

    async with httpx.AsyncClient(headers=headers, timeout=30) as http, http.stream("GET", direct) as response:
        assert response.status_code == 200
        chunks = response.aiter_bytes()
        received = len(await anext(chunks))
        assert stopping.process is not None
        os.killpg(stopping.process.pid, signal.SIGTERM)  # mid-stream: the rest is still to send
        await asyncio.sleep(0.5)
        assert stopping.process.poll() is None  # it waits for the pull
        async for chunk in chunks:
            received += len(chunk)
    assert received == big.stat().st_size
    await asyncio.to_thread(stopping.process.wait, 10)  # uvicorn ends by re-raising SIGTERM: -15
    assert "Application shutdown complete" in (stopping.config.directory / "serve.log").read_text()
    holder = f":{stopping.process.pid}:"
    assert not [r for r in await query(ex.database_url, "SELECT holder FROM lease") if holder in r[0]]


async def test_a_console_session_from_one_replica_works_on_the_other(in_process: Replicated) -> None:
    """The session cookie is signed with a secret derived from the shared key: no session store to share."""
    first, second = (f"http://127.0.0.1:{port}/console" for port in in_process.ports)
    async with httpx.AsyncClient() as browser_like:
        signin = await browser_like.get(first + "/signin")
        csrf = signin.text.split('name="csrf" value="')[1].split('"')[0]
        key = in_process.provider.config.management_token
        assert (await browser_like.post(first + "/signin", data={"key": key, "csrf": csrf})).status_code == 303
        dashboard = await browser_like.get(second + "/")
        assert dashboard.status_code == 200 and in_process.provider.id in dashboard.text
