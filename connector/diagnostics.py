"""Why a negotiation or transfer is not moving: pending deliveries, or whose turn it is."""

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from connector.negotiations import Negotiation
from connector.outbox import OutboxMessage
from connector.processes import Process

# (kind, role, state) -> what the process waits for
_TURNS = {
    ("negotiation", "consumer", "REQUESTED"): "the provider's answer: an agreement, a counter-offer or a termination",
    ("negotiation", "consumer", "ACCEPTED"): "the provider's agreement",
    ("negotiation", "consumer", "VERIFIED"): "the provider's FINALIZED event",
    ("negotiation", "consumer", "OFFERED"): "our answer to the provider's offer",
    ("negotiation", "provider", "REQUESTED"): "our answer to the consumer's request",
    ("negotiation", "provider", "OFFERED"): "the consumer's answer to our offer",
    ("negotiation", "provider", "AGREED"): "the consumer's verification of the agreement",
    ("transfer", "consumer", "REQUESTED"): "the provider's start message",
    ("transfer", "provider", "REQUESTED"): "our start message",
    ("transfer", "consumer", "STARTED"): "data requests, then completion by either side",
    ("transfer", "provider", "STARTED"): "data requests, then completion by either side",
    ("transfer", "consumer", "SUSPENDED"): "resumption or termination",
    ("transfer", "provider", "SUSPENDED"): "resumption or termination",
}


async def outbox_pending(session: AsyncSession, process_id: str) -> list[OutboxMessage]:
    query = select(OutboxMessage).where(OutboxMessage.process_id == process_id, OutboxMessage.status == "pending")
    return list(await session.exec(query.order_by(col(OutboxMessage.id))))


def waiting_for(process: Process, pending: list[OutboxMessage]) -> str | None:
    if process.final:
        return None
    if pending:
        first = pending[0]
        kind = first.kind
        retry_at = first.next_attempt_at.isoformat(timespec="seconds")  # `+00:00`, as it always said
        tried = (
            f"; {first.attempts} failed attempts, last: {first.last_error}; next at {retry_at}"
            if first.attempts
            else ""
        )
        return f"delivery of {kind} to {first.url}{tried}"
    if isinstance(process, Negotiation) and process.waiting:
        return f"an operator: {process.waiting}"
    return _TURNS.get((process.noun, process.role, process.state))
