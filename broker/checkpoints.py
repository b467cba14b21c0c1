"""Receipts of participants' audit checkpoints: the broker keeps every one, so a chain cannot be cut short.

A connector sends a signed checkpoint of its audit chain's head (`tessera.checkpoints`) with an access
token for the broker; the broker takes it only from the participant it names, only if it verifies
with that participant's registered key, and only if its sequence does not go back. Anyone may read
them (a checkpoint shows a sequence number and a hash, nothing of the entries):

```
POST /checkpoints/{participant_id}           {"checkpoint": "<JWS>"} -> 201 the receipt (200: held already)
GET  /checkpoints/{participant_id}/latest    the receipt of the highest entry
GET  /checkpoints/{participant_id}?after=N   receipts of entries after N, in order (`next`: the next page)
```
"""

from sqlalchemy import JSON, UniqueConstraint
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from broker.authority import Participant
from tessera.bodies import read_body
from tessera.checkpoints import Checkpoint, CheckpointRefused, Receipt, check_succession, open_checkpoint
from tessera.clock import rfc3339
from tessera.errors import BadRequest, NotEntitled, NotFound
from tessera.identity import TokenVerifier, bearer_token
from tessera.json import load_object
from tessera.store import Database

MAX_BODY_BYTES = 16 * 1024
PAGE_SIZE = 500


class HeldCheckpoint(SQLModel, table=True):
    __tablename__ = "broker_checkpoint"
    __table_args__ = (UniqueConstraint("participant_id", "seq"),)

    id: int | None = Field(default=None, primary_key=True)
    participant_id: str = Field(index=True)
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


class Checkpoints:
    """The broker's store of checkpoint receipts, and who may add to it."""

    def __init__(self, db: Database, verifier: TokenVerifier, *, url: str) -> None:
        self.db = db
        self.url = url
        self._verifier = verifier

    async def authorize(self, request: Request, participant_id: str) -> Participant:
        """The participant itself, active, with a token for this broker; else 401/403."""
        caller = await self._verifier.verify(bearer_token(request.headers.get("authorization")))
        if caller.participant_id != participant_id:
            raise NotEntitled(f"{caller.participant_id!r} may not file checkpoints of {participant_id!r}")
        async with self.db.session() as session:
            participant = await session.get(Participant, participant_id)
        if participant is None or participant.suspended:
            raise NotEntitled(f"{participant_id!r} is not an active participant")
        return participant

    async def file(self, participant: Participant, jws: object) -> tuple[bool, Receipt]:
        """Keep a checkpoint of `participant`: (whether it is new, its receipt)."""
        checkpoint = open_checkpoint(jws, dict(participant.jwk))
        if checkpoint.participant_id != participant.id:
            raise CheckpointRefused(f"the checkpoint is of {checkpoint.participant_id!r}, not {participant.id!r}")
        async with self.db.transaction() as session:
            latest = await _latest(session, participant.id)
            if not check_succession(latest.checkpoint() if latest else None, checkpoint):
                assert latest is not None
                return False, latest.receipt(self.url)
            held = HeldCheckpoint(
                participant_id=participant.id,
                seq=checkpoint.seq,
                hash=checkpoint.hash,
                hash_alg=checkpoint.hash_alg,
                at=checkpoint.at,
                jws=str(jws),
                signer_jwk=dict(participant.jwk),
                received_at=rfc3339(timespec="milliseconds"),
            )
            session.add(held)
        return True, held.receipt(self.url)

    async def latest(self, participant_id: str) -> Receipt:
        async with self.db.session() as session:
            held = await _latest(session, participant_id)
        if held is None:
            raise NotFound(f"no checkpoint of {participant_id}")
        return held.receipt(self.url)

    async def page(self, participant_id: str, *, after: int, limit: int) -> list[HeldCheckpoint]:
        query = (
            select(HeldCheckpoint)
            .where(HeldCheckpoint.participant_id == participant_id, col(HeldCheckpoint.seq) > after)
            .order_by(col(HeldCheckpoint.seq))
            .limit(limit)
        )
        async with self.db.session() as session:
            return list(await session.exec(query))


async def _latest(session: AsyncSession, participant_id: str) -> HeldCheckpoint | None:
    query = (
        select(HeldCheckpoint)
        .where(HeldCheckpoint.participant_id == participant_id)
        .order_by(col(HeldCheckpoint.seq).desc())
        .limit(1)
    )
    return (await session.exec(query)).first()


# -- HTTP ---------------------------------------------------------------------------------------------


async def file_checkpoint(request: Request) -> Response:
    checkpoints: Checkpoints = request.state.checkpoints
    participant = await checkpoints.authorize(request, request.path_params["participant_id"])
    body = load_object(await read_body(request, MAX_BODY_BYTES, "a checkpoint"), "a checkpoint", BadRequest)
    created, receipt = await checkpoints.file(participant, body.get("checkpoint"))
    return JSONResponse(receipt.to_dict(), status_code=201 if created else 200)


async def latest_checkpoint(request: Request) -> Response:
    checkpoints: Checkpoints = request.state.checkpoints
    return JSONResponse((await checkpoints.latest(request.path_params["participant_id"])).to_dict())


async def list_checkpoints(request: Request) -> Response:
    checkpoints: Checkpoints = request.state.checkpoints
    after = _integer(request, "after", 0, 0, 2**62)
    limit = _integer(request, "limit", PAGE_SIZE, 1, PAGE_SIZE)
    page = await checkpoints.page(request.path_params["participant_id"], after=after, limit=limit)
    items = [held.receipt(checkpoints.url).to_dict() for held in page]
    following = page[-1].seq if len(page) == limit else None
    return JSONResponse({"items": items, "next": following})


def _integer(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name, "")
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 20 or not low <= int(raw) <= high:
        raise BadRequest(f"{name} must be an integer from {low} to {high}")
    return int(raw)
