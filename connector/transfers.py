"""The transfer record and the DSP 2025-1 transfer state machine shared by both roles.

Start, suspension, resumption, completion and termination may come from either side; each change
is written with its audit entry and the message that announces it in one transaction.
"""

from collections.abc import Callable
from typing import Any, ClassVar

from sqlmodel import Field
from sqlmodel.ext.asyncio.session import AsyncSession

from connector import processes, timeline
from connector.agreements import Agreement
from connector.processes import Process
from connector.runtime import Runtime
from tessera import dsp
from tessera.identity import Caller
from tessera.store import Json, Timestamp, UtcDateTime

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


class Transfer(Process, table=True):
    noun: ClassVar[str] = "transfer"
    transitions: ClassVar[dict[str, set[str]]] = TRANSITIONS

    agreement_id: str = Field(index=True)
    format: str = dsp.PULL_FORMAT
    # The DSP DataAddress the data is pulled from (consumer) or pushed to (provider).
    data_address: dict[str, Any] | None = Field(default=None, sa_type=Json)
    caller_claims: dict[str, Any] = Field(default_factory=dict, sa_type=Json)  # the consumer's verified attributes
    purpose: str | None = None  # a push transfer's declared purpose
    pushed: bool = False  # a push transfer's data went out
    received: bool = False  # a push transfer's data arrived (the consumer keeps it as a copy)
    # As provider with `transfer_start = "async"`: when the REQUESTED transfer is due to start (kept, so a
    # restart still starts it); None once started, or when it never waits.
    start_due: Timestamp | None = Field(default=None, sa_type=UtcDateTime)

    @property
    def is_push(self) -> bool:
        return self.format == dsp.PUSH_FORMAT

    async def keeps_receipts(self, session: AsyncSession) -> bool:
        """A counter-party that signed the transfer's agreement speaks Tessera's extensions."""
        agreement = await session.get(Agreement, self.agreement_id)
        if agreement is None:
            return False
        return bool(agreement.provider_signature if self.role == "consumer" else agreement.consumer_signature)

    def public(self) -> dict[str, Any]:
        data = self.model_dump(mode="json", exclude={"data_address", "caller_claims", "reasons", "start_due"})
        data["reasons"] = list(self.reasons)
        return data

    def dsp(self) -> dict[str, Any]:
        return dsp.transfer_process(self.provider_pid or "", self.consumer_pid or "", self.state)


def new(role: str, *, agreement_id: str, counterparty_id: str, counterparty_address: str, **fields: Any) -> Transfer:
    """A transfer with a fresh pid of ours: its providerPid as provider, its consumerPid as consumer."""
    return processes.new(
        Transfer,
        role,
        counterparty_id=counterparty_id,
        counterparty_address=counterparty_address,
        agreement_id=agreement_id,
        **fields,
    )


async def find(
    session: AsyncSession, pid: str, *, caller: Caller, role: str | None = None, message: dsp.Message | None = None
) -> Transfer:
    """Our transfer `pid`, if the caller is its counter-party (see `processes.find`)."""
    return await processes.find(session, Transfer, pid, caller=caller, role=role, message=message)


async def get(session: AsyncSession, pid: str) -> Transfer:
    return await processes.get(session, Transfer, pid)


send = processes.send


async def log(session: AsyncSession, runtime: Runtime, transfer: Transfer, action: str, **details: Any) -> None:
    await processes.log(session, runtime, transfer, action, agreement=transfer.agreement_id, **details)


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
        transfer.reasons = [reason]
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
    if state == "TERMINATED":
        timeline.record(session, transfer.id, "terminated", None, detail=reason)
    await log(session, runtime, transfer, state.lower(), by=runtime.participant_id, reason=reason)


async def on_started(
    runtime: Runtime,
    caller: Caller,
    pid: str,
    message: dsp.TransferStart,
    *,
    role: str,
    take: Callable[[Transfer, dsp.TransferStart], None] | None = None,
) -> Transfer:
    """The counter-party started or resumed our transfer in `role`; `take` reads the start message first."""
    async with runtime.transaction() as session:
        transfer = await find(session, pid, caller=caller, role=role, message=message)
        if take is not None:
            take(transfer, message)
        transfer.move("STARTED")
        await log(session, runtime, transfer, "started", by=caller.participant_id)
    return transfer


async def on_update(runtime: Runtime, caller: Caller, pid: str, message: dsp.TransferUpdate, *, state: str) -> Transfer:
    """The counter-party completed, suspended or terminated the transfer."""
    async with runtime.transaction() as session:
        transfer = await find(session, pid, caller=caller, message=message)
        transfer.move(state)
        if message.reason:
            transfer.reasons = [str(r) for r in message.reason]
        if state == "TERMINATED":
            timeline.record(session, transfer.id, "terminated", None, detail="; ".join(transfer.reasons) or None)
        await log(session, runtime, transfer, state.lower(), by=caller.participant_id, reasons=message.reason)
    return transfer


async def change_by_operator(runtime: Runtime, pid: str, state: str, reason: str | None = None) -> Transfer:
    """Our side completes, suspends or terminates a transfer and tells the counter-party."""
    async with runtime.transaction() as session:
        transfer = await get(session, pid)
        timeline.decided(session, transfer.id, "operator", state.lower(), [reason] if reason else [])
        await announce(session, runtime, transfer, state, reason=reason)
    return transfer


async def abandon(runtime: Runtime, pid: str, reason: str) -> None:
    """Mark a transfer TERMINATED locally when the counter-party cannot be told anything."""
    await processes.abandon(runtime, Transfer, pid, reason)
