"""Contract negotiation, both roles, as the DSP 2025-1 state machine.

Provider: a ContractRequestMessage creates a REQUESTED negotiation; the offer's access policy (the
contract policy) either agrees, sending the signed agreement, or terminates with its reasons. The
consumer's verification, carrying its countersignature, finalizes the agreement.
Consumer: the management API starts a negotiation; an agreement from the provider is checked
(signature, terms) and countersigned at once; the provider's FINALIZED event completes it.

Each change is written with its audit entry and the outgoing message (outbox) in one transaction.
"""

import json
from typing import Any

from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from connector import agreements, audit, dsp
from connector.agreements import Agreement
from connector.assets import utcnow
from connector.catalog import Offer, UsagePolicy, new_id
from connector.errors import IllegalTransition, InvalidMessage, NotFound, UnknownProcess
from connector.identity import Caller
from connector.outbox import enqueue
from connector.policy import Decision
from connector.runtime import Runtime

FINAL_STATES = {"FINALIZED", "TERMINATED"}


class Negotiation(SQLModel, table=True):
    id: str = Field(primary_key=True)  # our pid: providerPid as provider, consumerPid as consumer
    role: str  # provider | consumer
    provider_pid: str | None = Field(default=None, index=True)
    consumer_pid: str = Field(index=True)
    counterparty_id: str
    counterparty_address: str  # their DSP base URL (provider) or callbackAddress (consumer)
    offer_id: str
    target: str
    state: str = "REQUESTED"
    agreement: str | None = None  # JSON, once agreed
    provider_signature: str | None = None
    consumer_signature: str | None = None
    reasons: str = "[]"  # JSON, why it was terminated
    created_at: str = Field(default_factory=utcnow)
    updated_at: str = Field(default_factory=utcnow)

    def public(self) -> dict[str, Any]:
        data = self.model_dump(exclude={"agreement", "provider_signature", "consumer_signature", "reasons"})
        data["reasons"] = json.loads(self.reasons)
        data["agreement_id"] = json.loads(self.agreement)["@id"] if self.agreement else None
        return data

    def dsp(self) -> dict[str, Any]:
        return dsp.negotiation(self.provider_pid or "", self.consumer_pid, self.state)

    def move(self, state: str, *, allowed_from: set[str]) -> None:
        if self.state not in allowed_from:
            raise IllegalTransition(f"negotiation {self.id} is {self.state}; it cannot become {state}")
        self.state = state
        self.updated_at = utcnow()


# -- lookups --------------------------------------------------------------------------------------------


async def find(
    session: AsyncSession, pid: str, *, role: str, caller: Caller, message: dsp.Message | None = None
) -> Negotiation:
    """Our negotiation `pid`, if `caller` is its counter-party; otherwise as unknown (404)."""
    negotiation = await session.get(Negotiation, pid)
    if negotiation is None or negotiation.role != role or negotiation.counterparty_id != caller.participant_id:
        raise UnknownProcess(f"no negotiation {pid}")
    if message is not None:
        _check_pids(negotiation, message)
    return negotiation


def _check_pids(process: Negotiation, message: dsp.Message) -> None:
    """The pids a message names must be this process's; a provider pid we did not know yet is learned."""
    consumer_pid, provider_pid = getattr(message, "consumerPid", None), getattr(message, "providerPid", None)
    if consumer_pid is not None and consumer_pid != process.consumer_pid:
        raise InvalidMessage(f"consumerPid {consumer_pid} does not belong to process {process.id}")
    if provider_pid is not None and process.provider_pid not in (None, provider_pid):
        raise InvalidMessage(f"providerPid {provider_pid} does not belong to process {process.id}")
    if provider_pid is not None and process.provider_pid is None:
        process.provider_pid = provider_pid


def _peer_url(negotiation: Negotiation, path: str) -> str:
    return negotiation.counterparty_address.rstrip("/") + path


def _send(session: AsyncSession, negotiation: Negotiation, path: str, body: dict[str, Any]) -> None:
    enqueue(
        session,
        process_id=negotiation.id,
        url=_peer_url(negotiation, path),
        audience=negotiation.counterparty_id,
        body=body,
    )


async def _log(session: AsyncSession, runtime: Runtime, negotiation: Negotiation, action: str, **details: Any) -> None:
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


# -- provider side ----------------------------------------------------------------------------------------


async def contract_decision(runtime: Runtime, offer: Offer, caller: Caller) -> Decision:
    """The contract policy: the offer's access policy, if it has one, decides with the caller's claims."""
    if offer.access_policy_id is None:
        return Decision(allow=True)
    async with runtime.db.session() as session:
        policy = await session.get(UsagePolicy, offer.access_policy_id)
    assert policy is not None  # a foreign key guards it
    request = {"caller": caller.to_policy_input(), "offer": {"id": offer.id, "target": offer.asset_id}, "now": utcnow()}
    return await runtime.engine.decide(policy.module, request)


async def on_request(runtime: Runtime, caller: Caller, message: dsp.ContractRequest) -> Negotiation:
    """An initial ContractRequestMessage: create the negotiation, then agree or terminate."""
    if message.providerPid is not None:
        raise InvalidMessage("an initial ContractRequestMessage carries no providerPid")
    if not message.callbackAddress:
        raise InvalidMessage("an initial ContractRequestMessage needs a callbackAddress")
    async with runtime.db.session() as session:
        offer = await session.get(Offer, message.offer.id)
        if offer is not None and message.offer.target not in (None, offer.asset_id):
            offer = None
        policy = await session.get(UsagePolicy, offer.usage_policy_id) if offer else None
    if offer is None or policy is None:
        raise InvalidMessage(f"no offer {message.offer.id} for target {message.offer.target}")
    decision = await contract_decision(runtime, offer, caller)
    async with runtime.transaction() as session:
        negotiation = await _existing_request(session, caller, message.consumerPid)
        if negotiation is not None:
            return negotiation  # a repeated request answers as the first did
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
        )
        session.add(negotiation)
        await _log(session, runtime, negotiation, "requested", offer=offer.id)
        if decision.allow:
            await _agree(session, runtime, negotiation, offer, policy)
        else:
            await _terminate(session, runtime, negotiation, list(decision.reasons), code="contract-policy")
    response = negotiation.model_copy()
    response.state = "REQUESTED"
    return response


async def _existing_request(session: AsyncSession, caller: Caller, consumer_pid: str) -> Negotiation | None:
    query = select(Negotiation).where(
        Negotiation.role == "provider",
        Negotiation.consumer_pid == consumer_pid,
        Negotiation.counterparty_id == caller.participant_id,
    )
    return (await session.exec(query)).first()


async def _agree(
    session: AsyncSession, runtime: Runtime, negotiation: Negotiation, offer: Offer, policy: UsagePolicy
) -> None:
    agreement = agreements.build(
        offer, policy, provider_id=runtime.participant_id, consumer_id=negotiation.counterparty_id
    )
    signature = agreements.sign(agreement, runtime.signer)
    negotiation.move("AGREED", allowed_from={"REQUESTED", "ACCEPTED"})
    negotiation.agreement = json.dumps(agreement)
    negotiation.provider_signature = signature
    body = dsp.message(
        "ContractAgreementMessage",
        providerPid=negotiation.provider_pid,
        consumerPid=negotiation.consumer_pid,
        agreement={**agreement, dsp.SIGNATURE: signature},
    )
    _send(session, negotiation, f"/negotiations/{negotiation.consumer_pid}/agreement", body)
    await _log(session, runtime, negotiation, "agreed", agreement=agreement["@id"], policy_hash=policy.hash)


async def on_verification(
    runtime: Runtime, caller: Caller, pid: str, message: dsp.AgreementVerification
) -> Negotiation:
    """The consumer verified the agreement, countersigning it: finalize."""
    signature = (message.model_extra or {}).get(dsp.SIGNATURE)
    async with runtime.db.session() as session:
        negotiation = await find(session, pid, role="provider", caller=caller, message=message)
    if negotiation.state != "AGREED" or negotiation.agreement is None:
        raise IllegalTransition(f"negotiation {pid} is {negotiation.state}; nothing to verify")
    agreement = json.loads(negotiation.agreement)
    consumer_jwk = await runtime.participants.jwk(caller.participant_id)
    agreements.check_signature(agreement, signature, consumer_jwk, signer_name="consumer")
    async with runtime.transaction() as session:
        negotiation = await find(session, pid, role="provider", caller=caller, message=message)
        negotiation.move("VERIFIED", allowed_from={"AGREED"})
        negotiation.consumer_signature = str(signature)
        await _log(session, runtime, negotiation, "verified")
        negotiation.move("FINALIZED", allowed_from={"VERIFIED"})
        session.add(_agreement_record(negotiation, provider_address=runtime.config.dsp_url))
        event = dsp.message(
            "ContractNegotiationEventMessage",
            providerPid=negotiation.provider_pid,
            consumerPid=negotiation.consumer_pid,
            eventType="FINALIZED",
        )
        _send(session, negotiation, f"/negotiations/{negotiation.consumer_pid}/events", event)
        await _log(session, runtime, negotiation, "finalized", agreement=agreement["@id"])
    return negotiation


# -- consumer side ----------------------------------------------------------------------------------------


async def start(runtime: Runtime, *, provider_id: str, provider_url: str, offer_id: str, target: str) -> Negotiation:
    """Request an offer from the provider's catalog. The request goes out through the outbox."""
    pid = new_id()
    negotiation = Negotiation(
        id=pid,
        role="consumer",
        consumer_pid=pid,
        counterparty_id=provider_id,
        counterparty_address=provider_url.rstrip("/"),
        offer_id=offer_id,
        target=target,
    )
    request = dsp.message(
        "ContractRequestMessage",
        consumerPid=pid,
        offer={"@type": "Offer", "@id": offer_id, "target": target, "permission": [{"action": "use"}]},
        callbackAddress=runtime.config.dsp_url,
    )
    async with runtime.transaction() as session:
        session.add(negotiation)
        _send(session, negotiation, "/negotiations/request", request)
        await _log(session, runtime, negotiation, "requested", offer=offer_id)
    return negotiation


async def on_agreement(runtime: Runtime, caller: Caller, pid: str, message: dsp.ContractAgreement) -> Negotiation:
    """The provider agreed: check its signature and the terms, countersign, and verify."""
    async with runtime.db.session() as session:
        negotiation = await find(session, pid, role="consumer", caller=caller, message=message)
    if negotiation.state not in {"REQUESTED", "ACCEPTED"}:
        raise IllegalTransition(f"negotiation {pid} is {negotiation.state}; an agreement is not expected")
    agreement = dict(message.agreement)
    signature = agreement.pop(dsp.SIGNATURE, None)
    _check_terms(runtime, negotiation, agreement)
    provider_jwk = await runtime.participants.jwk(caller.participant_id)
    agreements.check_signature(agreement, signature, provider_jwk, signer_name="provider")
    countersignature = agreements.sign(agreement, runtime.signer)
    async with runtime.transaction() as session:
        negotiation = await find(session, pid, role="consumer", caller=caller, message=message)
        negotiation.move("AGREED", allowed_from={"REQUESTED", "ACCEPTED"})
        negotiation.provider_pid = message.providerPid
        negotiation.agreement = json.dumps(agreement)
        negotiation.provider_signature = signature
        negotiation.consumer_signature = countersignature
        await _log(session, runtime, negotiation, "agreed", agreement=agreement["@id"])
        verification = dsp.message(
            "ContractAgreementVerificationMessage",
            providerPid=message.providerPid,
            consumerPid=negotiation.consumer_pid,
            **{dsp.SIGNATURE: countersignature},
        )
        _send(session, negotiation, f"/negotiations/{message.providerPid}/agreement/verification", verification)
        negotiation.move("VERIFIED", allowed_from={"AGREED"})
        await _log(session, runtime, negotiation, "verified")
    return negotiation


def _check_terms(runtime: Runtime, negotiation: Negotiation, agreement: dict[str, Any]) -> None:
    agreements.usage_policy_ref(agreement)
    expected = {
        "target": negotiation.target,
        "assignee": runtime.participant_id,
        "assigner": negotiation.counterparty_id,
    }
    wrong = [f"{k} is {agreement.get(k)!r}, expected {v!r}" for k, v in expected.items() if agreement.get(k) != v]
    if wrong or not isinstance(agreement.get("@id"), str):
        raise InvalidMessage("the agreement does not match the request: " + "; ".join(wrong or ["no @id"]))


async def on_event(
    runtime: Runtime, caller: Caller, pid: str, message: dsp.NegotiationEvent, *, role: str
) -> Negotiation:
    async with runtime.transaction() as session:
        negotiation = await find(session, pid, role=role, caller=caller, message=message)
        if role == "provider" or message.eventType != "FINALIZED":
            # We never offer, so the consumer's ACCEPTED event has nothing to accept.
            raise IllegalTransition(f"event {message.eventType} is not allowed in state {negotiation.state}")
        negotiation.move("FINALIZED", allowed_from={"VERIFIED"})
        session.add(_agreement_record(negotiation, provider_address=negotiation.counterparty_address))
        await _log(session, runtime, negotiation, "finalized")
    return negotiation


def _agreement_record(negotiation: Negotiation, *, provider_address: str) -> Agreement:
    assert negotiation.agreement and negotiation.provider_signature and negotiation.consumer_signature
    document = json.loads(negotiation.agreement)
    policy_id, policy_hash = agreements.usage_policy_ref(document)
    return Agreement(
        id=document["@id"],
        role=negotiation.role,
        negotiation_id=negotiation.id,
        provider_id=document["assigner"],
        consumer_id=document["assignee"],
        provider_address=provider_address,
        target=document["target"],
        offer_id=negotiation.offer_id,
        usage_policy_id=policy_id,
        usage_policy_hash=policy_hash,
        document=negotiation.agreement,
        provider_signature=negotiation.provider_signature,
        consumer_signature=negotiation.consumer_signature,
        signed_at=utcnow(),
    )


# -- termination, both sides --------------------------------------------------------------------------------


async def on_termination(
    runtime: Runtime, caller: Caller, pid: str, message: dsp.Termination, *, role: str
) -> Negotiation:
    async with runtime.transaction() as session:
        negotiation = await find(session, pid, role=role, caller=caller, message=message)
        _require_not_final(negotiation)
        negotiation.move("TERMINATED", allowed_from={negotiation.state})
        negotiation.reasons = json.dumps([str(r) for r in message.reason])
        await _log(session, runtime, negotiation, "terminated", by=caller.participant_id, reasons=message.reason)
    return negotiation


async def terminate(runtime: Runtime, pid: str, reason: str) -> Negotiation:
    """Our side ends a negotiation and tells the counter-party."""
    async with runtime.transaction() as session:
        negotiation = await session.get(Negotiation, pid)
        if negotiation is None:
            raise NotFound(f"no negotiation {pid}")
        _require_not_final(negotiation)
        await _terminate(session, runtime, negotiation, [reason], code="terminated-by-" + negotiation.role)
    return negotiation


async def _terminate(
    session: AsyncSession, runtime: Runtime, negotiation: Negotiation, reasons: list[str], *, code: str
) -> None:
    negotiation.move("TERMINATED", allowed_from={negotiation.state})
    negotiation.reasons = json.dumps(reasons)
    counterpart_pid = negotiation.consumer_pid if negotiation.role == "provider" else negotiation.provider_pid
    if counterpart_pid:
        body = dsp.message(
            "ContractNegotiationTerminationMessage",
            providerPid=negotiation.provider_pid,
            consumerPid=negotiation.consumer_pid,
            code=code,
            reason=reasons,
        )
        _send(session, negotiation, f"/negotiations/{counterpart_pid}/termination", body)
    await _log(session, runtime, negotiation, "terminated", by=runtime.participant_id, reasons=reasons)


def _require_not_final(negotiation: Negotiation) -> None:
    if negotiation.state in FINAL_STATES:
        raise IllegalTransition(f"negotiation {negotiation.id} is already {negotiation.state}")


async def abandon(runtime: Runtime, pid: str, reason: str) -> None:
    """Mark a negotiation TERMINATED locally when the counter-party cannot be told anything."""
    async with runtime.transaction() as session:
        negotiation = await session.get(Negotiation, pid)
        if negotiation is None or negotiation.state in FINAL_STATES:
            return
        negotiation.move("TERMINATED", allowed_from={negotiation.state})
        negotiation.reasons = json.dumps([reason])
        await _log(session, runtime, negotiation, "abandoned", reasons=[reason])
