"""The outbox: messages to other connectors, stored before they are sent.

A state change and the message that announces it are written in one transaction; a worker then
delivers the message with a fresh access token for the recipient, at once, and again with backoff
while the peer is down. Messages of one process go out in order. Pending messages survive a restart.
Replicas on one database share the outbox: a replica claims a process's queue by a lease before it
sends the head message and releases it once the message is settled; a crashed replica's queues are
delivered by another once its leases expire (so a message may be sent twice, never lost).
"""

import asyncio
import collections
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import update
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from connector import timeline
from tessera import logs
from tessera.clock import utcnow
from tessera.errors import PeerError
from tessera.identity import TokenClient
from tessera.leases import POLL_SECONDS, Leases
from tessera.store import Database, Timestamp, UtcDateTime, unit_of_work

logger = logging.getLogger("tessera.outbox")

MAX_ATTEMPTS = 12
FIRST_BACKOFF = 0.2  # seconds; doubles per attempt
MAX_BACKOFF = 30.0
MAX_IN_FLIGHT = 32  # deliveries at once, each to a different process
IDLE = 3600.0  # seconds asleep with nothing pending, when no other replica can add messages
LEASE = "outbox:"  # + the process id: the lease on a process's queue


class OutboxMessage(SQLModel, table=True):
    __tablename__ = "outbox_message"

    id: int | None = Field(default=None, primary_key=True)
    process_id: str = Field(index=True)  # our pid of the negotiation or transfer
    url: str
    audience: str  # the recipient's participant id, for its access token
    body: str  # the JSON text sent, the same bytes on every attempt (a peer recognises a retry by them)
    status: str = Field(default="pending", index=True)  # pending | delivered | failed
    attempts: int = 0
    next_attempt_at: Timestamp = Field(default_factory=utcnow, sa_type=UtcDateTime)
    last_error: str | None = None

    @property
    def kind(self) -> str | None:
        kind = self.document().get("@type")
        return kind if isinstance(kind, str) else None

    def document(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.body)
        return document


def enqueue(session: AsyncSession, *, process_id: str, url: str, audience: str, body: dict[str, Any]) -> None:
    """Add a message inside the caller's write transaction; `Outbox.wake()` after commit sends it."""
    session.add(OutboxMessage(process_id=process_id, url=url, audience=audience, body=json.dumps(body)))
    unit_of_work(session).queued = True


FailureHandler = Callable[[OutboxMessage], Awaitable[None]]
# Acts on a delivered message's reply inside the transaction that records the delivery.
ReplyHandler = Callable[[AsyncSession, OutboxMessage, Any], Awaitable[None]]


async def _ignore_reply(_session: AsyncSession, _message: OutboxMessage, _reply: Any) -> None:
    return None


class Outbox:
    """Delivers stored messages.

    `on_failure` hears of a message that will never be delivered; `on_reply` gets the JSON body the
    recipient answered a delivered message with (an initial request's reply names the peer's pid).
    """

    def __init__(
        self,
        db: Database,
        http: httpx.AsyncClient,
        tokens: TokenClient,
        leases: Leases,
        *,
        on_failure: FailureHandler,
        on_reply: ReplyHandler = _ignore_reply,
    ) -> None:
        self._db = db
        self._http = http
        self._tokens = tokens
        self._leases = leases
        self._on_failure = on_failure
        self._on_reply = on_reply
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.outcomes: collections.Counter[str] = collections.Counter()  # delivery attempts: delivered | retry | failed

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox")
        self.wake()

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def wake(self) -> None:
        self._wakeup.set()

    async def _run(self) -> None:
        while True:
            self._wakeup.clear()  # before delivering, so a wake during delivery is not lost
            try:
                delay = await self._deliver_due()
            except Exception:  # the worker must outlive a database hiccup; messages stay stored
                logger.exception("outbox delivery round failed; retrying")
                delay = MAX_BACKOFF / 10
            if self._db.shared:  # other replicas queue messages too, and may crash before sending them
                delay = min(delay, POLL_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=delay)

    async def _deliver_due(self) -> float:
        """Send what is due, many processes at once; return how long to sleep until the next retry."""
        while True:
            async with self._db.session() as session:
                query = select(OutboxMessage).where(OutboxMessage.status == "pending").order_by(col(OutboxMessage.id))
                pending = list(await session.exec(query))
            heads: dict[str, OutboxMessage] = {}
            for message in pending:
                heads.setdefault(message.process_id, message)  # a process's later messages wait their turn
            now = utcnow()
            due = [m for m in heads.values() if m.next_attempt_at <= now][:MAX_IN_FLIGHT]
            if not due:
                waits = [(m.next_attempt_at - now).total_seconds() for m in heads.values()]
                return max(0.05, min(waits)) if waits else IDLE
            sent = await asyncio.gather(*(self._deliver_claimed(message) for message in due))
            if not any(sent):  # every due queue is another replica's for now
                return POLL_SECONDS

    async def _deliver_claimed(self, message: OutboxMessage) -> bool:
        """Deliver `message` if this replica claims its queue and it is still pending; whether it did."""
        async with self._leases.holding(LEASE + message.process_id) as held:
            if not held:
                return False
            fresh = await self._still_due(message) if self._db.shared else message
            if fresh is None:
                return False
            await self._deliver(fresh)
            return True

    async def _still_due(self, message: OutboxMessage) -> OutboxMessage | None:
        """The message as stored now, if still due: another replica may have settled it, or tried it and backs
        off, between our read and our claim. (One process alone settles only what it claimed: no re-read.)"""
        async with self._db.session() as session:
            fresh = await session.get(OutboxMessage, message.id)
        if fresh is None or fresh.status != "pending" or fresh.next_attempt_at > utcnow():
            return None
        return fresh

    async def _deliver(self, message: OutboxMessage) -> None:
        """One message, on its own: whatever goes wrong with it is settled on it and stops no other."""
        logs.process_id.set(message.process_id)  # this delivery's own task: its log lines name the process
        try:
            await self._attempt(message)
        except Exception as exc:  # a bug or a value no check caught: this message fails, the loop goes on
            logger.exception("delivery of message %s failed unexpectedly", message.id)
            await self._settle(message, "failed", f"could not be sent: {type(exc).__name__}: {exc}")
            await self._on_failure(message)

    async def _attempt(self, message: OutboxMessage) -> None:
        try:
            token = await self._tokens.token_for(message.audience)
            response = await self._http.post(
                message.url,
                content=message.body,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            code: int | None = response.status_code
            if response.status_code < 300:
                return await self._delivered(message, response.status_code, _json_or_none(response))
            error = f"{response.status_code}: {response.text[:500]}"
            permanent = 400 <= response.status_code < 500 and response.status_code not in (408, 425, 429)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:  # will never be deliverable
            error, permanent, code = f"bad address {message.url!r}: {exc}", True, None
        except (httpx.TransportError, PeerError) as exc:
            error, permanent, code = f"unreachable: {exc}", False, None
        logger.warning("delivery of message %s to %s failed: %s", message.id, message.url, error)
        if permanent or message.attempts + 1 >= MAX_ATTEMPTS:
            await self._settle(message, "failed", error, code)
            await self._on_failure(message)
        else:
            await self._retry_later(message, error, code)

    async def _delivered(self, message: OutboxMessage, code: int, reply: Any) -> None:
        """One write: the delivery, its timeline event and what the reply tells us (a peer's pid)."""
        try:
            async with self._db.transaction() as session:
                await _mark(session, message, "delivered", None, code)
                await self._on_reply(session, message, reply)
        except Exception as exc:  # the message went out; what its reply should have done is logged
            logger.exception("the reply to message %s could not be handled", message.id)
            async with self._db.transaction() as session:
                await _mark(session, message, "delivered", None, code)
                timeline.record(session, message.process_id, "reply-failed", message.kind, detail=str(exc))
        message.status, message.attempts, message.last_error = "delivered", message.attempts + 1, None
        self.outcomes["delivered"] += 1

    async def _settle(
        self, message: OutboxMessage, status: str, error: str | None = None, code: int | None = None
    ) -> None:
        async with self._db.transaction() as session:
            await _mark(session, message, status, error, code)
        message.status, message.attempts, message.last_error = status, message.attempts + 1, error
        self.outcomes[status] += 1

    async def _retry_later(self, message: OutboxMessage, error: str, code: int | None) -> None:
        backoff = min(MAX_BACKOFF, FIRST_BACKOFF * 2**message.attempts)
        later = {
            "attempts": col(OutboxMessage.attempts) + 1,
            "next_attempt_at": utcnow() + timedelta(seconds=backoff),
            "last_error": error,
        }
        async with self._db.transaction() as session:
            await session.exec(update(OutboxMessage).where(col(OutboxMessage.id) == message.id).values(later))
            timeline.record(
                session,
                message.process_id,
                "retry",
                message.kind,
                status=code,
                detail=f"{error}; next attempt in {backoff:.1f} s",
            )
        message.attempts, message.last_error = message.attempts + 1, error
        self.outcomes["retry"] += 1


async def _mark(
    session: AsyncSession, message: OutboxMessage, status: str, error: str | None, code: int | None
) -> None:
    """Settle a stored message with one UPDATE (no read: `message` is the stored row as the worker read it)."""
    settled = {"status": status, "attempts": col(OutboxMessage.attempts) + 1, "last_error": error}
    await session.exec(update(OutboxMessage).where(col(OutboxMessage.id) == message.id).values(settled))
    kind = "sent" if status == "delivered" else "failed"
    timeline.record(session, message.process_id, kind, message.kind, status=code, detail=error)


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
