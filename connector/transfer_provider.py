"""Transfers as the provider: pull (we serve a data address) and push (we send to the consumer's).

A request is accepted only from the agreement's consumer. Pull: the start message carries our data
plane's address with a data token for this transfer. Push: once started, the usage policy decides
the push (with the purpose the consumer declared), the data is streamed to the consumer's address,
and the transfer completes; a denial or a failed push terminates it with the reason.

`transfer_start = "immediate"` starts a transfer in the transaction that records its request;
`"async"` answers REQUESTED, keeps when it is due to start, and starts it after `transfer_start_delay`
seconds (a restart starts what was due), as the Dataspace TCK expects of a provider.
"""

import asyncio
import logging
from datetime import timedelta
from typing import Any

import httpx
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from connector import data_tokens, fast_path, processes, transfers, usage
from connector.agreements import Agreement
from connector.runtime import Runtime
from connector.transfers import Transfer, announce, find, get, log
from tessera import dsp, logs
from tessera.clock import utcnow
from tessera.errors import IllegalTransition, InvalidMessage, NotEntitled, TesseraError
from tessera.identity import Caller

logger = logging.getLogger("tessera.transfer")
FORMATS = {dsp.PULL_FORMAT, dsp.PUSH_FORMAT}
START_LEASE, PUSH_LEASE = "start:", "push:"  # + the transfer's pid


async def on_request(runtime: Runtime, caller: Caller, message: dsp.TransferRequest) -> Transfer:
    if message.format not in FORMATS:
        raise InvalidMessage(f"format {message.format!r} is not supported; use one of {sorted(FORMATS)}")
    push_address = _push_address(message) if message.format == dsp.PUSH_FORMAT else None
    async with runtime.transaction() as session:
        existing = await processes.existing_request(session, Transfer, caller, message.consumerPid)
        if existing is not None:
            return processes.as_requested(existing)  # a repeated request answers as the first did
        agreement = await session.get(Agreement, message.agreementId)
        if agreement is None or agreement.role != "provider" or agreement.consumer_id != caller.participant_id:
            raise InvalidMessage(f"no agreement {message.agreementId} with {caller.participant_id}")
        transfer = transfers.new(
            "provider",
            agreement_id=agreement.id,
            counterparty_id=caller.participant_id,
            counterparty_address=message.callbackAddress,
            consumer_pid=message.consumerPid,
            format=message.format,
            caller_claims=caller.to_policy_input(),
            data_address=push_address,
            purpose=dsp.endpoint_property(push_address, "purpose") if push_address else None,
        )
        pid = transfer.id
        session.add(transfer)
        await log(session, runtime, transfer, "requested", format=message.format)
        if runtime.config.transfer_start == "async":
            transfer.start_due = utcnow() + timedelta(seconds=runtime.config.transfer_start_delay)
        else:
            await _start(session, runtime, transfer)
    if transfer.start_due:
        runtime.spawn(start_when_due(runtime, pid))
    elif transfer.is_push:
        runtime.spawn(push(runtime, pid))
    return processes.as_requested(transfer)


async def _start(session: AsyncSession, runtime: Runtime, transfer: Transfer) -> None:
    transfer.start_due = None
    await announce(session, runtime, transfer, "STARTED", data_address=_pull_address(runtime, transfer))


async def _after_start(runtime: Runtime, transfer: Transfer) -> None:
    if transfer.is_push:
        await push(runtime, transfer.id)


async def start_when_due(runtime: Runtime, pid: str) -> None:
    """Start a transfer that waits in REQUESTED once it is due, unless it was ended meanwhile; one
    replica waits for it (a lease), another takes over if that one crashes."""
    async with runtime.leases.holding(START_LEASE + pid) as held:
        if held:
            await _start_when_due(runtime, pid)


async def _start_when_due(runtime: Runtime, pid: str) -> None:
    async with runtime.db.session() as session:
        due = (await get(session, pid)).start_due
    if due is None:
        return
    await asyncio.sleep(max(0.0, (due - utcnow()).total_seconds()))
    async with runtime.transaction() as session:
        transfer = await get(session, pid)
        if transfer.start_due is None:
            return
        if transfer.state != "REQUESTED":
            transfer.start_due = None  # terminated before it was due
            return
        await _start(session, runtime, transfer)
    await _after_start(runtime, transfer)


def _push_address(message: dsp.TransferRequest) -> dict[str, Any]:
    address = message.dataAddress
    if not address or not address.get("endpoint") or not dsp.endpoint_property(address, "authorization"):
        raise InvalidMessage("a push transfer needs a dataAddress with endpoint and authorization")
    return address


def _pull_address(runtime: Runtime, transfer: Transfer) -> dict[str, Any] | None:
    if transfer.is_push:
        return None
    token = data_tokens.issue(
        runtime, transfer_id=transfer.id, agreement_id=transfer.agreement_id, holder=transfer.counterparty_id
    )
    return dsp.data_address(f"{runtime.config.url.rstrip('/')}/data/{transfer.id}", token)


async def on_resume(runtime: Runtime, caller: Caller, pid: str, message: dsp.TransferStart) -> Transfer:
    """The consumer resumes a suspended transfer."""
    return await transfers.on_started(runtime, caller, pid, message, role="provider")


async def resume_by_operator(runtime: Runtime, pid: str) -> Transfer:
    """Our operator starts a suspended transfer again (or one still waiting in REQUESTED)."""
    async with runtime.transaction() as session:
        transfer = await get(session, pid)
        waited = transfer.state == "REQUESTED"
        await _start(session, runtime, transfer)
    if waited:
        await _after_start(runtime, transfer)
    return transfer


async def refresh_token(runtime: Runtime, caller: Caller, pid: str) -> str:
    """A new data token for a started pull transfer, for the consumer that holds it.

    The access token it came with is fresh, so its claims replace those captured at the start: an
    attribute the operator changed since then decides the pulls from now on.
    """
    async with runtime.transaction() as session:
        transfer = await find(session, pid, caller=caller, role="provider")
        if transfer.state != "STARTED" or transfer.is_push:
            raise IllegalTransition(f"transfer {pid} is {transfer.state}; no data token to refresh")
        transfer.caller_claims = caller.to_policy_input()
    return data_tokens.issue(runtime, transfer_id=pid, agreement_id=transfer.agreement_id, holder=caller.participant_id)


# -- push ----------------------------------------------------------------------------------------------------


async def push(runtime: Runtime, pid: str) -> None:
    """Decide and send a push transfer's data, then complete it; terminate it on denial or failure.

    One replica pushes (a lease, renewed while it sends); if it crashes, another pushes again.
    """
    logs.process_id.set(pid)  # a task of its own (`runtime.spawn`): its log lines name the transfer
    async with runtime.leases.holding(PUSH_LEASE + pid) as held:
        if held:
            await _push(runtime, pid)


async def _push(runtime: Runtime, pid: str) -> None:
    async with runtime.db.session() as session:
        transfer = await get(session, pid)
    if transfer.state != "STARTED" or transfer.pushed or not transfer.data_address:
        return
    try:
        use = await usage.decide_use(runtime, transfer, usage.Declared(purpose=transfer.purpose), fast_path.Asked())
        address = transfer.data_address
        token = dsp.endpoint_property(address, "authorization")
        headers = {"Authorization": f"Bearer {token}", **use.headers}
        if use.fetch is not None:  # the stored file as it is, streamed with its length
            chunks, media_type = usage.stored_content(runtime, use), use.fetch.stored.media_type
            headers["Content-Length"] = str(use.fetch.stored.size)
        else:
            chunks, media_type = await usage.content(runtime, use)
        headers["Content-Type"] = media_type
        response = await runtime.http.post(
            address["endpoint"], content=chunks, headers=headers, timeout=httpx.Timeout(60.0, connect=5.0)
        )
        if response.status_code >= 300:
            raise NotEntitled(f"the consumer refused the data ({response.status_code}): {response.text[:300]}")
    except (TesseraError, httpx.HTTPError) as exc:
        reason = "; ".join(getattr(exc, "reasons", None) or [str(exc)])
        logger.warning("push of transfer %s failed: %s", pid, reason)
        return await _end(runtime, pid, "TERMINATED", reason)
    except Exception as exc:  # a bad file or address no check caught: this transfer ends, never stuck STARTED
        logger.exception("push of transfer %s failed unexpectedly", pid)
        return await _end(runtime, pid, "TERMINATED", f"the push failed: {type(exc).__name__}: {exc}")
    await _end(runtime, pid, "COMPLETED", None)


async def _end(runtime: Runtime, pid: str, state: str, reason: str | None) -> None:
    async with runtime.transaction() as session:
        transfer = await get(session, pid)
        if transfer.state != "STARTED":
            return
        transfer.pushed = state == "COMPLETED"
        await announce(session, runtime, transfer, state, reason=reason)


async def resume_continually(runtime: Runtime) -> None:
    """On a shared database, keep taking over what a crashed replica left: its leases expire, we claim."""
    while True:
        await asyncio.sleep(runtime.leases.seconds / 2)
        try:
            await resume(runtime)
        except Exception:  # a database hiccup: the next round looks again
            logger.exception("looking for transfers to resume failed")


async def resume(runtime: Runtime) -> None:
    """After a restart: start what was due to start, push again what was started but never sent.

    What another replica works on is left to it: its lease makes `start_when_due` and `push` return.
    """
    async with runtime.db.session() as session:
        due = select(Transfer).where(Transfer.role == "provider", col(Transfer.start_due).is_not(None))
        starts = [t.id for t in await session.exec(due)]
        unsent = select(Transfer).where(
            Transfer.role == "provider",
            Transfer.format == dsp.PUSH_FORMAT,
            Transfer.state == "STARTED",
            Transfer.pushed == False,  # noqa: E712 (SQL comparison)
        )
        pushes = [t.id for t in await session.exec(unsent)]
    for pid in starts:
        runtime.spawn(start_when_due(runtime, pid))
    for pid in pushes:
        runtime.spawn(push(runtime, pid))
