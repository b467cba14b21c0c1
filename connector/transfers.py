"""Transfer processes, both roles, as the DSP 2025-1 state machine (HTTP pull).

Consumer: the management API requests a transfer under a finalized agreement. Provider: checks the
caller is the agreement's consumer, then starts the transfer with a data address whose short-lived
token, signed by the provider, opens its data plane for this transfer only.
"""

import json
import time
from typing import Any

import jwt
from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from connector import audit, dsp
from connector.agreements import Agreement
from connector.assets import utcnow
from connector.catalog import new_id
from connector.errors import IllegalTransition, InvalidMessage, NotFound, TokenRejected, UnknownProcess
from connector.identity import ALGORITHM, CLOCK_SKEW, Caller
from connector.outbox import enqueue
from connector.runtime import Runtime

DATA_TOKEN_LIFETIME = 600  # seconds
FINAL_STATES = {"COMPLETED", "TERMINATED"}
# Which states each message may move a transfer from (DSP 2025-1).
ALLOWED_FROM = {
    "STARTED": {"REQUESTED", "SUSPENDED"},
    "SUSPENDED": {"STARTED"},
    "COMPLETED": {"STARTED"},
    "TERMINATED": {"REQUESTED", "STARTED", "SUSPENDED"},
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
    data_address: str | None = None  # JSON; the consumer's copy of where to pull from
    caller_claims: str = "{}"  # JSON; the consumer's verified attributes (provider side)
    reasons: str = "[]"
    created_at: str = Field(default_factory=utcnow)
    updated_at: str = Field(default_factory=utcnow)

    def public(self) -> dict[str, Any]:
        data = self.model_dump(exclude={"data_address", "caller_claims", "reasons"})
        data["reasons"] = json.loads(self.reasons)
        return data

    def dsp(self) -> dict[str, Any]:
        return dsp.transfer_process(self.provider_pid or "", self.consumer_pid, self.state)

    def move(self, state: str) -> None:
        if self.state not in ALLOWED_FROM[state]:
            raise IllegalTransition(f"transfer {self.id} is {self.state}; it cannot become {state}")
        self.state = state
        self.updated_at = utcnow()


async def find(
    session: AsyncSession, pid: str, *, role: str, caller: Caller, message: dsp.Message | None = None
) -> Transfer:
    transfer = await session.get(Transfer, pid)
    if transfer is None or transfer.role != role or transfer.counterparty_id != caller.participant_id:
        raise UnknownProcess(f"no transfer {pid}")
    if message is not None:
        _check_pids(transfer, message)
    return transfer


def _check_pids(process: Transfer, message: dsp.Message) -> None:
    """The pids a message names must be this process's; a provider pid we did not know yet is learned."""
    consumer_pid, provider_pid = getattr(message, "consumerPid", None), getattr(message, "providerPid", None)
    if consumer_pid is not None and consumer_pid != process.consumer_pid:
        raise InvalidMessage(f"consumerPid {consumer_pid} does not belong to process {process.id}")
    if provider_pid is not None and process.provider_pid not in (None, provider_pid):
        raise InvalidMessage(f"providerPid {provider_pid} does not belong to process {process.id}")
    if provider_pid is not None and process.provider_pid is None:
        process.provider_pid = provider_pid


async def _log(session: AsyncSession, runtime: Runtime, transfer: Transfer, action: str, **details: Any) -> None:
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


def _send(session: AsyncSession, transfer: Transfer, path: str, body: dict[str, Any]) -> None:
    url = transfer.counterparty_address.rstrip("/") + path
    enqueue(session, process_id=transfer.id, url=url, audience=transfer.counterparty_id, body=body)


# -- provider side -----------------------------------------------------------------------------------------


async def on_request(runtime: Runtime, caller: Caller, message: dsp.TransferRequest) -> Transfer:
    if message.format != dsp.PULL_FORMAT:
        raise InvalidMessage(f"format {message.format!r} is not supported; use {dsp.PULL_FORMAT}")
    async with runtime.transaction() as session:
        existing = await _existing_request(session, caller, message.consumerPid)
        if existing is not None:
            return _as_requested(existing)  # a repeated request answers as the first did
        agreement = await session.get(Agreement, message.agreementId)
        if agreement is None or agreement.role != "provider" or agreement.consumer_id != caller.participant_id:
            raise InvalidMessage(f"no agreement {message.agreementId} with {caller.participant_id}")
        pid = new_id()
        transfer = Transfer(
            id=pid,
            role="provider",
            provider_pid=pid,
            consumer_pid=message.consumerPid,
            counterparty_id=caller.participant_id,
            counterparty_address=message.callbackAddress,
            agreement_id=agreement.id,
            format=message.format,
            caller_claims=json.dumps(caller.to_policy_input()),
        )
        session.add(transfer)
        await _log(session, runtime, transfer, "requested")
        address = dsp.data_address(f"{runtime.config.url.rstrip('/')}/data/{pid}", data_token(runtime, transfer))
        start = dsp.message(
            "TransferStartMessage", providerPid=pid, consumerPid=transfer.consumer_pid, dataAddress=address
        )
        _send(session, transfer, f"/transfers/{transfer.consumer_pid}/start", start)
        transfer.move("STARTED")
        await _log(session, runtime, transfer, "started")
    return _as_requested(transfer)


def _as_requested(transfer: Transfer) -> Transfer:
    copy = transfer.model_copy()
    copy.state = "REQUESTED"
    return copy


async def _existing_request(session: AsyncSession, caller: Caller, consumer_pid: str) -> Transfer | None:
    query = select(Transfer).where(
        Transfer.role == "provider",
        Transfer.consumer_pid == consumer_pid,
        Transfer.counterparty_id == caller.participant_id,
    )
    return (await session.exec(query)).first()


def data_token(runtime: Runtime, transfer: Transfer) -> str:
    now = int(time.time())
    claims = {
        "iss": runtime.participant_id,
        "aud": runtime.participant_id,
        "sub": transfer.counterparty_id,
        "transfer": transfer.id,
        "agreement": transfer.agreement_id,
        "iat": now,
        "exp": now + DATA_TOKEN_LIFETIME,
        "jti": new_id(),
    }
    return runtime.signer.sign_jwt(claims)


def verify_data_token(runtime: Runtime, token: str, transfer_id: str) -> dict[str, Any]:
    """The claims of a data-plane token we issued for `transfer_id`."""
    try:
        claims = jwt.decode(
            token,
            runtime.signer.key.public_key(),
            algorithms=[ALGORITHM],
            issuer=runtime.participant_id,
            audience=runtime.participant_id,
            leeway=CLOCK_SKEW,
            options={"require": ["iss", "aud", "sub", "exp", "transfer", "agreement"]},
        )
    except jwt.InvalidTokenError as exc:
        raise TokenRejected(f"data token rejected: {exc}") from exc
    if claims["transfer"] != transfer_id:
        raise TokenRejected("the data token was issued for another transfer")
    return claims


# -- consumer side ---------------------------------------------------------------------------------------


async def start(runtime: Runtime, agreement_id: str) -> Transfer:
    """Request a pull transfer under a finalized agreement. The request goes out through the outbox."""
    async with runtime.transaction() as session:
        agreement = await session.get(Agreement, agreement_id)
        if agreement is None or agreement.role != "consumer":
            raise NotFound(f"no agreement {agreement_id} on the consumer side")
        pid = new_id()
        transfer = Transfer(
            id=pid,
            role="consumer",
            consumer_pid=pid,
            counterparty_id=agreement.provider_id,
            counterparty_address=agreement.provider_address,
            agreement_id=agreement.id,
        )
        request = dsp.message(
            "TransferRequestMessage",
            consumerPid=pid,
            agreementId=agreement.id,
            format=dsp.PULL_FORMAT,
            callbackAddress=runtime.config.dsp_url,
        )
        session.add(transfer)
        _send(session, transfer, "/transfers/request", request)
        await _log(session, runtime, transfer, "requested")
    return transfer


async def on_start(runtime: Runtime, caller: Caller, pid: str, message: dsp.TransferStart) -> Transfer:
    address = message.dataAddress
    if not address or not address.get("endpoint") or not dsp.endpoint_property(address, "authorization"):
        raise InvalidMessage("a pull transfer's start message needs a dataAddress with endpoint and authorization")
    async with runtime.transaction() as session:
        transfer = await find(session, pid, role="consumer", caller=caller, message=message)
        transfer.move("STARTED")
        transfer.provider_pid = message.providerPid
        transfer.data_address = json.dumps(address)
        await _log(session, runtime, transfer, "started")
    return transfer


# -- completion, suspension, termination: both sides ----------------------------------------------------------


async def on_update(
    runtime: Runtime, caller: Caller, pid: str, message: dsp.TransferUpdate, *, role: str, state: str
) -> Transfer:
    async with runtime.transaction() as session:
        transfer = await find(session, pid, role=role, caller=caller, message=message)
        transfer.move(state)
        if message.reason:
            transfer.reasons = json.dumps([str(r) for r in message.reason])
        await _log(session, runtime, transfer, state.lower(), by=caller.participant_id, reasons=message.reason)
    return transfer


MESSAGE_FOR_STATE = {
    "COMPLETED": ("TransferCompletionMessage", "completion"),
    "SUSPENDED": ("TransferSuspensionMessage", "suspension"),
    "TERMINATED": ("TransferTerminationMessage", "termination"),
}


async def change(runtime: Runtime, pid: str, state: str, reason: str | None = None) -> Transfer:
    """Our side completes, suspends or terminates a transfer and tells the counter-party."""
    kind, path = MESSAGE_FOR_STATE[state]
    async with runtime.transaction() as session:
        transfer = await session.get(Transfer, pid)
        if transfer is None:
            raise NotFound(f"no transfer {pid}")
        transfer.move(state)
        counterpart_pid = transfer.consumer_pid if transfer.role == "provider" else transfer.provider_pid
        body = dsp.message(
            kind,
            providerPid=transfer.provider_pid,
            consumerPid=transfer.consumer_pid,
            reason=[reason] if reason and kind != "TransferCompletionMessage" else None,
        )
        _send(session, transfer, f"/transfers/{counterpart_pid}/{path}", body)
        await _log(session, runtime, transfer, state.lower(), by=runtime.participant_id, reason=reason)
    return transfer


async def abandon(runtime: Runtime, pid: str, reason: str) -> None:
    """Mark a transfer TERMINATED locally when the counter-party cannot be told anything."""
    async with runtime.transaction() as session:
        transfer = await session.get(Transfer, pid)
        if transfer is None or transfer.state in FINAL_STATES:
            return
        transfer.state = "TERMINATED"
        transfer.reasons = json.dumps([reason])
        await _log(session, runtime, transfer, "abandoned", reasons=[reason])
