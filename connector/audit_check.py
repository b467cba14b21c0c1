"""Our audit chain checked against the checkpoints others hold of it: truncation and rewrites show.

The local check (`tessera.audit.verify`) recomputes the chain, but whoever can write the database can
delete its last entries or rewrite one and recompute every later hash. The checkpoints we signed and
sent (`connector.anchoring`) are held by the broker (all of them) and by counter-parties (the latest
each holds): an entry at a checkpointed sequence must still be there with the checkpointed hash. Only
checkpoints that verify with our own identity key count; a holder we cannot reach is reported.
"""

import asyncio
from dataclasses import dataclass, field
from urllib.parse import quote

import httpx
from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from connector.anchoring import RECEIPTS_PATH
from connector.config import ConnectorConfig
from connector.negotiations import Negotiation
from connector.schema import SCHEMA
from tessera import audit
from tessera.audit import AuditEntry, ChainReport
from tessera.checkpoints import Checkpoint, CheckpointRefused, Receipt
from tessera.errors import PeerError, TesseraError
from tessera.identity import SigningKey, TokenClient
from tessera.json import JSONObject
from tessera.store import Database

BATCH = 500  # checkpointed sequence numbers looked up per query


@dataclass(frozen=True)
class Held:
    holder: str  # the broker's URL or a counter-party's id
    checkpoint: Checkpoint


@dataclass
class Anchors:
    """What the holders answered: the checkpoints that verified, and who could not be asked or was refused."""

    held: list[Held] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # a holder whose checkpoint does not verify with our key
    broker_answered: bool = False


@dataclass(frozen=True)
class AnchoredReport:
    chain: ChainReport
    anchors: Anchors
    first_broken: int | None
    problem: str | None

    @property
    def ok(self) -> bool:
        return self.first_broken is None

    @property
    def latest(self) -> Held | None:
        return max(self.anchors.held, key=lambda held: held.checkpoint.seq, default=None)

    def to_dict(self) -> JSONObject:
        latest = self.latest
        return self.chain.to_dict() | {
            "ok": self.ok,
            "first_broken": self.first_broken,
            "problem": self.problem,
            "anchored": self.anchors.broker_answered,
            "checkpoints": len(self.anchors.held),
            "latest_checkpoint": None
            if latest is None
            else {"held_by": latest.holder, "seq": latest.checkpoint.seq, "at": latest.checkpoint.at},
            "unreachable": list(self.anchors.unreachable),
            "refused": list(self.anchors.refused),
        }


async def verify(db: Database, anchors: Anchors) -> AnchoredReport:
    """The local chain, then each held checkpoint against it; the earliest problem is the one named."""
    async with db.session() as session:
        chain = await audit.verify(session)
        mismatch = await first_mismatch(session, anchors.held)
    found = [mismatch] if mismatch is not None else []
    if chain.first_broken is not None:
        found.append((chain.first_broken, chain.problem or ""))
    if not found:
        return AnchoredReport(chain, anchors, None, None)
    first, problem = min(found)
    return AnchoredReport(chain, anchors, first, problem)


async def first_mismatch(session: AsyncSession, held: list[Held]) -> tuple[int, str] | None:
    """The first entry a held checkpoint contradicts (missing, or with another hash), and why."""
    ordered = sorted(held, key=lambda h: h.checkpoint.seq)
    stored = await _stored_hashes(session, sorted({h.checkpoint.seq for h in ordered}))
    last_seq = (await session.exec(select(func.max(AuditEntry.seq)))).one() or 0
    matched = 0
    for one in ordered:
        checkpoint = one.checkpoint
        local = stored.get(checkpoint.seq)
        if local is None and checkpoint.seq > last_seq:
            return last_seq + 1, (
                f"the chain ends at entry {last_seq}, but {one.holder} holds a checkpoint of entry "
                f"{checkpoint.seq} made {checkpoint.at}: entries were cut off"
            )
        if local is None:
            return checkpoint.seq, f"entry {checkpoint.seq} is missing; {one.holder} holds a checkpoint of it"
        if local != (checkpoint.hash_alg, checkpoint.hash):
            return checkpoint.seq, (
                f"entry {checkpoint.seq} is not the entry {one.holder} holds a checkpoint of (made "
                f"{checkpoint.at}): the chain was rewritten after entry {matched}"
            )
        matched = checkpoint.seq
    return None


async def _stored_hashes(session: AsyncSession, seqs: list[int]) -> dict[int, tuple[str, str]]:
    found: dict[int, tuple[str, str]] = {}
    for start in range(0, len(seqs), BATCH):
        query = select(AuditEntry.seq, AuditEntry.hash_alg, AuditEntry.hash).where(
            col(AuditEntry.seq).in_(seqs[start : start + BATCH])
        )
        found |= {seq: (alg, hash_) for seq, alg, hash_ in await session.exec(query)}
    return found


# -- asking the holders ---------------------------------------------------------------------------------


async def ask_holders(
    db: Database,
    http: httpx.AsyncClient,
    tokens: TokenClient,
    *,
    participant_id: str,
    broker_url: str,
    own_jwk: JSONObject,
) -> Anchors:
    """Every checkpoint the broker holds of us, and the latest each counter-party holds."""
    anchors = Anchors()
    broker = broker_url.rstrip("/")
    try:
        for receipt in await _broker_receipts(http, broker, participant_id):
            _keep(anchors, broker, receipt, own_jwk)
        anchors.broker_answered = True
    except PeerError:
        anchors.unreachable.append(broker)
    peers = await _counterparties(db)
    answers = await asyncio.gather(*(_peer_receipt(http, tokens, peer, address) for peer, address in peers))
    for (peer, _), answer in zip(peers, answers, strict=True):
        if isinstance(answer, Receipt):
            _keep(anchors, peer, answer, own_jwk)
        elif answer == "unreachable":
            anchors.unreachable.append(peer)
    return anchors


def _keep(anchors: Anchors, holder: str, receipt: Receipt, own_jwk: JSONObject) -> None:
    try:
        anchors.held.append(Held(holder, receipt.open(own_jwk)))
    except CheckpointRefused:
        if holder not in anchors.refused:
            anchors.refused.append(holder)


async def _broker_receipts(http: httpx.AsyncClient, broker: str, participant_id: str) -> list[Receipt]:
    url, after, found = f"{broker}/checkpoints/{quote(participant_id, safe='')}", 0, []
    while True:
        body = await _get_json(http, url, params={"after": str(after)})
        if not isinstance(body, dict) or not isinstance(body.get("items"), list):
            raise PeerError(f"{url} answered no list of checkpoints")
        found += [Receipt.from_dict(item) for item in body["items"]]
        if not isinstance(body.get("next"), int) or body["next"] <= after:
            return found
        after = body["next"]


async def _get_json(
    http: httpx.AsyncClient, url: str, *, params: dict[str, str] | None = None, headers: dict[str, str] | None = None
) -> object:
    try:
        response = await http.get(url, params=params, headers=headers)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise PeerError(f"{url} answered {response.status_code}")
        return response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise PeerError(f"{url}: {exc}") from exc


async def _counterparties(db: Database) -> list[tuple[str, str]]:
    """Each participant we negotiated with, at the DSP address we last knew."""
    async with db.session() as session:
        query = select(Negotiation.counterparty_id, Negotiation.counterparty_address).order_by(
            col(Negotiation.created_at)
        )
        latest = {peer: address for peer, address in await session.exec(query)}
    return list(latest.items())


async def _peer_receipt(http: httpx.AsyncClient, tokens: TokenClient, peer: str, address: str) -> Receipt | str | None:
    """The latest receipt `peer` holds of us; None if it holds none, "unreachable" if it could not be asked."""
    try:
        headers = {"Authorization": f"Bearer {await tokens.token_for(peer)}"}
        body = await _get_json(http, address.rstrip("/") + RECEIPTS_PATH + "/latest", headers=headers)
        return None if body is None else Receipt.from_dict(body)
    except (TesseraError, httpx.HTTPError):
        return "unreachable"


async def verify_offline_or_anchored(config: ConnectorConfig, *, local: bool) -> AnchoredReport:
    """`tessera audit verify`: the chain in the connector's database, against the holders unless `local`."""
    db = await Database.open(config.database_url, schema=SCHEMA)
    try:
        if local:
            return await verify(db, Anchors())
        signer = SigningKey.load(config.key_path)
        async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=3.0)) as http:
            tokens = TokenClient(
                http, signer=signer, participant_id=config.participant_id, authority_url=config.broker_url
            )
            anchors = await ask_holders(
                db,
                http,
                tokens,
                participant_id=config.participant_id,
                broker_url=config.broker_url,
                own_jwk=signer.jwk,
            )
        return await verify(db, anchors)
    finally:
        await db.close()


async def check_receipt(config: ConnectorConfig, held: Held) -> AnchoredReport:
    """The connector's chain against one receipt's checkpoint, offline."""
    db = await Database.open(config.database_url, schema=SCHEMA)
    try:
        return await verify(db, Anchors(held=[held]))
    finally:
        await db.close()
