"""Why a negotiation or transfer is not moving: pending deliveries, or whose turn it is."""

import json
from datetime import UTC, datetime
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from connector.outbox import OutboxMessage

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


def waiting_for(process: Any, pending: list[OutboxMessage]) -> str | None:
    if process.state in {"FINALIZED", "COMPLETED", "TERMINATED"}:
        return None
    if pending:
        first = pending[0]
        kind = json.loads(first.body).get("@type")
        retry_at = datetime.fromtimestamp(first.next_attempt_at, UTC).isoformat(timespec="seconds")
        tried = (
            f"; {first.attempts} failed attempts, last: {first.last_error}; next at {retry_at}"
            if first.attempts
            else ""
        )
        return f"delivery of {kind} to {first.url}{tried}"
    if getattr(process, "waiting", None):
        return f"an operator: {process.waiting}"
    kind = "negotiation" if hasattr(process, "offer_id") else "transfer"
    return _TURNS.get((kind, process.role, process.state))
