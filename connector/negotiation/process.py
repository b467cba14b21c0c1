"""The negotiation record and the DSP 2025-1 state machine rules shared by both roles.

States change only here (`Negotiation.move`), each with an audit entry, inside the transaction that
also queues the message announcing the change.
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
from connector.terms import Terms

FINAL_STATES = {"FINALIZED", "TERMINATED"}
MAX_COUNTER_ROUNDS = 3  # after this many counter-offers an agent stops bargaining and terminates

# The DSP 2025-1 negotiation state machine: state -> states it may move to.
TRANSITIONS: dict[str, set[str]] = {
    "REQUESTED": {"OFFERED", "AGREED", "TERMINATED"},
    "OFFERED": {"REQUESTED", "ACCEPTED", "TERMINATED"},
    "ACCEPTED": {"AGREED", "TERMINATED"},
    "AGREED": {"VERIFIED", "TERMINATED"},
    "VERIFIED": {"FINALIZED", "TERMINATED"},
    "FINALIZED": set(),
    "TERMINATED": set(),
}


class Negotiation(SQLModel, table=True):
    id: str = Field(primary_key=True)  # our pid: providerPid as provider, consumerPid as consumer
    role: str  # provider | consumer
    provider_pid: str | None = Field(default=None, index=True)
    consumer_pid: str | None = Field(default=None, index=True)
    counterparty_id: str
    counterparty_address: str  # their DSP base URL (provider) or callbackAddress (consumer)
    offer_id: str  # the catalog offer negotiated over
    target: str
    state: str = "REQUESTED"
    terms: str = "{}"  # JSON: the terms currently on the table
    needs: str | None = None  # JSON: a consumer's needs for its agent; None = an operator decides
    rounds: int = 0  # counter-offers so far
    waiting: str | None = None  # why nothing moves, when an operator must act
    agreement: str | None = None  # JSON, once agreed
    provider_signature: str | None = None
    consumer_signature: str | None = None
    reasons: str = "[]"  # JSON: why it was terminated
    created_at: str = Field(default_factory=utcnow)
    updated_at: str = Field(default_factory=utcnow)

    @property
    def current_terms(self) -> Terms:
        return Terms.from_dict(json.loads(self.terms))

    @property
    def counterpart_pid(self) -> str | None:
        return self.consumer_pid if self.role == "provider" else self.provider_pid

    def public(self) -> dict[str, Any]:
        data = self.model_dump(
            exclude={"agreement", "provider_signature", "consumer_signature", "reasons", "terms", "needs"}
        )
        data["terms"] = json.loads(self.terms)
        data["needs"] = json.loads(self.needs) if self.needs else None
        data["reasons"] = json.loads(self.reasons)
        data["agreement_id"] = json.loads(self.agreement)["@id"] if self.agreement else None
        return data

    def dsp(self) -> dict[str, Any]:
        return dsp.negotiation(self.provider_pid or "", self.consumer_pid or "", self.state)

    def move(self, state: str) -> None:
        if state not in TRANSITIONS[self.state]:
            raise IllegalTransition(f"negotiation {self.id} is {self.state}; it cannot become {state}")
        self.state = state
        self.waiting = None
        self.updated_at = utcnow()


async def find(
    session: AsyncSession, pid: str, *, caller: Caller, role: str | None = None, message: dsp.Message | None = None
) -> Negotiation:
    """Our negotiation `pid`, if `caller` is its counter-party; otherwise as unknown (404)."""
    negotiation = await session.get(Negotiation, pid)
    if negotiation is None or negotiation.counterparty_id != caller.participant_id:
        raise UnknownProcess(f"no negotiation {pid}")
    if role is not None and negotiation.role != role:
        raise IllegalTransition(f"negotiation {pid} is ours as {negotiation.role}; this message is for a {role}")
    if message is not None:
        check_pids(negotiation, message)
    return negotiation


async def get(session: AsyncSession, pid: str) -> Negotiation:
    negotiation = await session.get(Negotiation, pid)
    if negotiation is None:
        raise NotFound(f"no negotiation {pid}")
    return negotiation


def check_pids(negotiation: Negotiation, message: dsp.Message) -> None:
    """The pids a message names must be this process's; a counterpart pid we did not know yet is learned."""
    for name, attribute in (("consumerPid", "consumer_pid"), ("providerPid", "provider_pid")):
        given = getattr(message, name, None)
        known = getattr(negotiation, attribute)
        if given is not None and known not in (None, given):
            raise InvalidMessage(f"{name} {given} does not belong to negotiation {negotiation.id}")
        if given is not None and known is None:
            setattr(negotiation, attribute, given)


def send(session: AsyncSession, negotiation: Negotiation, path: str, body: dict[str, Any]) -> None:
    url = negotiation.counterparty_address.rstrip("/") + path
    enqueue(session, process_id=negotiation.id, url=url, audience=negotiation.counterparty_id, body=body)
    timeline.record(session, negotiation.id, "queued", body["@type"], detail=url)


async def log(session: AsyncSession, runtime: Runtime, negotiation: Negotiation, action: str, **details: Any) -> None:
    await audit.append(
        session,
        actor=runtime.participant_id,
        action=f"negotiation.{action}",
        subject=negotiation.id,
        role=negotiation.role,
        counterparty=negotiation.counterparty_id,
        state=negotiation.state,
        **details,
    )


def wait_for_operator(session: AsyncSession, negotiation: Negotiation, why: str) -> None:
    negotiation.waiting = why
    timeline.record(session, negotiation.id, "waiting", None, detail=why)


def offer_body(negotiation: Negotiation, terms: Terms, offer_id: str) -> dict[str, Any]:
    return {"@type": "Offer", "@id": offer_id, "target": negotiation.target, "permission": terms.permission()}


# -- termination: either side, from any non-final state ---------------------------------------------------


async def terminate(
    session: AsyncSession, runtime: Runtime, negotiation: Negotiation, reasons: list[str], *, code: str
) -> None:
    """End the negotiation on our side and tell the counter-party why."""
    negotiation.move("TERMINATED")
    negotiation.reasons = json.dumps(reasons)
    if negotiation.counterpart_pid:
        body = dsp.message(
            "ContractNegotiationTerminationMessage",
            providerPid=negotiation.provider_pid,
            consumerPid=negotiation.consumer_pid,
            code=code,
            reason=reasons,
        )
        send(session, negotiation, f"/negotiations/{negotiation.counterpart_pid}/termination", body)
    await log(session, runtime, negotiation, "terminated", by=runtime.participant_id, reasons=reasons)


async def on_termination(runtime: Runtime, caller: Caller, pid: str, message: dsp.Termination) -> Negotiation:
    async with runtime.transaction() as session:
        negotiation = await find(session, pid, caller=caller, message=message)
        negotiation.move("TERMINATED")
        negotiation.reasons = json.dumps([str(r) for r in message.reason])
        await log(session, runtime, negotiation, "terminated", by=caller.participant_id, reasons=message.reason)
    return negotiation


async def terminate_by_operator(runtime: Runtime, pid: str, reason: str) -> Negotiation:
    async with runtime.transaction() as session:
        negotiation = await get(session, pid)
        await terminate(session, runtime, negotiation, [reason], code="terminated-by-" + negotiation.role)
    return negotiation


async def abandon(runtime: Runtime, pid: str, reason: str) -> None:
    """Mark a negotiation TERMINATED locally when the counter-party cannot be told anything."""
    async with runtime.transaction() as session:
        negotiation = await session.get(Negotiation, pid)
        if negotiation is None or negotiation.state in FINAL_STATES:
            return
        negotiation.move("TERMINATED")
        negotiation.reasons = json.dumps([reason])
        await log(session, runtime, negotiation, "abandoned", reasons=[reason])
