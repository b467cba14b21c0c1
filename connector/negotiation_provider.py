"""Negotiation as the provider: requests, counter-offers, the consumer's acceptance and verification.

A request (initial or a counter-request) is put to the provider's agent: accept sends the signed
agreement, counter sends a ContractOfferMessage, terminate sends the reasons, wait leaves it to an
operator. The consumer's verification carries its countersignature and finalizes the agreement.
"""

from sqlmodel.ext.asyncio.session import AsyncSession

from connector import agents, agreements, processes
from connector.catalog import Offer, UsagePolicy
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


async def on_request(runtime: Runtime, caller: Caller, message: dsp.ContractRequest) -> Negotiation:
    """An initial ContractRequestMessage: create the negotiation and let the agent answer it."""
    if message.providerPid is not None:
        raise InvalidMessage("an initial ContractRequestMessage carries no providerPid")
    if not message.callbackAddress:
        raise InvalidMessage("an initial ContractRequestMessage needs a callbackAddress")
    offer = await _catalog_offer(runtime, message.offer.id, message.offer.target)
    requested = _requested_terms(message, offer)
    verdict = await agents.provider_verdict(runtime, offer, caller, requested, rounds=0)
    async with runtime.transaction() as session:
        existing = await processes.existing_request(session, Negotiation, caller, message.consumerPid)
        if existing is not None:
            return processes.as_requested(existing)  # a repeated request answers as the first did
        pid = new_id()
        negotiation = Negotiation(
            id=pid,
            role="provider",
            provider_pid=pid,
            consumer_pid=message.consumerPid,
            counterparty_id=caller.participant_id,
            counterparty_address=message.callbackAddress,
            offer_id=offer.id,
            target=offer.asset_id,
            terms=requested,
        )
        session.add(negotiation)
        await log(session, runtime, negotiation, "requested", offer=offer.id, terms=requested.to_dict())
        await _answer(session, runtime, negotiation, offer, verdict)
    return processes.as_requested(negotiation)


async def on_counter_request(runtime: Runtime, caller: Caller, pid: str, message: dsp.ContractRequest) -> Negotiation:
    """The consumer answered our offer with a request of its own."""
    if message.callbackAddress is not None:
        raise InvalidMessage("a ContractRequestMessage for an existing negotiation carries no callbackAddress")
    async with runtime.db.session() as session:
        negotiation = await find(session, pid, caller=caller, role="provider", message=message)
    offer = await _catalog_offer(runtime, negotiation.offer_id, None)
    requested = _requested_terms(message, offer)
    verdict = await agents.provider_verdict(runtime, offer, caller, requested, rounds=negotiation.rounds)
    async with runtime.transaction() as session:
        negotiation = await find(session, pid, caller=caller, role="provider", message=message)
        negotiation.move("REQUESTED")
        negotiation.terms = requested
        negotiation.rounds += 1
        await log(session, runtime, negotiation, "requested", terms=requested.to_dict(), round=negotiation.rounds)
        await _answer(session, runtime, negotiation, offer, verdict)
    return negotiation


async def on_accepted(runtime: Runtime, caller: Caller, pid: str, message: dsp.NegotiationEvent) -> Negotiation:
    """The consumer accepted our offer: agree on exactly its terms."""
    async with runtime.transaction() as session:
        negotiation = await find(session, pid, caller=caller, role="provider", message=message)
        negotiation.move("ACCEPTED")
        await log(session, runtime, negotiation, "accepted")
        offer, policy = await _offer_and_policy(session, negotiation.offer_id)
        await _agree(session, runtime, negotiation, offer, policy, negotiation.terms)
    return negotiation


async def on_verification(
    runtime: Runtime, caller: Caller, pid: str, message: dsp.AgreementVerification
) -> Negotiation:
    """The consumer verified the agreement, countersigning it: finalize."""
    signature = (message.model_extra or {}).get(dsp.SIGNATURE)
    async with runtime.db.session() as session:
        negotiation = await find(session, pid, caller=caller, role="provider", message=message)
    if negotiation.state != "AGREED" or negotiation.agreement is None:
        raise IllegalTransition(f"negotiation {pid} is {negotiation.state}; there is no agreement to verify")
    agreement = negotiation.agreement
    consumer_jwk = await runtime.participants.jwk(caller.participant_id)
    agreements.check_signature(agreement, signature, consumer_jwk, signer_name="consumer")
    async with runtime.transaction() as session:
        negotiation = await find(session, pid, caller=caller, role="provider", message=message)
        negotiation.move("VERIFIED")
        negotiation.consumer_signature = str(signature)
        await log(session, runtime, negotiation, "verified")
        negotiation.move("FINALIZED")
        session.add(agreements.record(negotiation, provider_address=runtime.config.dsp_url))
        event = dsp.message(
            "ContractNegotiationEventMessage",
            providerPid=negotiation.provider_pid,
            consumerPid=negotiation.consumer_pid,
            eventType="FINALIZED",
        )
        send(session, negotiation, f"/negotiations/{negotiation.consumer_pid}/events", event)
        await log(session, runtime, negotiation, "finalized", agreement=agreement["@id"])
    return negotiation


async def offer_to(runtime: Runtime, *, consumer_id: str, consumer_url: str, offer_id: str) -> Negotiation:
    """Start a negotiation from our side with an initial ContractOfferMessage."""
    async with runtime.transaction() as session:
        offer, _policy = await _offer_and_policy(session, offer_id)
        pid = new_id()
        negotiation = Negotiation(
            id=pid,
            role="provider",
            provider_pid=pid,
            counterparty_id=consumer_id,
            counterparty_address=consumer_url.rstrip("/"),
            offer_id=offer.id,
            target=offer.asset_id,
            state="OFFERED",
            terms=offer.granted,
        )
        session.add(negotiation)
        body = dsp.message(
            "ContractOfferMessage",
            providerPid=pid,
            offer=offer_body(negotiation, offer.granted, offer.id),
            callbackAddress=runtime.config.dsp_url,
        )
        send(session, negotiation, "/negotiations/offers", body)
        await log(session, runtime, negotiation, "offered", offer=offer.id, terms=offer.granted.to_dict())
    return negotiation


async def decide_by_operator(runtime: Runtime, pid: str, action: str, counter: Terms | None) -> Negotiation:
    """An operator accepts or counters a request the agent left waiting."""
    async with runtime.transaction() as session:
        negotiation = await get(session, pid)
        if negotiation.state != "REQUESTED":
            raise IllegalTransition(f"negotiation {pid} is {negotiation.state}; there is no request to answer")
        offer, _policy = await _offer_and_policy(session, negotiation.offer_id)
        verdict = (
            agents.Verdict("accept", negotiation.terms) if action == "accept" else agents.Verdict("counter", counter)
        )
        await _answer(session, runtime, negotiation, offer, verdict, by_operator=True)
    return negotiation


# -- the agent's answer --------------------------------------------------------------------------------------


async def _answer(
    session: AsyncSession,
    runtime: Runtime,
    negotiation: Negotiation,
    offer: Offer,
    verdict: agents.Verdict,
    *,
    by_operator: bool = False,
) -> None:
    await log_decision(session, runtime, negotiation, verdict, by_operator=by_operator)
    if verdict.action == "accept":
        assert verdict.terms is not None
        _offer, policy = await _offer_and_policy(session, offer.id)
        await _agree(session, runtime, negotiation, offer, policy, verdict.terms)
    elif verdict.action == "counter":
        assert verdict.terms is not None
        await _counter(session, runtime, negotiation, verdict.terms)
    elif verdict.action == "terminate":
        await terminate(session, runtime, negotiation, list(verdict.reasons), code="contract-policy")
    else:
        wait_for_operator(session, negotiation, "; ".join(verdict.reasons))


async def _agree(
    session: AsyncSession, runtime: Runtime, negotiation: Negotiation, offer: Offer, policy: UsagePolicy, agreed: Terms
) -> None:
    agreement = agreements.build(
        offer, policy, agreed, provider_id=runtime.participant_id, consumer_id=negotiation.counterparty_id
    )
    signature = agreements.sign(agreement, runtime.signer)
    negotiation.move("AGREED")
    negotiation.terms = agreed
    negotiation.agreement = agreement
    negotiation.provider_signature = signature
    body = dsp.message(
        "ContractAgreementMessage",
        providerPid=negotiation.provider_pid,
        consumerPid=negotiation.consumer_pid,
        agreement={**agreement, dsp.SIGNATURE: signature},
    )
    send(session, negotiation, f"/negotiations/{negotiation.consumer_pid}/agreement", body)
    await log(session, runtime, negotiation, "agreed", agreement=agreement["@id"], policy_hash=policy.hash)


async def _counter(session: AsyncSession, runtime: Runtime, negotiation: Negotiation, counter: Terms) -> None:
    negotiation.move("OFFERED")
    negotiation.terms = counter
    negotiation.rounds += 1
    body = dsp.message(
        "ContractOfferMessage",
        providerPid=negotiation.provider_pid,
        consumerPid=negotiation.consumer_pid,
        offer=offer_body(negotiation, counter, new_id()),
    )
    send(session, negotiation, f"/negotiations/{negotiation.consumer_pid}/offers", body)
    await log(session, runtime, negotiation, "offered", terms=counter.to_dict(), round=negotiation.rounds)


# -- lookups --------------------------------------------------------------------------------------------------


async def _catalog_offer(runtime: Runtime, offer_id: str, target: str | None) -> Offer:
    async with runtime.db.session() as session:
        offer = await session.get(Offer, offer_id)
    if offer is None or target not in (None, offer.asset_id):
        raise InvalidMessage(f"no offer {offer_id} for target {target}")
    return offer


async def _offer_and_policy(session: AsyncSession, offer_id: str) -> tuple[Offer, UsagePolicy]:
    offer = await session.get(Offer, offer_id)
    policy = await session.get(UsagePolicy, offer.usage_policy_id) if offer else None
    if offer is None or policy is None:
        raise InvalidMessage(f"offer {offer_id} no longer exists")
    return offer, policy


def _requested_terms(message: dsp.ContractRequest, offer: Offer) -> Terms:
    """The terms the consumer asks for; an offer without constraints asks for what the offer grants."""
    stated = message.offer.model_dump(by_alias=True)
    requested = terms.from_odrl(stated)
    return offer.granted if requested == Terms() else requested
