"""What negotiations and transfers share: the record's common fields, state moves, lookups that only
the counter-party passes, pid checks, queued messages, audit entries and local abandonment.

`Negotiation` and `Transfer` extend `Process` with their own fields and state machine.
"""

from typing import Any, ClassVar, TypeVar

from sqlmodel import Field, SQLModel, col, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from connector import anchoring, timeline
from connector.outbox import enqueue
from connector.runtime import Runtime
from tessera import audit, dsp, logs
from tessera.clock import utcnow
from tessera.errors import IllegalTransition, InvalidMessage, NotFound, UnknownProcess
from tessera.identity import Caller
from tessera.ids import new_id
from tessera.json import JSON
from tessera.store import Json, Timestamp, UtcDateTime


class Process(SQLModel):
    noun: ClassVar[str]  # "negotiation" or "transfer"
    transitions: ClassVar[dict[str, set[str]]]  # state -> states it may move to

    id: str = Field(primary_key=True)  # our pid: providerPid as provider, consumerPid as consumer
    role: str  # provider | consumer
    provider_pid: str | None = Field(default=None, index=True)
    consumer_pid: str | None = Field(default=None, index=True)
    counterparty_id: str
    counterparty_address: str  # their DSP base URL (provider) or callbackAddress (consumer)
    state: str = "REQUESTED"
    reasons: list[str] = Field(default_factory=list, sa_type=Json)  # why it was terminated
    created_at: Timestamp = Field(default_factory=utcnow, sa_type=UtcDateTime)
    updated_at: Timestamp = Field(default_factory=utcnow, sa_type=UtcDateTime)

    @property
    def counterpart_pid(self) -> str | None:
        return self.consumer_pid if self.role == "provider" else self.provider_pid

    @property
    def final(self) -> bool:
        return not self.transitions[self.state]

    async def keeps_receipts(self, session: AsyncSession) -> bool:
        """Whether the counter-party keeps our audit checkpoints: it speaks Tessera's extensions beside DSP.

        A plain DSP peer never gets a body that is no DSP message at its DSP address.
        """
        return False

    def move(self, state: str) -> None:
        if state not in self.transitions[self.state]:
            raise IllegalTransition(f"{self.noun} {self.id} is {self.state}; it cannot become {state}")
        self.state = state
        self.updated_at = utcnow()


P = TypeVar("P", bound=Process)


def new(model: type[P], role: str, *, counterparty_id: str, counterparty_address: str, **fields: Any) -> P:
    """A new process with a fresh pid of ours (`providerPid` as provider, `consumerPid` as consumer)."""
    pid = new_id()
    logs.process_id.set(pid)  # the rest of the request that creates it logs as this process
    own: dict[str, Any] = {"provider_pid": pid} if role == "provider" else {"consumer_pid": pid}
    address = counterparty_address.rstrip("/")
    return model(id=pid, role=role, counterparty_id=counterparty_id, counterparty_address=address, **own, **fields)


async def find(
    session: AsyncSession,
    model: type[P],
    pid: str,
    *,
    caller: Caller,
    role: str | None = None,
    message: dsp.Message | None = None,
) -> P:
    """Our process `pid`, if `caller` is its counter-party; otherwise as unknown (404)."""
    process = await session.get(model, pid)
    if process is None or process.counterparty_id != caller.participant_id:
        raise UnknownProcess(f"no {model.noun} {pid}")
    if role is not None and process.role != role:
        raise IllegalTransition(f"{model.noun} {pid} is ours as {process.role}; this message is for a {role}")
    if message is not None:
        check_pids(process, message)
    return process


async def get(session: AsyncSession, model: type[P], pid: str) -> P:
    process = await session.get(model, pid)
    if process is None:
        raise NotFound(f"no {model.noun} {pid}")
    return process


async def by_either_pid(session: AsyncSession, model: type[P], pid: str) -> list[P]:
    """Our processes that `pid` names: ours, or the counter-party's pid of them (`provider_pid`/`consumer_pid`)."""
    if (own := await session.get(model, pid)) is not None:
        return [own]
    query = select(model).where(or_(col(model.provider_pid) == pid, col(model.consumer_pid) == pid))
    return list(await session.exec(query))


async def existing_request(session: AsyncSession, model: type[P], caller: Caller, consumer_pid: str) -> P | None:
    """The process an initial request with this `consumerPid` from this caller created before, if any."""
    query = select(model).where(
        model.role == "provider", model.consumer_pid == consumer_pid, model.counterparty_id == caller.participant_id
    )
    return (await session.exec(query)).first()


def as_requested(process: P) -> P:
    """The process as the 201 answer to its initial request reports it (whatever happened since)."""
    copy = process.model_copy()
    copy.state = "REQUESTED"
    return copy


def check_pids(process: Process, message: dsp.Message) -> None:
    """The pids a message names must be this process's; a counterpart pid we did not know yet is learned."""
    for name, attribute in (("consumerPid", "consumer_pid"), ("providerPid", "provider_pid")):
        given = getattr(message, name, None)
        known = getattr(process, attribute)
        if given is not None and known not in (None, given):
            raise InvalidMessage(f"{name} {given} does not belong to {process.noun} {process.id}")
        if given is not None and known is None:
            setattr(process, attribute, given)


def send(session: AsyncSession, process: Process, path: str, body: dict[str, Any]) -> None:
    """Queue a message to the counter-party (sent when the transaction commits)."""
    url = process.counterparty_address.rstrip("/") + path
    enqueue(session, process_id=process.id, url=url, audience=process.counterparty_id, body=body)
    timeline.record(session, process.id, "queued", body["@type"], detail=url)


def tell(session: AsyncSession, process: Process, kind: str, path: str, **fields: JSON) -> None:
    """Queue the DSP message `kind` with both pids to the counter-party's `/{noun}s/{their pid}/{path}`.

    Nothing is sent while their pid is unknown (they never answered our initial request).
    """
    if process.counterpart_pid:
        body = dsp.message(kind, providerPid=process.provider_pid, consumerPid=process.consumer_pid, **fields)
        send(session, process, f"/{process.noun}s/{process.counterpart_pid}/{path}", body)


async def log(session: AsyncSession, runtime: Runtime, process: Process, action: str, **details: Any) -> None:
    await audit.append(
        session,
        actor=runtime.participant_id,
        action=f"{process.noun}.{action}",
        subject=process.id,
        role=process.role,
        counterparty=process.counterparty_id,
        state=process.state,
        **details,
    )
    if process.final:  # its end is anchored outside our database: the broker and the counter-party keep it
        keeps = await process.keeps_receipts(session)
        counterparty = (process.counterparty_id, process.counterparty_address) if keeps else None
        await anchoring.checkpoint(
            session, runtime, f"{process.noun} {process.id} {process.state}", counterparty=counterparty
        )


async def abandon(runtime: Runtime, model: type[Process], pid: str, reason: str) -> None:
    """Mark a process TERMINATED locally when the counter-party cannot be told anything."""
    async with runtime.transaction() as session:
        process = await session.get(model, pid)
        if process is None or process.final:
            return
        process.move("TERMINATED")
        process.reasons = [reason]
        timeline.record(session, process.id, "terminated", None, detail=reason)
        await log(session, runtime, process, "abandoned", reasons=[reason])
