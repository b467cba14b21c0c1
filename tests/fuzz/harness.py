"""A data space the fuzzer runs against: a broker, a provider and a consumer on loopback ports, served by
an event loop in a thread of its own, so hypothesis drives it from plain (synchronous) test functions.

The harness prepares one finished negotiation and one started pull transfer (real ids for the paths),
hands out valid credentials of every kind, captures every error the servers log, and after the run
checks that nothing is wedged: every `/health` answers, a new negotiation and transfer complete (the
outbox delivers), the broker crawls a connector registered after the run, and every audit chain verifies.
"""

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Coroutine
from concurrent.futures import Future
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
from jwt.api_jws import PyJWS

from connector.transfers import Transfer
from tessera import dsp
from tessera.clock import parse, utcnow
from tessera.identity import SigningKey, TokenClient
from tessera.store import Database
from tests.dataspace import Dataspace, Site, dataspace, negotiate, publish, start_transfer, write_people_csv
from tests.fuzz.endpoints import Credential, Service, Targets
from tests.fuzz.values import dumps

T = TypeVar("T")
# Errors the edge logs for the 5xx it answers: the status already tells (502 is a peer's refusal).
ANSWERED = ("request failed: ", " failed: ")


def sign_any(signer: SigningKey, claims: dict[str, Any]) -> str:
    """A JWT over any claims (pyjwt's encode would refuse a non-string iss; `dumps` writes NaN, 1e400 …)."""
    return PyJWS().encode(dumps(claims).encode(), signer.key, algorithm="ES256", headers={"kid": signer.kid})


class ErrorLog(logging.Handler):
    """Every record at ERROR or above that a server logs, except the edge's note on a 5xx it answered."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        answered = record.name in ("tessera.errors", "tessera.protocol") and record.exc_info is None
        if not answered:
            self.records.append(record)

    def take(self) -> list[str]:
        found = [f"{r.name}: {r.getMessage()}" + (f" ({r.exc_info[1]!r})" if r.exc_info else "") for r in self.records]
        self.records.clear()
        return found


class Harness:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-dataspace", daemon=True)
        self.errors = ErrorLog()
        self.statuses: Counter[int] = Counter()
        self.faults: Counter[str] = Counter()
        self.endpoints: Counter[str] = Counter()
        self.slowest: tuple[float, str] = (0.0, "")
        self._clients: dict[str, TokenClient] = {}  # caller -> its token client, in the data space's loop
        self.targets: Targets | None = None
        self._space: Dataspace | None = None
        self._context: Any = None
        self._data_token: tuple[str, float] = ("", 0.0)

    # -- running coroutines in the data space's loop --------------------------------------------------

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout)

    def start(self) -> Targets:
        for name in ("", "uvicorn"):
            logging.getLogger(name).addHandler(self.errors)
        self.thread.start()
        return self.run(self._start(), timeout=120)

    def stop(self) -> None:
        try:
            if self._context is not None:
                self.run(self._context.__aexit__(None, None, None))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            for name in ("", "uvicorn"):
                logging.getLogger(name).removeHandler(self.errors)

    @property
    def space(self) -> Dataspace:
        assert self._space is not None
        return self._space

    def site(self, name: str) -> Site:
        return self.space.sites[f"urn:tessera:{name}"]

    async def _start(self) -> Targets:
        self._context = dataspace(self.root)
        self._space = space = await self._context.__aenter__()
        provider = await space.start(await space.admit("provider", region="EU-DE"))
        consumer = await space.start(await space.admit("consumer", region="EU-FR"))
        data_file = write_people_csv(self.root / "people.csv")
        offer = await publish(provider, data_file)
        negotiation = await negotiate(consumer, provider, offer)
        assert negotiation["state"] == "FINALIZED", negotiation
        transfer = await start_transfer(consumer, negotiation["agreement_id"])
        assert transfer["state"] == "STARTED", transfer
        registered = await provider.api.put("/registration", json={"title": "Provider"})
        assert registered.status_code == 200, registered.text
        ids = {
            "provider": provider.id,
            "consumer": consumer.id,
            "asset": offer["asset_id"],
            "offer": offer["id"],
            "policy": offer["usage_policy_id"],
            "agreement": negotiation["agreement_id"],
            "provider_negotiation": negotiation["provider_pid"],
            "consumer_negotiation": negotiation["consumer_pid"],
            "provider_transfer": transfer["provider_pid"],
            "consumer_transfer": transfer["consumer_pid"],
            "product": registered.json()["offerings"][0]["product_code"],
            "data_file": str(data_file),
        }
        self._data_token = (await self._stored_data_token(consumer, transfer["id"]), time.monotonic())
        urls: dict[Service, str] = {
            "broker": space.broker_url,
            "provider": provider.config.url,
            "consumer": consumer.config.url,
        }
        keys = {"provider": provider.config.management_token, "consumer": consumer.config.management_token}
        return Targets(urls, keys, ids, self.credential, partial(sign_any, SigningKey.load(consumer.config.key_path)))

    async def _stored_data_token(self, consumer: Site, transfer_id: str) -> str:
        db = await Database.open(consumer.config.database_url)
        try:
            async with db.session() as session:
                transfer = await session.get(Transfer, transfer_id)
        finally:
            await db.close()
        assert transfer is not None and transfer.data_address is not None
        token = dsp.endpoint_property(transfer.data_address, "authorization")
        assert token is not None
        return token

    # -- credentials ----------------------------------------------------------------------------------

    def credential(self, kind: Credential, service: Service = "provider") -> str:
        """A valid credential of `kind` for a request to `service` (the other connector or the consumer calls)."""
        if kind == "api key":
            return self.site("consumer" if service == "consumer" else "provider").config.management_token
        if kind == "data token":
            return self._fresh_data_token()
        if kind == "broker token":
            return self.run(self._token("consumer", self.space.broker_url))
        caller, audience = ("provider", "consumer") if service == "consumer" else ("consumer", "provider")
        return self.run(self._token(caller, f"urn:tessera:{audience}"))

    async def _token(self, caller: str, audience: str) -> str:
        if caller not in self._clients:
            site = self.site(caller)
            http = await self.space.stack.enter_async_context(httpx.AsyncClient(timeout=10))
            self._clients[caller] = TokenClient(
                http,
                signer=SigningKey.load(site.config.key_path),
                participant_id=site.id,
                authority_url=self.space.broker_url,
            )
        return await self._clients[caller].token_for(audience)

    def _fresh_data_token(self) -> str:
        token, fetched = self._data_token
        if time.monotonic() - fetched > 300:
            pid = self.site("provider").id
            consumer = self.site("consumer")
            transfers = self.run(consumer.api.get("/transfers")).json()["items"]
            provider_pid = next(t["provider_pid"] for t in transfers if t["state"] == "STARTED")
            url = f"{self.site('provider').config.url}/data/{provider_pid}/token"
            access = self.run(self._token("consumer", pid))
            answer = httpx.post(url, headers={"Authorization": f"Bearer {access}"}, timeout=10)
            if answer.status_code == 200:
                token = answer.json()["token"]
            self._data_token = (token, time.monotonic())
        return token

    # -- after the run --------------------------------------------------------------------------------

    def check_unwedged(self) -> dict[str, Any]:
        return self.run(self._check_unwedged(), timeout=180)

    async def _check_unwedged(self) -> dict[str, Any]:
        provider, consumer = self.site("provider"), self.site("consumer")
        async with httpx.AsyncClient(timeout=5) as http:
            for url in (self.space.broker_url, provider.config.url, consumer.config.url):
                health = await http.get(url + "/health")
                assert health.status_code == 200 and health.json()["status"] == "ok", (url, health.text)
            # The outbox delivers: a new negotiation and transfer run to the end.
            offer = await publish(provider, Path(self.site("provider").config.directory.parent / "people.csv"))
            negotiation = await negotiate(consumer, provider, offer)
            assert negotiation["state"] == "FINALIZED", negotiation
            transfer = await start_transfer(consumer, negotiation["agreement_id"])
            assert transfer["state"] == "STARTED", transfer
            pulled = await consumer.api.get(f"/transfers/{transfer['id']}/data", params={"purpose": "research"})
            assert pulled.status_code == 200, pulled.text
            # The crawler runs: the provider registers again now (its write quota is untouched by the
            # fuzzer, who writes as the consumer), and the broker crawls it afresh.
            before = utcnow()
            registered = await provider.api.put("/registration", json={"title": "Provider after the run"})
            assert registered.status_code == 200, registered.text
            crawled = await self._crawled_after(http, provider.id, before)
            verified = {}
            for site in (provider, consumer):
                report = (await site.api.get("/audit/verify")).json()
                assert report["ok"] is True, report
                verified[site.id] = report
        return {"crawled": crawled, "audit": verified}

    async def _crawled_after(self, http: httpx.AsyncClient, participant: str, since: datetime) -> str:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            rows = (await http.get(self.space.broker_url + "/status")).json()["connectors"]
            for row in rows:
                crawled = row.get("crawled_at")
                if row["participant_id"] == participant and crawled and parse(crawled) >= since:
                    return str(crawled)
            await asyncio.sleep(0.2)
        raise AssertionError(f"the broker did not crawl {participant} within 30 s")
