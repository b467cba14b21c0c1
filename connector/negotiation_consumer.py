"""Negotiation as the consumer: requesting an offer, answering offers, checking and countersigning.

The consumer's agent answers each offer from its needs (accept, counter or terminate); without
needs an operator decides. An agreement from the provider is checked (signature, terms, the usage
policy it binds) and countersigned at once; the provider's FINALIZED event completes it.
"""

from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from connector import agents, agreements
from connector.negotiations import (
    Negotiation,
    find,
    get,
    log,
    log_decision,
    offer_body,
    send,
    terminate,
    wait_for_operator,
)
from connector.runtime import Runtime
from tessera import dsp, terms
from tessera.errors import IllegalTransition, InvalidMessage
from tessera.identity import Caller
from tessera.ids import new_id
from tessera.terms import Terms


async def start(
    runtime: Runtime,
    *,
    provider_id: str,
    provider_url: str,
    offer_id: str,
    target: str,
    needs: agents.Needs | None = None,
) -> Negotiation:
    """Request an offer from a provider's catalog; with `needs`, our agent bargains for them."""
    pid = new_id()
    requested = needs.request if needs else Terms()
    negotiation = Negotiation(
        id=pid,
        role="consumer",
        consumer_pid=pid,
        counterparty_id=provider_id,
        counterparty_address=provider_url.rstrip("/"),
        offer_id=offer_id,
        target=target,
        terms=requested,
        needs=needs,
    )
    request = dsp.message(
        "ContractRequestMessage",
        consumerPid=pid,
        offer=offer_body(negotiation, requested, offer_id),
        callbackAddress=runtime.config.dsp_url,
    )
    async with runtime.transaction() as session:
        session.add(negotiation)
        send(session, negotiation, "/negotiations/request", request)
        await log(session, runtime, negotiation, "requested", offer=offer_id, terms=requested.to_dict())
    return negotiation


async def on_initial_offer(runtime: Runtime, caller: Caller, message: dsp.ContractOffer) -> Negotiation:
    """A provider offers us a contract first: record it; an operator decides (we have no needs for it)."""
    if message.consumerPid is not None or not message.callbackAddress:
        raise InvalidMessage("an initial ContractOfferMessage has a callbackAddress and no consumerPid")
    offered = terms.from_odrl(message.offer.model_dump(by_alias=True))
    pid = new_id()
    negotiation = Negotiation(
        id=pid,
        role="consumer",
        consumer_pid=pid,
        provider_pid=message.providerPid,
        counterparty_id=caller.participant_id,
        counterparty_address=message.callbackAddress.rstrip("/"),
        offer_id=message.offer.id,
        target=message.offer.target or "",
        state="OFFERED",
        terms=offered,
    )
    async with runtime.transaction() as session:
        session.add(negotiation)
        await log(session, runtime, negotiation, "offered", offer=message.offer.id, terms=offered.to_dict())
        wait_for_operator(session, negotiation, "an operator must accept or counter this offer")
    return negotiation


async def on_offer(runtime: Runtime, caller: Caller, pid: str, message: dsp.ContractOffer) -> Negotiation:
    """The provider countered our request."""
    offered = terms.from_odrl(message.offer.model_dump(by_alias=True))
    async with runtime.transaction() as session:
        negotiation = await find(session, pid, caller=caller, role="consumer", message=message)
        negotiation.move("OFFERED")
        negotiation.terms = offered
        negotiation.rounds += 1
        await log(session, runtime, negotiation, "offered", terms=offered.to_dict(), round=negotiation.rounds)
        verdict = agents.consumer_verdict(negotiation.needs, offered, negotiation.rounds)
        await _answer(session, runtime, negotiation, verdict)
    return negotiation


async def decide_by_operator(runtime: Runtime, pid: str, action: str, counter: Terms | None) -> Negotiation:
    async with runtime.transaction() as session:
        negotiation = await get(session, pid)
        if negotiation.state != "OFFERED":
            raise IllegalTransition(f"negotiation {pid} is {negotiation.state}; there is no offer to answer")
        verdict = (
            agents.Verdict("accept", negotiation.terms) if action == "accept" else agents.Verdict("counter", counter)
        )
        await _answer(session, runtime, negotiation, verdict, by_operator=True)
    return negotiation


async def _answer(
    session: AsyncSession,
    runtime: Runtime,
    negotiation: Negotiation,
    verdict: agents.Verdict,
    *,
    by_operator: bool = False,
) -> None:
    await log_decision(session, runtime, negotiation, verdict, by_operator=by_operator)
    if verdict.action == "accept":
        negotiation.move("ACCEPTED")
        event = dsp.message(
            "ContractNegotiationEventMessage",
            providerPid=negotiation.provider_pid,
            consumerPid=negotiation.consumer_pid,
            eventType="ACCEPTED",
        )
        send(session, negotiation, f"/negotiations/{negotiation.provider_pid}/events", event)
        await log(session, runtime, negotiation, "accepted", terms=negotiation.terms.to_dict())
    elif verdict.action == "counter":
        assert verdict.terms is not None
        negotiation.move("REQUESTED")
        negotiation.terms = verdict.terms
        negotiation.rounds += 1
        request = dsp.message(
            "ContractRequestMessage",
            providerPid=negotiation.provider_pid,
            consumerPid=negotiation.consumer_pid,
            offer=offer_body(negotiation, verdict.terms, new_id()),  # each counter-offer is a new offer
        )
        send(session, negotiation, f"/negotiations/{negotiation.provider_pid}/request", request)
        await log(session, runtime, negotiation, "requested", terms=verdict.terms.to_dict(), round=negotiation.rounds)
    elif verdict.action == "terminate":
        await terminate(session, runtime, negotiation, list(verdict.reasons), code="consumer-needs")
    else:
        wait_for_operator(session, negotiation, "; ".join(verdict.reasons))


async def on_agreement(runtime: Runtime, caller: Caller, pid: str, message: dsp.ContractAgreement) -> Negotiation:
    """The provider agreed: check its signature and the terms, countersign, and verify."""
    async with runtime.db.session() as session:
        negotiation = await find(session, pid, caller=caller, role="consumer", message=message)
    if negotiation.state not in {"REQUESTED", "ACCEPTED"}:
        raise IllegalTransition(f"negotiation {pid} is {negotiation.state}; an agreement is not expected")
    agreement = dict(message.agreement)
    signature = agreement.pop(dsp.SIGNATURE, None)
    _check_terms(runtime, negotiation, agreement)
    provider_jwk = await runtime.participants.jwk(caller.participant_id)
    agreements.check_signature(agreement, signature, provider_jwk, signer_name="provider")
    countersignature = agreements.sign(agreement, runtime.signer)
    async with runtime.transaction() as session:
        negotiation = await find(session, pid, caller=caller, role="consumer", message=message)
        negotiation.move("AGREED")
        negotiation.agreement = agreement
        negotiation.terms = terms.from_odrl(agreement)
        negotiation.provider_signature = signature
        negotiation.consumer_signature = countersignature
        await log(session, runtime, negotiation, "agreed", agreement=agreement["@id"])
        verification = dsp.message(
            "ContractAgreementVerificationMessage",
            providerPid=negotiation.provider_pid,
            consumerPid=negotiation.consumer_pid,
            **{dsp.SIGNATURE: countersignature},
        )
        send(session, negotiation, f"/negotiations/{negotiation.provider_pid}/agreement/verification", verification)
        negotiation.move("VERIFIED")
        await log(session, runtime, negotiation, "verified")
    return negotiation


def _check_terms(runtime: Runtime, negotiation: Negotiation, agreement: dict[str, Any]) -> None:
    agreements.usage_policy_ref(agreement)
    expected = {
        "target": negotiation.target,
        "assignee": runtime.participant_id,
        "assigner": negotiation.counterparty_id,
    }
    wrong = [f"{k} is {agreement.get(k)!r}, expected {v!r}" for k, v in expected.items() if agreement.get(k) != v]
    if negotiation.state == "ACCEPTED" and terms.from_odrl(agreement) != negotiation.terms:
        wrong.append("its terms differ from the offer we accepted")
    if wrong or not isinstance(agreement.get("@id"), str):
        raise InvalidMessage("the agreement does not match the negotiation: " + "; ".join(wrong or ["no @id"]))


async def on_finalized(runtime: Runtime, caller: Caller, pid: str, message: dsp.NegotiationEvent) -> Negotiation:
    async with runtime.transaction() as session:
        negotiation = await find(session, pid, caller=caller, role="consumer", message=message)
        negotiation.move("FINALIZED")
        session.add(agreements.record(negotiation, provider_address=negotiation.counterparty_address))
        await log(session, runtime, negotiation, "finalized")
    return negotiation
