"""The running connector: its configuration and the live parts every request handler needs.

Built once in the app's lifespan and handed to handlers through `request.app.state.runtime` (`runtime_of`).
"""

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request

from connector import timeline
from connector.config import ConnectorConfig
from connector.metrics import ConnectorMetrics
from connector.outbox import FailureHandler, Outbox, ReplyHandler
from connector.schema import SCHEMA
from tessera.clock import utcnow
from tessera.errors import NotFound, PeerError, TokenRejected
from tessera.identity import Caller, JwksCache, SigningKey, TokenClient, TokenVerifier, bearer_token
from tessera.leases import POLL_SECONDS, Leases, holder_id
from tessera.participant_status import STATUS_PATH, ParticipantStatusCache
from tessera.policy import PolicyEngine, create_engine
from tessera.store import Database, unit_of_work

T = TypeVar("T")
PARTICIPANT_CACHE_SECONDS = 300
# A key that refuses a participant's signature is looked up again (it may have rotated its key), but at most
# this often: forged signatures cost no more than one broker lookup per participant and interval.
KEY_RECHECK_SECONDS = 5


class ParticipantDirectory:
    """Other participants' public keys, as the broker's authority registered them."""

    def __init__(self, http: httpx.AsyncClient, broker_url: str) -> None:
        self._http = http
        self._broker_url = broker_url.rstrip("/")
        self._cache: dict[str, tuple[dict[str, Any], float]] = {}
        self._rechecked: dict[str, float] = {}  # participant id -> when its key was last looked up again
        self._lock = asyncio.Lock()

    async def jwk(self, participant_id: str) -> dict[str, Any]:
        return dict((await self.record(participant_id))["jwk"])

    async def verified(
        self,
        participant_id: str,
        check: Callable[[dict[str, Any]], Awaitable[T]],
        refused: type[Exception] = TokenRejected,
    ) -> T:
        """`check(key)` with the participant's key; if the key refuses what it checks (`refused`), the
        participant may have rotated its key: check once more with the broker's current record."""
        jwk = await self.jwk(participant_id)
        try:
            return await check(jwk)
        except refused:
            if time.monotonic() - self._rechecked.get(participant_id, -math.inf) < KEY_RECHECK_SECONDS:
                raise
            self._rechecked[participant_id] = time.monotonic()
            current = dict((await self.record(participant_id, cached=False))["jwk"])
            if current == jwk:
                raise
            return await check(current)

    async def record(self, participant_id: str, *, cached: bool = True) -> dict[str, Any]:
        """The authority's public record of a participant: id, org, region, security profile, key
        (`cached=False`: the broker's record now)."""
        async with self._lock:
            kept = self._cache.get(participant_id)
            if cached and kept and kept[1] > time.time():
                return kept[0]
            url = f"{self._broker_url}/participants/{quote(participant_id, safe='')}"
            try:
                response = await self._http.get(url)
            except httpx.TransportError as exc:
                raise PeerError(f"broker unreachable for {participant_id}'s record: {exc}") from exc
            if response.status_code == 404:
                raise NotFound(f"the broker knows no participant {participant_id}")
            if response.status_code != 200:
                raise PeerError(f"broker has no record of {participant_id} ({response.status_code})")
            record: dict[str, Any] = response.json()
            self._cache[participant_id] = (record, time.time() + PARTICIPANT_CACHE_SECONDS)
            return record


class Runtime:
    def __init__(
        self,
        config: ConnectorConfig,
        db: Database,
        engine: PolicyEngine,
        http: httpx.AsyncClient,
        *,
        on_undeliverable: FailureHandler,
        on_reply: ReplyHandler,
        metrics: ConnectorMetrics | None = None,
    ) -> None:
        self.config = config
        self.db = db
        self.engine = engine
        self.http = http
        self.signer = SigningKey.load(config.key_path)  # our identity: client assertions, data tokens
        # What signs our agreements, by the crypto profile: the identity key, or an SM2 key bound to it.
        self.document_signer = config.crypto.signer(
            self.signer, participant_id=config.participant_id, sm2_key=config.sm2_key_path
        )
        self.tokens = TokenClient(
            http, signer=self.signer, participant_id=config.participant_id, authority_url=config.broker_url
        )
        broker = config.broker_url.rstrip("/")
        self.jwks = jwks = JwksCache(http, broker + "/.well-known/jwks.json")
        self.verifier = TokenVerifier(jwks, issuer=broker, audience=config.participant_id)
        self.participant_status = ParticipantStatusCache(
            http,
            broker + STATUS_PATH,
            jwks,
            issuer=broker,
            refresh=config.participant_status_refresh,
            grace=config.participant_status_grace,
        )
        self.participants = ParticipantDirectory(http, config.broker_url)
        self._tasks: set[asyncio.Task[None]] = set()
        self._watched: dict[str, asyncio.Event] = {}  # process id -> woken when it changes
        self.wake_sweeper: Callable[[], None] = lambda: None  # the app wires in the copies' sweeper
        # The clock usage decisions read (`input.now`); only a test moves it, through this attribute.
        self.clock: Callable[[], datetime] = utcnow
        # Background work this replica claims on a database other replicas share (tessera.leases).
        self.leases = Leases(db, holder_id(), seconds=config.lease_seconds)
        self.outbox = Outbox(db, http, self.tokens, self.leases, on_failure=on_undeliverable, on_reply=on_reply)
        self.metrics = metrics or ConnectorMetrics()
        self.metrics.watch(self.tokens, jwks, self.outbox)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run background work (a push) tied to this runtime; it is cancelled on shutdown."""
        task = asyncio.create_task(work)
        self._tasks.add(task)  # keep a reference, or the task may be garbage-collected mid-run
        task.add_done_callback(self._tasks.discard)

    async def _cancel_tasks(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def participant_id(self) -> str:
        return self.config.participant_id

    @classmethod
    @asynccontextmanager
    async def running(
        cls,
        config: ConnectorConfig,
        *,
        on_undeliverable: FailureHandler,
        on_reply: ReplyHandler,
        metrics: ConnectorMetrics | None = None,
    ) -> AsyncIterator["Runtime"]:
        db = await Database.open(config.database_url, schema=SCHEMA, audit_hash=config.crypto.audit_hash)
        engine = create_engine(config.policy_engine, opa_url=config.opa_url)
        async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=3.0)) as http:
            runtime = cls(
                config, db, engine, http, on_undeliverable=on_undeliverable, on_reply=on_reply, metrics=metrics
            )
            runtime.outbox.start()
            try:
                yield runtime
            finally:
                await runtime._cancel_tasks()
                await runtime.outbox.stop()
                await runtime.leases.release_all()  # the other replicas take over at once
                await engine.aclose()
                await db.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A write transaction; messages it put in the outbox are sent as soon as it commits."""
        async with self.db.transaction() as session:
            yield session
            # Every process this transaction loaded or added (flushed changes are no longer "dirty").
            objects = [*session.new, *session.identity_map.values()]
            touched = {obj.id for obj in objects if hasattr(obj, "state")}
            received = timeline.note_received(session, objects)  # the DSP message this request handles, if any
            answered = await timeline.note_reply(session, objects)  # and our answer to it, for a retry
            queued = unit_of_work(session).queued
        timeline.committed(received, answered)
        if queued:
            self.outbox.wake()
        for process_id in touched & self._watched.keys():
            self._watched.pop(process_id).set()

    def watch(self, process_id: str) -> asyncio.Event:
        """An event set when a write transaction that touches negotiation or transfer `process_id` commits.

        Take it before reading the process, so a change between the read and the wait is not missed.
        """
        return self._watched.setdefault(process_id, asyncio.Event())

    async def changed(self, event: asyncio.Event) -> None:
        """Wait for a `watch` event; on a shared database at most `POLL_SECONDS`, since the change
        may be committed by another replica, which sets no event here."""
        if not self.db.shared:
            await event.wait()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=POLL_SECONDS)

    async def authenticate(self, authorization: str | None) -> Caller:
        """The peer an `Authorization: Bearer` access token proves, unless the broker suspended it."""
        caller = await self.verifier.verify(bearer_token(authorization))
        await self.participant_status.require_active(caller.participant_id)
        return caller

    async def authorization(self, audience: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.tokens.token_for(audience)}"}


def runtime_of(request: Request) -> Runtime:
    """The runtime of the app that serves `request`."""
    runtime: Runtime = request.app.state.runtime
    return runtime
