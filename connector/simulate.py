"""Explain and simulate, without side effects: would a participant get an offer, would a data request
be allowed, and with which obligations. Nothing is counted, logged or sent."""

from typing import Any

from sqlmodel import col, select

from connector import agents, grades, usage
from connector.agreements import Agreement
from connector.assets import Asset
from connector.catalog import Offer, UsagePolicy
from connector.runtime import Runtime
from connector.transfers import Transfer
from policies.explain import Explanation, explain, explain_patterns
from tessera.clock import rfc3339
from tessera.errors import NotFound, PeerError, PolicyEvaluationError
from tessera.identity import Caller


async def would_get_offer(runtime: Runtime, participant_id: str, offer_id: str) -> dict[str, Any]:
    """Would `participant_id` see offer `offer_id` in our catalog and be able to contract for it?"""
    caller = await _claims(runtime, participant_id)
    async with runtime.db.session() as session:
        offer = await session.get(Offer, offer_id)
        if offer is None:
            raise NotFound(f"no offer {offer_id}")
        policy = await session.get(UsagePolicy, offer.access_policy_id) if offer.access_policy_id else None
        asset, usage_policy = (
            await session.get(Asset, offer.asset_id),
            await session.get(UsagePolicy, offer.usage_policy_id),
        )
    assert asset is not None and usage_policy is not None  # foreign keys guard them
    answer = {"participant": caller, "offer": offer.id, "terms": offer.terms.model_dump(mode="json")}
    if refusals := grades.offer_refusals(runtime.config.grades, asset, usage_policy, caller, runtime.participant_id):
        return answer | {"allow": False, "reasons": refusals, "obligations": [], "patterns": [], "access_policy": None}
    if policy is None:
        return answer | {"allow": True, "reasons": [], "obligations": [], "patterns": [], "access_policy": None}
    request = {"caller": caller, "offer": {"id": offer.id, "target": offer.asset_id}, "now": rfc3339()}
    request |= agents.asset_input(asset)
    explanation = await explain(runtime.engine, policy.module, request)
    return answer | explanation.to_dict() | {"access_policy": policy.id}


async def would_use(runtime: Runtime, agreement_id: str, declared: usage.Declared) -> dict[str, Any]:
    """Would the next data request under `agreement_id` be allowed, and with which obligations?

    Decided by the data plane's own decision (`usage.judge`: the compiled agreement and its bound module
    in one evaluation, obligations checked as executable, the connector's rules by grade and across
    borders), on the uses counted so far; the patterns only explain it.
    """
    async with runtime.db.session() as session:
        agreement = await session.get(Agreement, agreement_id)
        if agreement is None or agreement.role != "provider":
            raise NotFound(f"no agreement {agreement_id} on the provider side")
        latest = select(Transfer).where(Transfer.agreement_id == agreement_id, Transfer.role == "provider")
        transfer = (await session.exec(latest.order_by(col(Transfer.created_at).desc()))).first()
        counter = await session.get(usage.UsageCounter, agreement_id)
        asset = await session.get(Asset, agreement.target)
    if asset is None:
        raise NotFound(f"the asset of agreement {agreement.id} is gone")
    policy = await usage.bound_policy(runtime, agreement)
    caller = transfer.caller_claims if transfer is not None else await _claims(runtime, agreement.consumer_id)
    request = usage.usage_input(
        agreement,
        caller,
        declared,
        counter.uses if counter else 0,
        asset,
        now=runtime.clock(),
        connector_id=transfer.counterparty_address if transfer is not None else None,
    )
    decision = await usage.judge(runtime, agreement, policy, asset, request, declared.query)  # as the data plane
    try:
        patterns = await explain_patterns(runtime.engine, usage.modules(agreement, policy), request)
    except PolicyEvaluationError:
        patterns = ()  # the decision says why
    explanation = Explanation(decision, patterns)
    compiled = usage.compiled(agreement)
    return {
        "agreement": agreement_id,
        "input": request,
        "policy": policy.id if policy is not None else None,
        "agreement_module": {"id": compiled.module.id, "hash": compiled.module.hash, "problems": compiled.problems},
    } | explanation.to_dict()


async def _claims(runtime: Runtime, participant_id: str) -> dict[str, Any]:
    """`input.caller` as a token of the participant would make it: the authority's record holds the very
    claims its access tokens carry (`claims`), read through the same `Caller.to_policy_input`."""
    record = await runtime.participants.record(participant_id)
    claims = record.get("claims")
    if not isinstance(claims, dict):
        raise PeerError(f"the broker's record of {participant_id} holds no token claims")
    return Caller.of(participant_id, claims).to_policy_input()
