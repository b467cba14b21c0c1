"""What the outbox's outcomes mean for negotiations and transfers: an undeliverable message ends its
process; the answer to an initial request names the counter-party's pid.
"""

from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from connector import negotiations, transfers
from connector.negotiations import Negotiation
from connector.outbox import OutboxMessage
from connector.runtime import Runtime
from connector.transfers import Transfer


async def abandon_process(runtime: Runtime, message: OutboxMessage) -> None:
    """A message the counter-party will never receive ends its process on our side."""
    reason = f"the counter-party could not be told: {message.last_error}"
    await negotiations.abandon(runtime, message.process_id, reason)
    await transfers.abandon(runtime, message.process_id, reason)


INITIAL_REQUESTS = ("ContractRequestMessage", "TransferRequestMessage")


async def learn_pids(session: AsyncSession, message: OutboxMessage, reply: Any) -> None:
    """The answer to an initial request names the counter-party's pid; remember it (in the delivery's transaction)."""
    initial = message.kind in INITIAL_REQUESTS and "providerPid" not in message.document()
    if not initial or not isinstance(reply, dict) or not isinstance(reply.get("providerPid"), str):
        return
    for model in (Negotiation, Transfer):
        process = await session.get(model, message.process_id)
        if process is not None and process.role == "consumer" and process.provider_pid is None:
            process.provider_pid = reply["providerPid"]
