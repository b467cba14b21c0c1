"""Transfers as the consumer: requesting pull or push, taking the start, receiving pushed data.

Pull: the provider's start message gives the data address we pull from (`dataplane.pull`): with a token
in its `authorization` endpoint property, or none for an open endpoint. Push: our
request carries a data address on this connector with a token we issued for this transfer; the
provider posts the data there and we keep it in the connector's `received/` directory.
"""

from collections.abc import AsyncIterator

from connector import copies, data_tokens, transfers
from connector.agreements import Agreement
from connector.runtime import Runtime
from connector.transfers import Transfer, announce, get, log, send
from tessera import dsp
from tessera.errors import IllegalTransition, InvalidMessage, NotFound
from tessera.identity import Caller
from tessera.urls import check_url


async def start(
    runtime: Runtime, agreement_id: str, *, format: str = dsp.PULL_FORMAT, purpose: str | None = None
) -> Transfer:
    """Request a transfer under a finalized agreement. The request goes out through the outbox."""
    async with runtime.transaction() as session:
        agreement = await session.get(Agreement, agreement_id)
        if agreement is None or agreement.role != "consumer":
            raise NotFound(f"no agreement {agreement_id} on the consumer side")
        transfer = transfers.new(
            "consumer",
            agreement_id=agreement.id,
            counterparty_id=agreement.provider_id,
            counterparty_address=agreement.provider_address,
            format=format,
            purpose=purpose,
        )
        pid = transfer.id
        address = None
        if format == dsp.PUSH_FORMAT:
            token = data_tokens.issue(runtime, transfer_id=pid, agreement_id=agreement.id, holder=agreement.provider_id)
            address = dsp.data_address(f"{runtime.config.url.rstrip('/')}/push/{pid}", token, purpose=purpose)
        request = dsp.message(
            "TransferRequestMessage",
            consumerPid=pid,
            agreementId=agreement.id,
            format=format,
            dataAddress=address,
            callbackAddress=runtime.config.dsp_url,
        )
        session.add(transfer)
        send(session, transfer, "/transfers/request", request)
        await log(session, runtime, transfer, "requested", format=format)
    return transfer


async def on_start(runtime: Runtime, caller: Caller, pid: str, message: dsp.TransferStart) -> Transfer:
    """The provider started (or resumed) the transfer; a pull start gives us the data address."""
    return await transfers.on_started(runtime, caller, pid, message, role="consumer", take=_take_address)


def _take_address(transfer: Transfer, message: dsp.TransferStart) -> None:
    if transfer.is_push:
        return
    address = message.dataAddress
    if not address or not isinstance(address.get("endpoint"), str) or not address["endpoint"]:
        raise InvalidMessage("a pull transfer's start message needs a dataAddress with an endpoint")
    check_url(address["endpoint"], "dataAddress.endpoint", InvalidMessage)
    transfer.data_address = address  # how to authorize the pull is the address's to say (dataplane)


async def resume_by_operator(runtime: Runtime, pid: str) -> Transfer:
    async with runtime.transaction() as session:
        transfer = await get(session, pid)
        await announce(session, runtime, transfer, "STARTED")
    return transfer


async def receive_push(
    runtime: Runtime,
    pid: str,
    token: str,
    media_type: str,
    delete_after: str | None,
    labels: str | None,
    body: AsyncIterator[bytes],
) -> None:
    """Keep pushed data for a push transfer we requested, as a copy under its obligations."""
    claims = data_tokens.verify(runtime, token, pid)
    async with runtime.db.session() as session:
        transfer = await get(session, pid)
    if transfer.role != "consumer" or not transfer.is_push or claims["sub"] != transfer.counterparty_id:
        raise NotFound(f"no push transfer {pid}")
    if transfer.state not in {"REQUESTED", "STARTED"}:
        raise IllegalTransition(f"transfer {pid} is {transfer.state}; it takes no data")
    await runtime.participant_status.require_active(transfer.counterparty_id)
    await copies.store(runtime, transfer, body, media_type, copies.deadline(delete_after), copies.labels_of(labels))
    async with runtime.transaction() as session:
        (await get(session, pid)).received = True
