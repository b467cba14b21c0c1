"""The two negotiating agents: each turns a proposal into accept, counter, terminate or wait.

Provider: the connector's rules by grade (`connector.grades`) and the offer's access policy must admit
the caller (else terminate with their reasons). Then the
offer's negotiation policy (Rego) decides, if it has one; without one, a request within the offer's
terms is accepted and anything more is countered with the offer's terms. A request whose ODRL is
wider than the offer (`misfits`) is never accepted as it stands: it is countered with the most of its
terms the offer grants. An offer set to manual approval waits for an operator instead of accepting.

Consumer: its needs say what to ask for and the least it accepts; an offer that meets them is
accepted, otherwise it counters with its request. Without needs, an operator decides.

Negotiation policy convention (Rego): the package's `decision` is "accept", "counter" or "terminate";
`counter` holds the counter terms (`purposes`, `duration_days`, `uses`); `deny` holds reasons. Input:
`{"caller": …, "offer": terms granted, "request": terms asked, "round": counter-offers so far, "asset": …,
"artifact": …}` (the asset's labels and lifecycle state, as the usage input has them).
"""

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

from connector import grades
from connector.assets import Asset
from connector.catalog import Offer, UsagePolicy
from connector.proposals import fit
from connector.runtime import Runtime
from tessera.clock import rfc3339
from tessera.errors import PolicyEvaluationError
from tessera.identity import Caller
from tessera.policy import Decision
from tessera.store import JsonOf
from tessera.terms import Terms

Action = Literal["accept", "counter", "terminate", "wait"]
MAX_COUNTER_ROUNDS = 3  # after this many counter-offers an agent stops bargaining and terminates


@dataclass(frozen=True)
class Verdict:
    action: Action
    terms: Terms | None = None
    reasons: tuple[str, ...] = ()


class Needs(BaseModel):
    """What a consumer's agent asks for, and the least it will accept."""

    purposes: list[str] | None = None
    duration_days: int | None = Field(default=None, ge=1)
    uses: int | None = Field(default=None, ge=1)
    min_duration_days: int | None = Field(default=None, ge=1)
    min_uses: int | None = Field(default=None, ge=1)

    @property
    def request(self) -> Terms:
        return Terms(
            purposes=tuple(sorted(self.purposes)) if self.purposes else None,
            duration_days=self.duration_days,
            uses=self.uses,
        )

    def met_by(self, offered: Terms) -> bool:
        least = Terms(
            purposes=self.request.purposes,
            duration_days=self.min_duration_days or self.duration_days,
            uses=self.min_uses or self.uses,
        )
        return _grants_at_least(offered, least)


class NeedsColumn(JsonOf[Needs]):
    """A consumer's needs, kept with its negotiation as JSON."""

    cache_ok = True

    def load(self, data: Any) -> Needs:
        return Needs.model_validate(data)

    def dump(self, value: Needs) -> Any:
        return value.model_dump(mode="json")


def _grants_at_least(offered: Terms, least: Terms) -> bool:
    if least.purposes and offered.purposes is not None and not set(least.purposes) <= set(offered.purposes):
        return False
    if least.duration_days and offered.duration_days is not None and offered.duration_days < least.duration_days:
        return False
    return not (least.uses and offered.uses is not None and offered.uses < least.uses)


# -- provider ------------------------------------------------------------------------------------------------


async def access_decision(runtime: Runtime, offer: Offer, caller: Caller) -> Decision:
    """The offer's access policy decides who sees the offer and may contract for it."""
    if offer.access_policy_id is None:
        return Decision(allow=True)
    policy = await _policy(runtime, offer.access_policy_id)
    request = {
        "caller": caller.to_policy_input(),
        "offer": {"id": offer.id, "target": offer.asset_id},
        "now": rfc3339(),
        **asset_input(await _asset(runtime, offer)),
    }
    return await runtime.engine.decide(policy.module, request)


def asset_input(asset: Asset) -> dict[str, Any]:
    """`input.asset` and `input.artifact`, as every decision about the asset sees them."""
    return {"asset": asset.policy_input(), "artifact": {"state": asset.state}}


async def grade_refusals(runtime: Runtime, offer: Offer, caller: Caller) -> list[str]:
    """Why the connector's rules by grade keep the caller from this offer, whatever its access policy says."""
    asset = await _asset(runtime, offer)
    usage_policy = await _policy(runtime, offer.usage_policy_id)
    rules, provider = runtime.config.grades, runtime.participant_id
    return grades.offer_refusals(rules, asset, usage_policy, caller.to_policy_input(), provider)


async def provider_verdict(
    runtime: Runtime,
    offer: Offer,
    caller: Caller,
    requested: Terms,
    rounds: int,
    *,
    misfits: tuple[str, ...] = (),
    granted: Terms | None = None,
) -> Verdict:
    """`granted`: what the offer's ODRL grants at most (default: the offer's negotiable terms)."""
    if refusals := await grade_refusals(runtime, offer, caller):
        return Verdict("terminate", reasons=tuple(refusals))
    access = await access_decision(runtime, offer, caller)
    if not access.allow:
        return Verdict("terminate", reasons=access.reasons)
    if offer.negotiation_policy_id:
        verdict = await _policy_verdict(runtime, offer, caller, requested, rounds)
    elif misfits:
        verdict = Verdict("counter", requested)  # the misfits are added below
    elif requested.within(offer.granted):
        verdict = Verdict("accept", requested)
    else:
        verdict = Verdict(
            "counter", offer.granted, (f"requested {_show(requested)} exceeds the offer {_show(offer.granted)}",)
        )
    if verdict.action in ("accept", "counter") and misfits:  # never agree to more than the offer grants
        assert verdict.terms is not None
        verdict = Verdict("counter", fit(verdict.terms, granted or offer.granted), (*verdict.reasons, *misfits))
    if verdict.action == "counter" and rounds >= MAX_COUNTER_ROUNDS:
        return Verdict("terminate", reasons=(*verdict.reasons, f"no agreement after {rounds} counter-offers"))
    if verdict.action == "accept" and offer.approval == "manual":
        return Verdict("wait", verdict.terms, ("the offer needs an operator's approval",))
    return verdict


async def _policy_verdict(runtime: Runtime, offer: Offer, caller: Caller, requested: Terms, rounds: int) -> Verdict:
    assert offer.negotiation_policy_id is not None
    policy = await _policy(runtime, offer.negotiation_policy_id)
    request = {
        "caller": caller.to_policy_input(),
        "offer": offer.granted.to_dict(),
        "request": requested.to_dict(),
        "round": rounds,
        "now": rfc3339(),
        **asset_input(await _asset(runtime, offer)),
    }
    try:
        rows = await runtime.engine.evaluate([policy.module], policy.package, request)
    except PolicyEvaluationError as exc:
        return Verdict("terminate", reasons=(f"negotiation policy failed: {exc.detail}",))
    document: dict[str, Any] = rows[0]["expressions"][0]["value"] if rows else {}
    reasons = tuple(sorted(str(r) for r in document.get("deny") or ()))
    match document.get("decision"):
        case "accept":
            return Verdict("accept", requested, reasons)
        case "counter" if isinstance(document.get("counter"), dict):
            return Verdict("counter", Terms.from_dict(document["counter"]), reasons)
        case _:
            return Verdict("terminate", reasons=reasons or ("the negotiation policy refused the request",))


async def _asset(runtime: Runtime, offer: Offer) -> Asset:
    async with runtime.db.session() as session:
        asset = await session.get(Asset, offer.asset_id)
    assert asset is not None  # a foreign key guards it
    return asset


async def _policy(runtime: Runtime, policy_id: str) -> UsagePolicy:
    async with runtime.db.session() as session:
        policy = await session.get(UsagePolicy, policy_id)
    assert policy is not None  # a foreign key guards it
    return policy


# -- consumer ------------------------------------------------------------------------------------------------


def consumer_verdict(needs: Needs | None, offered: Terms, rounds: int) -> Verdict:
    if needs is None:
        return Verdict("wait", offered, ("an operator must accept or counter this offer",))
    if needs.met_by(offered):
        return Verdict("accept", offered)
    if rounds >= MAX_COUNTER_ROUNDS:
        return Verdict(
            "terminate", reasons=(f"the offer {_show(offered)} does not meet our needs after {rounds} counter-offers",)
        )
    return Verdict("counter", needs.request, (f"the offer {_show(offered)} does not meet our needs",))


def _show(terms: Terms) -> str:
    parts = [
        f"purposes {list(terms.purposes)}" if terms.purposes is not None else "any purpose",
        f"{terms.duration_days} days" if terms.duration_days is not None else "no time limit",
        f"{terms.uses} uses" if terms.uses is not None else "unlimited uses",
    ]
    return "(" + ", ".join(parts) + ")"
