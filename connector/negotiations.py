"""The negotiation record and the DSP 2025-1 state machine rules shared by both roles.

States change only here (`Negotiation.move`), each with an audit entry, inside the transaction that
also queues the message announcing the change.
"""

from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, NoReturn

from sqlmodel import Field
from sqlmodel.ext.asyncio.session import AsyncSession

from connector import agents, processes, timeline
from connector.processes import Process
from connector.runtime import Runtime
from tessera import dsp
from tessera.errors import IllegalTransition, InvalidMessage
from tessera.identity import Caller
from tessera.odrl import Policy, parse_policy
from tessera.store import Json, JsonOf
from tessera.terms import Terms

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


class TermsColumn(JsonOf[Terms]):
    """Terms kept as JSON (`Terms.to_dict`)."""

    cache_ok = True

    def load(self, data: Any) -> Terms:
        return Terms.from_dict(data)

    def dump(self, value: Terms) -> Any:
        return value.to_dict()


class Negotiation(Process, table=True):
    noun: ClassVar[str] = "negotiation"
    transitions: ClassVar[dict[str, set[str]]] = TRANSITIONS

    offer_id: str  # the catalog offer negotiated over
    target: str
    terms: Terms = Field(default_factory=Terms, sa_type=TermsColumn)  # the terms currently on the table
    # The ODRL policy currently on the table (the last request or offer, 2025-1 compact); None: terms only.
    policy: dict[str, Any] | None = Field(default=None, sa_type=Json)
    needs: agents.Needs | None = Field(default=None, sa_type=agents.NeedsColumn)  # None: an operator decides
    rounds: int = 0  # counter-offers so far
    waiting: str | None = None  # why nothing moves, when an operator must act
    agreement: dict[str, Any] | None = Field(default=None, sa_type=Json)  # the ODRL Agreement, once agreed
    provider_signature: str | None = None
    consumer_signature: str | None = None

    async def keeps_receipts(self, session: AsyncSession) -> bool:
        """A counter-party that signed the agreement speaks Tessera's extensions."""
        return bool(self.provider_signature if self.role == "consumer" else self.consumer_signature)

    def public(self) -> dict[str, Any]:
        data = self.model_dump(
            mode="json",
            exclude={"agreement", "provider_signature", "consumer_signature", "reasons", "terms", "needs", "policy"},
        )
        data["terms"] = self.terms.to_dict()
        data["needs"] = self.needs.model_dump(mode="json") if self.needs else None
        data["reasons"] = list(self.reasons)
        data["agreement_id"] = self.agreement["@id"] if self.agreement else None
        data["policy"] = self.policy
        return data

    @property
    def on_the_table(self) -> Policy | None:
        return parse_policy(self.policy, where="negotiation.policy") if self.policy else None

    def dsp(self) -> dict[str, Any]:
        return dsp.negotiation(self.provider_pid or "", self.consumer_pid or "", self.state)

    def move(self, state: str) -> None:
        super().move(state)
        self.waiting = None


async def find(
    session: AsyncSession, pid: str, *, caller: Caller, role: str | None = None, message: dsp.Message | None = None
) -> Negotiation:
    """Our negotiation `pid`, if the caller is its counter-party (see `processes.find`)."""
    return await processes.find(session, Negotiation, pid, caller=caller, role=role, message=message)


async def get(session: AsyncSession, pid: str) -> Negotiation:
    return await processes.get(session, Negotiation, pid)


send = processes.send
tell = processes.tell
log = processes.log


async def propose(
    session: AsyncSession, runtime: Runtime, negotiation: Negotiation, offer: dict[str, Any], terms: Terms
) -> None:
    """Our next round: a counter-request (consumer) or a counter-offer (provider) with `offer` on the table."""
    consumer = negotiation.role == "consumer"
    negotiation.move("REQUESTED" if consumer else "OFFERED")
    negotiation.terms = terms
    negotiation.policy = offer
    negotiation.rounds += 1
    kind, path = ("ContractRequestMessage", "request") if consumer else ("ContractOfferMessage", "offers")
    tell(session, negotiation, kind, path, offer=offer)
    action = "requested" if consumer else "offered"
    await log(session, runtime, negotiation, action, terms=terms.to_dict(), round=negotiation.rounds)


async def log_decision(
    session: AsyncSession, runtime: Runtime, negotiation: Negotiation, verdict: agents.Verdict, *, by_operator: bool
) -> None:
    """An agent's or operator's answer (accept, counter, terminate, wait) with its reasons."""
    by = "operator" if by_operator else "agent"
    timeline.decided(session, negotiation.id, by, verdict.action, verdict.reasons)
    await log(
        session,
        runtime,
        negotiation,
        "decided",
        verdict=verdict.action,
        reasons=list(verdict.reasons),
        by=by,
    )


def operator_verdict(negotiation: Negotiation, action: str, counter: Terms | None) -> agents.Verdict:
    """An operator's accept (of the terms on the table) or counter, when there is something to answer."""
    provider = negotiation.role == "provider"
    if negotiation.state != ("REQUESTED" if provider else "OFFERED"):
        what = "request" if provider else "offer"
        raise IllegalTransition(f"negotiation {negotiation.id} is {negotiation.state}; there is no {what} to answer")
    return agents.Verdict("accept", negotiation.terms) if action == "accept" else agents.Verdict("counter", counter)


def wait_for_operator(session: AsyncSession, negotiation: Negotiation, why: str) -> None:
    negotiation.waiting = why
    timeline.record(session, negotiation.id, "waiting", None, detail=why)


Step = Callable[[Terms | None], Awaitable[None]]  # one role's way to accept, or to counter, with these terms


async def carry_out(
    session: AsyncSession,
    runtime: Runtime,
    negotiation: Negotiation,
    verdict: agents.Verdict,
    *,
    accept: Step,
    counter: Step,
    refusal_code: str,
    by_operator: bool = False,
) -> None:
    """Do what an agent (or an operator) decided: each role accepts and counters its own way; terminating
    and waiting for the operator are the same on both sides."""
    await log_decision(session, runtime, negotiation, verdict, by_operator=by_operator)
    if verdict.action == "accept":
        await accept(verdict.terms)
    elif verdict.action == "counter":
        await counter(verdict.terms)
    elif verdict.action == "terminate":
        await terminate(session, runtime, negotiation, list(verdict.reasons), code=refusal_code)
    else:
        wait_for_operator(session, negotiation, "; ".join(verdict.reasons))


def offer_body(negotiation: Negotiation, terms: Terms, offer_id: str) -> dict[str, Any]:
    """An offer that states the terms only (when the whole policy is not known)."""
    return {"@type": "Offer", "@id": offer_id, "target": negotiation.target, "permission": terms.permission()}


# -- termination: either side, from any non-final state ---------------------------------------------------


async def terminate(
    session: AsyncSession, runtime: Runtime, negotiation: Negotiation, reasons: list[str], *, code: str
) -> None:
    """End the negotiation on our side and tell the counter-party why."""
    negotiation.move("TERMINATED")
    negotiation.reasons = list(reasons)
    timeline.record(session, negotiation.id, "terminated", None, detail="; ".join(reasons))
    tell(session, negotiation, "ContractNegotiationTerminationMessage", "termination", code=code, reason=list(reasons))
    await log(session, runtime, negotiation, "terminated", by=runtime.participant_id, reasons=reasons)


async def refuse(runtime: Runtime, pid: str, reasons: list[str], *, code: str) -> NoReturn:
    """Our side refuses the counter-party's offer or agreement: terminate, tell it why, answer with a DSP error."""
    refusal = InvalidMessage("; ".join(reasons), reasons=reasons)
    timeline.answering(refusal.status_code)
    async with runtime.transaction() as session:
        negotiation = await get(session, pid)
        if not negotiation.final:
            timeline.decided(session, negotiation.id, "agent", "refuse", reasons)
            await terminate(session, runtime, negotiation, reasons, code=code)
    raise refusal


async def on_termination(runtime: Runtime, caller: Caller, pid: str, message: dsp.Termination) -> Negotiation:
    async with runtime.transaction() as session:
        negotiation = await find(session, pid, caller=caller, message=message)
        negotiation.move("TERMINATED")
        negotiation.reasons = [str(r) for r in message.reason]
        timeline.record(session, negotiation.id, "terminated", None, detail="; ".join(negotiation.reasons) or None)
        await log(session, runtime, negotiation, "terminated", by=caller.participant_id, reasons=message.reason)
    return negotiation


async def terminate_by_operator(runtime: Runtime, pid: str, reason: str) -> Negotiation:
    async with runtime.transaction() as session:
        negotiation = await get(session, pid)
        timeline.decided(session, negotiation.id, "operator", "terminate", [reason])
        await terminate(session, runtime, negotiation, [reason], code="terminated-by-" + negotiation.role)
    return negotiation


async def abandon(runtime: Runtime, pid: str, reason: str) -> None:
    """Mark a negotiation TERMINATED locally when the counter-party cannot be told anything."""
    await processes.abandon(runtime, Negotiation, pid, reason)
