"""Negotiation as the consumer: requesting an offer, answering offers, checking and countersigning.

We request the catalog offer's ODRL narrowed to our needs (or, when the catalog cannot be read, an
offer stating the terms only). The consumer's agent answers each offer from its needs (accept,
counter or terminate); without needs an operator decides. An agreement from the provider is checked
(same target and parties, a policy within what we asked for or accepted, a valid signature if it
carries one; a plain DSP provider's agreement without one is kept with `agreement_signatures =
"when-offered"`) and countersigned at once; the provider's FINALIZED event completes it. An offer or
agreement we refuse ends the negotiation with a termination that says why.
"""

from typing import Any
from urllib.parse import quote

import httpx
from sqlmodel.ext.asyncio.session import AsyncSession

from connector import agents, agreements, processes, proposals
from connector.negotiations import (
    Negotiation,
    carry_out,
    find,
    get,
    log,
    offer_body,
    operator_verdict,
    propose,
    refuse,
    send,
    tell,
    wait_for_operator,
)
from connector.runtime import Runtime
from policies.narrowing import narrow
from tessera import dsp
from tessera.errors import IllegalTransition, InvalidMessage, TesseraError
from tessera.identity import Caller
from tessera.ids import new_id
from tessera.odrl import InvalidPolicy, Policy
from tessera.terms import Terms

CATALOG_TIMEOUT = 5.0  # seconds to read the provider's offer before requesting by terms alone


async def catalog_offer(
    runtime: Runtime, *, provider_id: str, provider_url: str, target: str, offer_id: str
) -> Policy | None:
    """The offer as the provider's catalog publishes it (its dataset), or None when it cannot be read."""
    url = f"{provider_url.rstrip('/')}/catalog/datasets/{quote(target, safe='')}"
    try:
        headers = await runtime.authorization(provider_id)
        response = await runtime.http.get(url, headers=headers, timeout=CATALOG_TIMEOUT)
        dataset = dsp.compact(response.json()) if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError, TesseraError):  # no catalog: we request by terms alone
        return None
    offers = dataset.get("hasPolicy") if isinstance(dataset, dict) else None
    for offer in offers if isinstance(offers, list) else []:
        if isinstance(offer, dict) and offer.get("@id") == offer_id:
            try:
                return proposals.offered_policy(offer)
            except InvalidPolicy:
                return None
    return None


async def start(
    runtime: Runtime,
    *,
    provider_id: str,
    provider_url: str,
    offer_id: str,
    target: str,
    needs: agents.Needs | None = None,
    offer: Policy | None = None,
) -> Negotiation:
    """Request an offer from a provider's catalog; with `needs`, our agent bargains for them.

    `offer` is the catalog offer's policy, when known: we ask for it narrowed to our needs.
    """
    requested = needs.request if needs else Terms()
    negotiation = processes.new(
        Negotiation,
        "consumer",
        counterparty_id=provider_id,
        counterparty_address=provider_url,
        offer_id=offer_id,
        target=target,
        terms=requested,
        needs=needs,
    )
    if offer is not None:
        asked = narrow(offer, requested) if needs else offer
        negotiation.policy = proposals.as_offer(asked, offer_id=offer_id, target=target)
        negotiation.terms = proposals.terms_of(asked)
    else:
        negotiation.policy = offer_body(negotiation, requested, offer_id)
    request = dsp.message(
        "ContractRequestMessage",
        consumerPid=negotiation.id,
        offer=negotiation.policy,
        callbackAddress=runtime.config.dsp_url,
    )
    async with runtime.transaction() as session:
        session.add(negotiation)
        send(session, negotiation, "/negotiations/request", request)
        await log(session, runtime, negotiation, "requested", offer=offer_id, terms=negotiation.terms.to_dict())
    return negotiation


async def on_initial_offer(runtime: Runtime, caller: Caller, message: dsp.ContractOffer) -> Negotiation:
    """A provider offers us a contract first: record it; an operator decides (we have no needs for it)."""
    if message.consumerPid is not None or not message.callbackAddress:
        raise InvalidMessage("an initial ContractOfferMessage has a callbackAddress and no consumerPid")
    offered = proposals.offered_policy(message.offer.model_dump(by_alias=True))
    negotiation = processes.new(
        Negotiation,
        "consumer",
        provider_pid=message.providerPid,
        counterparty_id=caller.participant_id,
        counterparty_address=message.callbackAddress,
        offer_id=message.offer.id,
        target=message.offer.target or "",
        state="OFFERED",
        terms=proposals.terms_of(offered),
        policy=offered.to_json(),
    )
    async with runtime.transaction() as session:
        session.add(negotiation)
        await log(session, runtime, negotiation, "offered", offer=message.offer.id, terms=negotiation.terms.to_dict())
        wait_for_operator(session, negotiation, "an operator must accept or counter this offer")
    return negotiation


async def on_offer(runtime: Runtime, caller: Caller, pid: str, message: dsp.ContractOffer) -> Negotiation:
    """The provider countered our request."""
    async with runtime.db.session() as session:
        await find(session, pid, caller=caller, role="consumer", message=message)
    try:
        offered = proposals.offered_policy(message.offer.model_dump(by_alias=True))
    except InvalidPolicy as exc:
        await refuse(runtime, pid, [f"the offer cannot be read: {exc.detail}"], code="offer-refused")
    async with runtime.transaction() as session:
        negotiation = await find(session, pid, caller=caller, role="consumer", message=message)
        negotiation.move("OFFERED")
        negotiation.terms = proposals.terms_of(offered)
        negotiation.policy = offered.to_json()
        negotiation.rounds += 1
        await log(session, runtime, negotiation, "offered", terms=negotiation.terms.to_dict(), round=negotiation.rounds)
        verdict = agents.consumer_verdict(negotiation.needs, negotiation.terms, negotiation.rounds)
        await _answer(session, runtime, negotiation, verdict)
    return negotiation


async def decide_by_operator(runtime: Runtime, pid: str, action: str, counter: Terms | None) -> Negotiation:
    async with runtime.transaction() as session:
        negotiation = await get(session, pid)
        verdict = operator_verdict(negotiation, action, counter)
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
    async def accept(_terms: Terms | None) -> None:
        negotiation.move("ACCEPTED")
        tell(session, negotiation, "ContractNegotiationEventMessage", "events", eventType="ACCEPTED")
        await log(session, runtime, negotiation, "accepted", terms=negotiation.terms.to_dict())

    async def counter(terms: Terms | None) -> None:
        assert terms is not None
        await _counter(session, runtime, negotiation, terms)

    await carry_out(
        session,
        runtime,
        negotiation,
        verdict,
        accept=accept,
        counter=counter,
        refusal_code="consumer-needs",
        by_operator=by_operator,
    )


async def _counter(session: AsyncSession, runtime: Runtime, negotiation: Negotiation, wanted: Terms) -> None:
    """Ask for `wanted`: the offer on the table narrowed to it (each counter-offer is a new offer)."""
    table = negotiation.on_the_table
    if table is not None:
        asked = proposals.as_offer(narrow(table, wanted), offer_id=new_id(), target=negotiation.target)
    else:
        asked = offer_body(negotiation, wanted, new_id())
    await propose(session, runtime, negotiation, asked, wanted)


async def on_agreement(runtime: Runtime, caller: Caller, pid: str, message: dsp.ContractAgreement) -> Negotiation:
    """The provider agreed: check the agreement against what we asked for, countersign, and verify."""
    async with runtime.db.session() as session:
        negotiation = await find(session, pid, caller=caller, role="consumer", message=message)
    if negotiation.state not in {"REQUESTED", "ACCEPTED"}:
        raise IllegalTransition(f"negotiation {pid} is {negotiation.state}; an agreement is not expected")
    agreement = dict(message.agreement)
    signature = agreement.pop(dsp.SIGNATURE, None)
    problems = _mismatches(runtime, negotiation, agreement)
    checked = await agreements.check_peer_signature(
        runtime, caller.participant_id, agreement, signature, signer_name="provider"
    )
    problems += [checked.problem] if checked.problem else []
    if problems:
        await refuse(runtime, pid, ["the agreement is refused: " + p for p in problems], code="agreement-refused")
    countersignature = await agreements.sign(agreement, runtime.document_signer)
    async with runtime.transaction() as session:
        negotiation = await find(session, pid, caller=caller, role="consumer", message=message)
        negotiation.move("AGREED")
        negotiation.agreement = agreement
        negotiation.terms = proposals.terms_of(agreements.read(agreement))
        negotiation.provider_signature = checked.kept
        negotiation.consumer_signature = countersignature
        ignored = {"signature_ignored": checked.ignored} if checked.ignored else {}
        signed = checked.kept is not None
        await log(session, runtime, negotiation, "agreed", agreement=agreement["@id"], signed=signed, **ignored)
        verification = {dsp.SIGNATURE: countersignature}
        tell(session, negotiation, "ContractAgreementVerificationMessage", "agreement/verification", **verification)
        negotiation.move("VERIFIED")
        await log(session, runtime, negotiation, "verified")
    return negotiation


def _mismatches(runtime: Runtime, negotiation: Negotiation, agreement: dict[str, Any]) -> list[str]:
    """How the agreement differs from what we asked for (or accepted); empty when it matches."""
    try:
        policy = agreements.read(agreement)
        agreements.usage_policy_ref(agreement)
    except InvalidMessage as exc:
        return [exc.detail]
    expected = {
        "target": negotiation.target,
        "assignee": runtime.participant_id,
        "assigner": negotiation.counterparty_id,
    }
    wrong = [f"{k} is {getattr(policy, k)!r}, expected {v!r}" for k, v in expected.items() if getattr(policy, k) != v]
    if not isinstance(agreement.get("@id"), str):
        wrong.append("it has no @id")
    table = negotiation.on_the_table
    if table is not None:
        wrong += [f"it asks for more than we did: {reason}" for reason in proposals.wider(policy, table)]
    if negotiation.state == "ACCEPTED" and proposals.terms_of(policy) != negotiation.terms:
        wrong.append("its terms differ from the offer we accepted")
    return wrong


async def on_finalized(runtime: Runtime, caller: Caller, pid: str, message: dsp.NegotiationEvent) -> Negotiation:
    async with runtime.transaction() as session:
        negotiation = await find(session, pid, caller=caller, role="consumer", message=message)
        negotiation.move("FINALIZED")
        agreement = agreements.record(negotiation, provider_address=negotiation.counterparty_address)
        session.add(agreement)
        await log(session, runtime, negotiation, "finalized", countersigned=agreement.countersigned)
    return negotiation
