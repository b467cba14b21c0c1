"""Negotiation as the provider: requests, counter-offers, the consumer's acceptance and verification.

A request (initial or a counter-request) is an ODRL offer. Within the catalog offer, it goes to the
provider's agent: accept sends the signed agreement (the request, whole), counter sends a
ContractOfferMessage, terminate sends the reasons, wait leaves it to an operator. A request wider
than the offer is countered with the offer narrowed as far as the request allows. The consumer's
verification carries its countersignature, or, from a plain DSP consumer and with
`agreement_signatures = "when-offered"`, none; either way it finalizes the agreement.
"""

from dataclasses import dataclass

from sqlmodel.ext.asyncio.session import AsyncSession

from connector import agents, agreements, catalog, processes, proposals
from connector.catalog import Offer, UsagePolicy
from connector.negotiations import (
    Negotiation,
    carry_out,
    find,
    get,
    log,
    operator_verdict,
    propose,
    refuse,
    send,
    tell,
)
from connector.runtime import Runtime
from tessera import dsp
from tessera.errors import IllegalTransition, InvalidMessage
from tessera.identity import Caller
from tessera.ids import new_id
from tessera.odrl import Policy
from tessera.terms import Terms


@dataclass(frozen=True)
class _Request:
    """What a ContractRequestMessage asks for, against the catalog offer."""

    offered: Policy  # the catalog offer
    asked: Policy  # the request's policy (the offer itself when the request names the offer only)
    terms: Terms
    misfits: tuple[str, ...]  # why `asked` may not be agreed as it stands


async def on_request(runtime: Runtime, caller: Caller, message: dsp.ContractRequest) -> Negotiation:
    """An initial ContractRequestMessage: create the negotiation and let the agent answer it."""
    if message.providerPid is not None:
        raise InvalidMessage("an initial ContractRequestMessage carries no providerPid")
    if not message.callbackAddress:
        raise InvalidMessage("an initial ContractRequestMessage needs a callbackAddress")
    offer, usage = await _catalog_offer(runtime, message.offer.id, message.offer.target)
    request = _read_request(message, offer, usage)
    verdict = await _verdict(runtime, offer, caller, request, rounds=0)
    async with runtime.transaction() as session:
        existing = await processes.existing_request(session, Negotiation, caller, message.consumerPid)
        if existing is not None:
            return processes.as_requested(existing)  # a repeated request answers as the first did
        negotiation = processes.new(
            Negotiation,
            "provider",
            consumer_pid=message.consumerPid,
            counterparty_id=caller.participant_id,
            counterparty_address=message.callbackAddress,
            offer_id=offer.id,
            target=offer.asset_id,
            terms=request.terms,
            policy=request.asked.to_json(),
        )
        session.add(negotiation)
        await log(session, runtime, negotiation, "requested", offer=offer.id, terms=request.terms.to_dict())
        await _answer(session, runtime, negotiation, offer, usage, verdict)
    return processes.as_requested(negotiation)


async def on_counter_request(runtime: Runtime, caller: Caller, pid: str, message: dsp.ContractRequest) -> Negotiation:
    """The consumer answered our offer with a request of its own."""
    if message.callbackAddress is not None:
        raise InvalidMessage("a ContractRequestMessage for an existing negotiation carries no callbackAddress")
    async with runtime.db.session() as session:
        negotiation = await find(session, pid, caller=caller, role="provider", message=message)
    offer, usage = await _catalog_offer(runtime, negotiation.offer_id, None)
    request = _read_request(message, offer, usage)
    verdict = await _verdict(runtime, offer, caller, request, rounds=negotiation.rounds)
    async with runtime.transaction() as session:
        negotiation = await find(session, pid, caller=caller, role="provider", message=message)
        negotiation.move("REQUESTED")
        negotiation.terms = request.terms
        negotiation.policy = request.asked.to_json()
        negotiation.rounds += 1
        await log(session, runtime, negotiation, "requested", terms=request.terms.to_dict(), round=negotiation.rounds)
        await _answer(session, runtime, negotiation, offer, usage, verdict)
    return negotiation


async def on_accepted(runtime: Runtime, caller: Caller, pid: str, message: dsp.NegotiationEvent) -> Negotiation:
    """The consumer accepted our offer: agree on exactly its terms."""
    async with runtime.transaction() as session:
        negotiation = await find(session, pid, caller=caller, role="provider", message=message)
        negotiation.move("ACCEPTED")
        await log(session, runtime, negotiation, "accepted")
        offer, usage = await _offer_and_policy(session, negotiation.offer_id)
        await _agree(session, runtime, negotiation, offer, usage, negotiation.terms)
    return negotiation


async def on_verification(
    runtime: Runtime, caller: Caller, pid: str, message: dsp.AgreementVerification
) -> Negotiation:
    """The consumer verified the agreement: finalize, countersigned when it signed.

    A signature that is present must verify; without one, `agreement_signatures` decides (see agreements).
    """
    signature = (message.model_extra or {}).get(dsp.SIGNATURE)
    async with runtime.db.session() as session:
        negotiation = await find(session, pid, caller=caller, role="provider", message=message)
    if negotiation.state != "AGREED" or negotiation.agreement is None:
        raise IllegalTransition(f"negotiation {pid} is {negotiation.state}; there is no agreement to verify")
    agreement = negotiation.agreement
    checked = await agreements.check_peer_signature(
        runtime, caller.participant_id, agreement, signature, signer_name="consumer"
    )
    if checked.problem:
        await refuse(runtime, pid, [checked.problem], code="agreement-signature")
    async with runtime.transaction() as session:
        negotiation = await find(session, pid, caller=caller, role="provider", message=message)
        negotiation.move("VERIFIED")
        negotiation.consumer_signature = checked.kept
        countersigned = negotiation.consumer_signature is not None
        ignored = {"signature_ignored": checked.ignored} if checked.ignored else {}
        await log(session, runtime, negotiation, "verified", countersigned=countersigned, **ignored)
        negotiation.move("FINALIZED")
        session.add(agreements.record(negotiation, provider_address=runtime.config.dsp_url))
        tell(session, negotiation, "ContractNegotiationEventMessage", "events", eventType="FINALIZED")
        await log(session, runtime, negotiation, "finalized", agreement=agreement["@id"], countersigned=countersigned)
    return negotiation


async def offer_to(runtime: Runtime, *, consumer_id: str, consumer_url: str, offer_id: str) -> Negotiation:
    """Start a negotiation from our side with an initial ContractOfferMessage."""
    async with runtime.transaction() as session:
        offer, usage = await _offer_and_policy(session, offer_id)
        offered = proposals.as_offer(catalog.offer_policy(offer, usage), offer_id=offer.id, target=offer.asset_id)
        negotiation = processes.new(
            Negotiation,
            "provider",
            counterparty_id=consumer_id,
            counterparty_address=consumer_url,
            offer_id=offer.id,
            target=offer.asset_id,
            state="OFFERED",
            terms=offer.granted,
            policy=offered,
        )
        session.add(negotiation)
        body = dsp.message(
            "ContractOfferMessage", providerPid=negotiation.id, offer=offered, callbackAddress=runtime.config.dsp_url
        )
        send(session, negotiation, "/negotiations/offers", body)
        await log(session, runtime, negotiation, "offered", offer=offer.id, terms=offer.granted.to_dict())
    return negotiation


async def decide_by_operator(runtime: Runtime, pid: str, action: str, counter: Terms | None) -> Negotiation:
    """An operator accepts or counters a request the agent left waiting."""
    async with runtime.transaction() as session:
        negotiation = await get(session, pid)
        verdict = operator_verdict(negotiation, action, counter)
        offer, usage = await _offer_and_policy(session, negotiation.offer_id)
        await _answer(session, runtime, negotiation, offer, usage, verdict, by_operator=True)
    return negotiation


# -- the agent's answer --------------------------------------------------------------------------------------


async def _verdict(runtime: Runtime, offer: Offer, caller: Caller, request: _Request, rounds: int) -> agents.Verdict:
    granted = proposals.terms_of(request.offered)
    return await agents.provider_verdict(
        runtime, offer, caller, request.terms, rounds=rounds, misfits=request.misfits, granted=granted
    )


async def _answer(
    session: AsyncSession,
    runtime: Runtime,
    negotiation: Negotiation,
    offer: Offer,
    usage: UsagePolicy,
    verdict: agents.Verdict,
    *,
    by_operator: bool = False,
) -> None:
    async def accept(terms: Terms | None) -> None:
        assert terms is not None
        await _agree(session, runtime, negotiation, offer, usage, terms)

    async def counter(terms: Terms | None) -> None:
        assert terms is not None
        await _counter(session, runtime, negotiation, catalog.offer_policy(offer, usage), terms)

    await carry_out(
        session,
        runtime,
        negotiation,
        verdict,
        accept=accept,
        counter=counter,
        refusal_code="contract-policy",
        by_operator=by_operator,
    )


async def _agree(
    session: AsyncSession, runtime: Runtime, negotiation: Negotiation, offer: Offer, usage: UsagePolicy, agreed: Terms
) -> None:
    agreement = agreements.build(
        _agreed_policy(negotiation, catalog.offer_policy(offer, usage), agreed),
        target=offer.asset_id,
        provider_id=runtime.participant_id,
        consumer_id=negotiation.counterparty_id,
        binding=catalog.binding(offer, usage),
    )
    signature = await agreements.sign(agreement, runtime.document_signer)
    negotiation.move("AGREED")
    negotiation.terms = agreed
    negotiation.agreement = agreement
    negotiation.provider_signature = signature
    tell(
        session, negotiation, "ContractAgreementMessage", "agreement", agreement={**agreement, dsp.SIGNATURE: signature}
    )
    await log(session, runtime, negotiation, "agreed", agreement=agreement["@id"], policy_hash=usage.hash)


def _agreed_policy(negotiation: Negotiation, offered: Policy, agreed: Terms) -> Policy:
    """What is on the table, if it is within the offer and says `agreed`; else the offer narrowed to `agreed`."""
    table = negotiation.on_the_table
    if table is not None and proposals.terms_of(table) == agreed and not proposals.refusals(table, offered):
        return table
    return proposals.narrowed(offered, agreed)


async def _counter(
    session: AsyncSession, runtime: Runtime, negotiation: Negotiation, offered: Policy, counter: Terms
) -> None:
    proposal = proposals.narrowed(offered, counter)
    offer = proposals.as_offer(proposal, offer_id=new_id(), target=negotiation.target)
    await propose(session, runtime, negotiation, offer, proposals.terms_of(proposal))


# -- lookups --------------------------------------------------------------------------------------------------


async def _catalog_offer(runtime: Runtime, offer_id: str, target: str | None) -> tuple[Offer, UsagePolicy]:
    async with runtime.db.session() as session:
        offer = await session.get(Offer, offer_id)
        if offer is None or target not in (None, offer.asset_id):
            raise InvalidMessage(f"no offer {offer_id} for target {target}")
        return await _offer_and_policy(session, offer_id)


async def _offer_and_policy(session: AsyncSession, offer_id: str) -> tuple[Offer, UsagePolicy]:
    offer = await session.get(Offer, offer_id)
    policy = await session.get(UsagePolicy, offer.usage_policy_id) if offer else None
    if offer is None or policy is None:
        raise InvalidMessage(f"offer {offer_id} no longer exists")
    return offer, policy


def _read_request(message: dsp.ContractRequest, offer: Offer, usage: UsagePolicy) -> _Request:
    """The request's policy against the catalog offer; a request naming the offer only asks for it as published."""
    offered = catalog.offer_policy(offer, usage)
    asked = proposals.requested_policy(message.offer.model_dump(by_alias=True))
    if asked is None:
        return _Request(offered, offered, proposals.terms_of(offered), ())
    return _Request(offered, asked, proposals.terms_of(asked), tuple(proposals.refusals(asked, offered)))
