"""The transfer record and the DSP 2025-1 transfer state machine shared by both roles.

Start, suspension, resumption, completion and termination may come from either side; each change
is written with its audit entry and the message that announces it in one transaction.
"""

import json
from typing import Any

from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from connector import audit, dsp, timeline
from connector.assets import utcnow
from connector.errors import IllegalTransition, InvalidMessage, NotFound, UnknownProcess
from connector.identity import Caller
from connector.outbox import enqueue
from connector.runtime import Runtime

FINAL_STATES = {"COMPLETED", "TERMINATED"}
# The DSP 2025-1 transfer state machine: state -> states it may move to (SUSPENDED -> COMPLETED is not one).
TRANSITIONS: dict[str, set[str]] = {
    "REQUESTED": {"STARTED", "TERMINATED"},
    "STARTED": {"SUSPENDED", "COMPLETED", "TERMINATED"},
    "SUSPENDED": {"STARTED", "TERMINATED"},
    "COMPLETED": set(),
    "TERMINATED": set(),
}
MESSAGE_FOR_STATE = {
    "STARTED": ("TransferStartMessage", "start"),
    "COMPLETED": ("TransferCompletionMessage", "completion"),
    "SUSPENDED": ("TransferSuspensionMessage", "suspension"),
    "TERMINATED": ("TransferTerminationMessage", "termination"),
}


class Transfer(SQLModel, table=True):
    id: str = Field(primary_key=True)  # our pid
    role: str  # provider | consumer
    provider_pid: str | None = Field(default=None, index=True)
    consumer_pid: str = Field(index=True)
    counterparty_id: str
    counterparty_address: str
    agreement_id: str = Field(index=True)
    format: str = dsp.PULL_FORMAT
    state: str = "REQUESTED"
    data_address: str | None = None  # JSON: where the data is pulled from (consumer) or pushed to (provider)
    caller_claims: str = "{}"  # JSON: the consumer's verified attributes (provider side)
    purpose: str | None = None  # a push transfer's declared purpose
    pushed: bool = False  # a push transfer's data went out
    received: bool = False  # a push transfer's data arrived (the consumer keeps it as a copy)
    reasons: str = "[]"
    created_at: str = Field(default_factory=utcnow)
    updated_at: str = Field(default_factory=utcnow)

    @property
    def counterpart_pid(self) -> str | None:
        return self.consumer_pid if self.role == "provider" else self.provider_pid

    @property
    def is_push(self) -> bool:
        return self.format == dsp.PUSH_FORMAT

    def public(self) -> dict[str, Any]:
        data = self.model_dump(exclude={"data_address", "caller_claims", "reasons"})
        data["reasons"] = json.loads(self.reasons)
        return data

    def dsp(self) -> dict[str, Any]:
        return dsp.transfer_process(self.provider_pid or "", self.consumer_pid, self.state)

    def move(self, state: str) -> None:
        if state not in TRANSITIONS[self.state]:
            raise IllegalTransition(f"transfer {self.id} is {self.state}; it cannot become {state}")
        self.state = state
        self.updated_at = utcnow()


async def find(
    session: AsyncSession, pid: str, *, caller: Caller, role: str | None = None, message: dsp.Message | None = None
) -> Transfer:
    """Our transfer `pid`, if `caller` is its counter-party; otherwise as unknown (404)."""
    transfer = await session.get(Transfer, pid)
    if transfer is None or transfer.counterparty_id != caller.participant_id:
        raise UnknownProcess(f"no transfer {pid}")
    if role is not None and transfer.role != role:
        raise IllegalTransition(f"transfer {pid} is ours as {transfer.role}; this message is for a {role}")
    if message is not None:
        check_pids(transfer, message)
    return transfer


async def get(session: AsyncSession, pid: str) -> Transfer:
    transfer = await session.get(Transfer, pid)
    if transfer is None:
        raise NotFound(f"no transfer {pid}")
    return transfer


def check_pids(transfer: Transfer, message: dsp.Message) -> None:
    for name, attribute in (("consumerPid", "consumer_pid"), ("providerPid", "provider_pid")):
        given = getattr(message, name, None)
        known = getattr(transfer, attribute)
        if given is not None and known not in (None, given):
            raise InvalidMessage(f"{name} {given} does not belong to transfer {transfer.id}")
        if given is not None and known is None:
            setattr(transfer, attribute, given)


def send(session: AsyncSession, transfer: Transfer, path: str, body: dict[str, Any]) -> None:
    url = transfer.counterparty_address.rstrip("/") + path
    enqueue(session, process_id=transfer.id, url=url, audience=transfer.counterparty_id, body=body)
    timeline.record(session, transfer.id, "queued", body["@type"], detail=url)


async def log(session: AsyncSession, runtime: Runtime, transfer: Transfer, action: str, **details: Any) -> None:
    await audit.append(
        session,
        actor=runtime.participant_id,
        action=f"transfer.{action}",
        subject=transfer.id,
        role=transfer.role,
        agreement=transfer.agreement_id,
        state=transfer.state,
        **details,
    )


async def announce(
    session: AsyncSession,
    runtime: Runtime,
    transfer: Transfer,
    state: str,
    *,
    reason: str | None = None,
    data_address: dict[str, Any] | None = None,
) -> None:
    """Move to `state` and tell the counter-party with the matching DSP message."""
    kind, path = MESSAGE_FOR_STATE[state]
    transfer.move(state)
    if state == "TERMINATED" and reason:
        transfer.reasons = json.dumps([reason])
    body = dsp.message(
        kind,
        providerPid=transfer.provider_pid,
        consumerPid=transfer.consumer_pid,
        dataAddress=data_address,
        code=state.lower() if reason and kind in ("TransferSuspensionMessage", "TransferTerminationMessage") else None,
        reason=[reason] if reason and kind in ("TransferSuspensionMessage", "TransferTerminationMessage") else None,
    )
    if transfer.counterpart_pid:
        send(session, transfer, f"/transfers/{transfer.counterpart_pid}/{path}", body)
    await log(session, runtime, transfer, state.lower(), by=runtime.participant_id, reason=reason)


async def on_update(runtime: Runtime, caller: Caller, pid: str, message: dsp.TransferUpdate, *, state: str) -> Transfer:
    """The counter-party completed, suspended or terminated the transfer."""
    async with runtime.transaction() as session:
        transfer = await find(session, pid, caller=caller, message=message)
        transfer.move(state)
        if message.reason:
            transfer.reasons = json.dumps([str(r) for r in message.reason])
        await log(session, runtime, transfer, state.lower(), by=caller.participant_id, reasons=message.reason)
    return transfer


async def change_by_operator(runtime: Runtime, pid: str, state: str, reason: str | None = None) -> Transfer:
    """Our side completes, suspends or terminates a transfer and tells the counter-party."""
    async with runtime.transaction() as session:
        transfer = await get(session, pid)
        await announce(session, runtime, transfer, state, reason=reason)
    return transfer


async def abandon(runtime: Runtime, pid: str, reason: str) -> None:
    """Mark a transfer TERMINATED locally when the counter-party cannot be told anything."""
    async with runtime.transaction() as session:
        transfer = await session.get(Transfer, pid)
        if transfer is None or transfer.state in FINAL_STATES:
            return
        transfer.move("TERMINATED")
        transfer.reasons = json.dumps([reason])
        await log(session, runtime, transfer, "abandoned", reasons=[reason])
