"""The audit chain anchored outside our database: signed checkpoints of its head, sent to others to keep.

A checkpoint (`tessera.checkpoints`) is made inside the transaction whose audit entry ends a
negotiation or a transfer (`processes.log`), and goes to the broker and to the counter-party (if it
signed an agreement with us: a Tessera connector, not a plain DSP peer); the
`Anchorer` makes one every `audit_checkpoint_interval` seconds when the chain grew, for the broker. The
checkpoint and its deliveries are written in one transaction and sent by the durable outbox, one queue
per recipient (so a recipient never sees a sequence go back), so a restart loses none. Whoever holds
them lets `tessera audit verify` (`connector.audit_check`) find entries cut off or rewritten.
"""

import asyncio
import logging
from urllib.parse import quote

from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from connector.outbox import enqueue
from connector.runtime import Runtime
from tessera import audit
from tessera.checkpoints import Checkpoint, sign_checkpoint
from tessera.json import JSONObject
from tessera.store import Json

logger = logging.getLogger("tessera.anchoring")

RECEIPTS_PATH = "/audit/checkpoints"  # below a connector's DSP URL: where a counter-party files ours
LEASE = "sweep:anchoring"
QUEUE = "audit-checkpoints:"  # + the recipient: the outbox queue of checkpoints to one recipient


class MadeCheckpoint(SQLModel, table=True):
    """A checkpoint we signed; who it went to is in the outbox (queue `QUEUE + recipient`)."""

    __tablename__ = "audit_checkpoint"

    id: int | None = Field(default=None, primary_key=True)
    seq: int = Field(index=True)
    hash: str
    hash_alg: str
    at: str
    jws: str
    reason: str  # "periodic", or the process that ended
    recipients: list[str] = Field(default_factory=list, sa_type=Json)

    def public(self) -> JSONObject:
        return self.model_dump(mode="json", exclude={"id"})


def broker_url(runtime: Runtime) -> str:
    return runtime.config.broker_url.rstrip("/")


async def checkpoint(
    session: AsyncSession, runtime: Runtime, reason: str, *, counterparty: tuple[str, str] | None = None
) -> MadeCheckpoint | None:
    """Sign the chain's head as this transaction leaves it and queue it for the broker and the
    `counterparty` (its participant id and DSP URL); None while the chain is empty."""
    last = await audit.entries(session, limit=1)  # flushes this transaction's own entries first
    if not last:
        return None
    head = last[0]
    signed = Checkpoint.now(runtime.participant_id, head.seq, head.hash, head.hash_alg)
    jws = await asyncio.to_thread(sign_checkpoint, signed, runtime.document_signer)  # SM2 runs `openssl`
    broker = broker_url(runtime)
    deliveries = [(broker, f"{broker}/checkpoints/{quote(runtime.participant_id, safe='')}")]
    if counterparty is not None:
        deliveries.append((counterparty[0], counterparty[1].rstrip("/") + RECEIPTS_PATH))
    for audience, url in deliveries:
        enqueue(session, process_id=QUEUE + audience, url=url, audience=audience, body={"checkpoint": jws})
    made = MadeCheckpoint(
        seq=signed.seq,
        hash=signed.hash,
        hash_alg=signed.hash_alg,
        at=signed.at,
        jws=jws,
        reason=reason,
        recipients=[audience for audience, _ in deliveries],
    )
    session.add(made)
    return made


async def latest(session: AsyncSession) -> MadeCheckpoint | None:
    query = select(MadeCheckpoint).order_by(col(MadeCheckpoint.id).desc()).limit(1)
    return (await session.exec(query)).first()


async def checkpoint_if_grown(runtime: Runtime) -> MadeCheckpoint | None:
    """A periodic checkpoint for the broker, if the chain grew since the last checkpoint."""
    async with runtime.transaction() as session:
        last = await latest(session)
        head = await audit.entries(session, limit=1)
        if not head or (last is not None and last.seq >= head[0].seq):
            return None
        return await checkpoint(session, runtime, "periodic")


class Anchorer:
    """Makes the periodic checkpoints while the connector runs."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    async def run(self) -> None:
        interval = self._runtime.config.audit_checkpoint_interval
        while True:
            await asyncio.sleep(interval)
            try:
                async with self._runtime.leases.holding(LEASE) as held:  # one replica per round
                    if held:
                        await checkpoint_if_grown(self._runtime)
            except Exception:  # the next round tries again; entries stay in the chain meanwhile
                logger.exception("periodic audit checkpoint failed; retrying in %.0f s", interval)
