"""Rules by data grade (GB/T 43697), connector-wide, whatever an offer or agreement says.

Core data never leaves the provider: with `grades.core = "hidden"` it is in no other participant's
catalog and every use by another is denied; with `"aggregate_only"` it is offered only under usage
policies built with the `aggregate_only` pattern and a use is allowed only as an aggregate. Important
data goes only to callers whose verified security profile is at least `grades.important_min_profile`.
`offer_refusals` decides the catalog and negotiations, `use_refusals` every use (`connector.usage`);
each refusal names the rule.
"""

import json

from connector.assets import Asset
from connector.catalog import UsagePolicy
from connector.config import GradeRules
from policies.explain import patterns_in
from policies.patterns import SECURITY_PROFILES
from tessera.json import JSONObject
from tessera.labels import Labels
from tessera.policy import Decision


def profile_rank(profile: object) -> int:
    """The profile's place in base < trust < trust_plus; -1 when missing or unknown."""
    return SECURITY_PROFILES.index(profile) if isinstance(profile, str) and profile in SECURITY_PROFILES else -1


def aggregate_only(policy: UsagePolicy) -> bool:
    """Whether the usage policy was built with the aggregate-only pattern (a hand-written one is not)."""
    return any(use.name == "aggregate_only" for use in patterns_in(policy.source))


def offer_refusals(
    rules: GradeRules, asset: Asset, policy: UsagePolicy, caller: JSONObject, provider: str
) -> list[str]:
    """Why the caller may not see or contract for this offer of `asset` under `policy`; [] when it may."""
    if caller.get("sub") == provider:
        return []
    labels = asset.labels
    refusals = _profile_refusals(rules, labels, caller)
    if labels.classification == "core":
        if rules.core == "hidden":
            refusals.append(_core_hidden(caller))
        elif not aggregate_only(policy):
            refusals.append('grades.core = "aggregate_only": core data is offered only under an aggregate-only policy')
    return refusals


def use_refusals(rules: GradeRules, labels: Labels, caller: JSONObject, provider: str, decision: Decision) -> list[str]:
    """Why this use of data labelled `labels` is denied whatever the agreement decided; [] when allowed."""
    if caller.get("sub") == provider:
        return []
    refusals = _profile_refusals(rules, labels, caller)
    if labels.classification == "core":
        if rules.core == "hidden":
            refusals.append(_core_hidden(caller))
        elif not decision.of_kind("aggregate"):
            refusals.append('grades.core = "aggregate_only": core data leaves the provider only as aggregates')
    return refusals


def published(rules: GradeRules, asset: Asset, policy: UsagePolicy) -> bool:
    """Whether an offer may be listed at the broker at all: what the catalog shows to some other participant."""
    if asset.classification != "core":
        return True
    return rules.core == "aggregate_only" and aggregate_only(policy)


def _profile_refusals(rules: GradeRules, labels: Labels, caller: JSONObject) -> list[str]:
    wanted = rules.important_min_profile
    if labels.classification == "important" and profile_rank(caller.get("security_profile")) < profile_rank(wanted):
        has = json.dumps(caller.get("security_profile"))
        return [
            f'grades.important_min_profile = "{wanted}": important data needs "{wanted}" or higher, caller has {has}'
        ]
    return []


def _core_hidden(caller: JSONObject) -> str:
    return f'grades.core = "hidden": core data never leaves the provider (caller {json.dumps(caller.get("sub"))})'
