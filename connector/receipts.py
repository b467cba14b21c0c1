"""Receipts we hold of counter-parties' audit checkpoints: their chains anchored in our database.

A counter-party files a checkpoint at the end of a negotiation or transfer with us, with its access
token for us. We keep it if it verifies with the key the authority registered for the caller, names
the caller, comes from a participant we have dealt with, and its sequence does not go back. The caller
(and only the caller) may ask for the latest one we hold, to check its own chain against it.

```
POST {dsp}/audit/checkpoints          {"checkpoint": "<JWS>"} -> 201 the receipt (200: held already)
GET  {dsp}/audit/checkpoints/latest   the receipt of the caller's highest entry we hold (404: none)
```
These are our own endpoints beside the Dataspace Protocol's; errors are problem+json.
"""

from sqlalchemy import JSON, UniqueConstraint
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connector.anchoring import RECEIPTS_PATH
from connector.negotiations import Negotiation
from connector.runtime import Runtime, runtime_of
from tessera.bodies import read_body
from tessera.checkpoints import Checkpoint, CheckpointRefused, Receipt, check_succession, open_checkpoint
from tessera.clock import rfc3339
from tessera.errors import BadRequest, NotEntitled, NotFound
from tessera.identity import Caller
from tessera.json import JSONObject, load_object

MAX_BODY_BYTES = 16 * 1024


class HeldReceipt(SQLModel, table=True):
    __tablename__ = "audit_receipt"
    __table_args__ = (UniqueConstraint("participant_id", "seq"),)

    id: int | None = Field(default=None, primary_key=True)
    participant_id: str = Field(index=True)  # whose chain
    seq: int
    hash: str
    hash_alg: str
    at: str
    jws: str
    signer_jwk: dict[str, str] = Field(sa_type=JSON)
    received_at: str

    def checkpoint(self) -> Checkpoint:
        return Checkpoint(self.participant_id, self.seq, self.hash, self.hash_alg, self.at)

    def receipt(self, held_by: str) -> Receipt:
        return Receipt(self.jws, dict(self.signer_jwk), held_by, self.received_at)

    def public(self, held_by: str) -> JSONObject:
        """As the management API lists it: whose chain, which entry, and the receipt to verify offline."""
        shown: JSONObject = {"id": self.id, "participant_id": self.participant_id, "seq": self.seq}
        shown |= {"hash": self.hash, "hash_alg": self.hash_alg, "at": self.at, "received_at": self.received_at}
        return shown | {"receipt": self.receipt(held_by).to_dict()}


async def file(runtime: Runtime, caller: Caller, jws: object) -> tuple[bool, Receipt]:
    """Keep the caller's checkpoint: (whether it is new, its receipt)."""

    async def opened(key: JSONObject) -> tuple[Checkpoint, JSONObject]:  # with the key it verified with
        return open_checkpoint(jws, key), key

    checkpoint, jwk = await runtime.participants.verified(caller.participant_id, opened, refused=CheckpointRefused)
    if checkpoint.participant_id != caller.participant_id:
        raise CheckpointRefused(f"the checkpoint is of {checkpoint.participant_id!r}, not {caller.participant_id!r}")
    async with runtime.transaction() as session:
        if not await _dealt_with(session, caller.participant_id):
            raise NotEntitled(f"{caller.participant_id!r} has no negotiation with {runtime.participant_id!r}")
        latest = await _latest(session, caller.participant_id)
        if not check_succession(latest.checkpoint() if latest else None, checkpoint):
            assert latest is not None
            return False, latest.receipt(runtime.participant_id)
        held = HeldReceipt(
            participant_id=checkpoint.participant_id,
            seq=checkpoint.seq,
            hash=checkpoint.hash,
            hash_alg=checkpoint.hash_alg,
            at=checkpoint.at,
            jws=str(jws),
            signer_jwk=jwk,
            received_at=rfc3339(timespec="milliseconds"),
        )
        session.add(held)
    return True, held.receipt(runtime.participant_id)


async def _dealt_with(session: AsyncSession, participant_id: str) -> bool:
    """Whether we negotiated with the participant (every transfer follows a negotiation)."""
    query = select(Negotiation.id).where(Negotiation.counterparty_id == participant_id).limit(1)
    return (await session.exec(query)).first() is not None


async def _latest(session: AsyncSession, participant_id: str) -> HeldReceipt | None:
    query = (
        select(HeldReceipt)
        .where(HeldReceipt.participant_id == participant_id)
        .order_by(col(HeldReceipt.seq).desc())
        .limit(1)
    )
    return (await session.exec(query)).first()


async def file_route(request: Request) -> Response:
    runtime = runtime_of(request)
    caller = await runtime.authenticate(request.headers.get("authorization"))
    body = load_object(await read_body(request, MAX_BODY_BYTES, "a checkpoint"), "a checkpoint", BadRequest)
    created, receipt = await file(runtime, caller, body.get("checkpoint"))
    return JSONResponse(receipt.to_dict(), status_code=201 if created else 200)


async def latest_route(request: Request) -> Response:
    runtime = runtime_of(request)
    caller = await runtime.authenticate(request.headers.get("authorization"))
    async with runtime.db.session() as session:
        held = await _latest(session, caller.participant_id)
    if held is None:
        raise NotFound(f"{runtime.participant_id} holds no checkpoint of {caller.participant_id}")
    return JSONResponse(held.receipt(runtime.participant_id).to_dict())


routes = [
    Route(RECEIPTS_PATH, file_route, methods=["POST"]),
    Route(RECEIPTS_PATH + "/latest", latest_route, methods=["GET"]),
]
