"""ODRL offers from library patterns, and back: what other connectors read in our catalog.

An offer states its rules in ODRL 2.2 (DSP 2025-1 compact form, valid against the official schema)
and names the enforceable Rego module by id and content hash (`https://w3id.org/tessera/v1/usagePolicy`).

```python
offer = offer_from_patterns("offer-1", [PatternUse.of("purpose", allowed_purposes=["research"])],
                            policy_ref=("research", "sha256:..."))
policy = policy_from_offer(offer)                     # OdrlPolicy(permissions=[[PatternUse...]], prohibitions=[])
source = rego_from_offer(offer, "tessera.usage.inbound")
```

ODRL semantics: several permissions are alternatives (the first that admits a request applies),
a prohibition overrides every permission, and duties become obligations. Constraints and duties
are the patterns' parameters; anything we cannot map raises `UnsupportedOdrl` naming it.
"""

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, TypedDict

from policies.patterns import PatternError, PatternUse, render_policy
from tessera.dsp import TESSERA, USAGE_POLICY
from tessera.errors import BadRequest
from tessera.json import JSON, JSONObject
from tessera.terms import Constraint

__all__ = [
    "TESSERA",
    "USAGE_POLICY",
    "OdrlPolicy",
    "UnsupportedOdrl",
    "offer_from_patterns",
    "offer_from_policy",
    "patterns_from_offer",
    "policy_from_offer",
    "rego_from_offer",
]

XSD = "http://www.w3.org/2001/XMLSchema#"
_DURATION = re.compile(r"^P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+)S)?)?$")


class UnsupportedOdrl(BadRequest):
    """An ODRL construct that maps to no library pattern; the detail names it."""


@dataclass
class OdrlPolicy:
    """Permissions (alternatives, each a conjunction of patterns) and prohibitions."""

    permissions: list[list[PatternUse]] = field(default_factory=list)
    prohibitions: list[list[PatternUse]] = field(default_factory=list)


# -- literals ---------------------------------------------------------------------------------------------

# A JSON-LD value object: `{"@value": "PT60S", "@type": "http://www.w3.org/2001/XMLSchema#duration"}`.
ValueObject = TypedDict("ValueObject", {"@value": JSON, "@type": str})


def _typed(value: str, kind: str) -> ValueObject:
    return {"@value": value, "@type": XSD + kind}


def _json(value: JSON) -> ValueObject:
    return {"@value": value, "@type": "@json"}


def _compact_json(value: JSON) -> JSON:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _json_text(operand: JSON) -> JSON:
    try:
        value: JSON = json.loads(str(_value(operand)))
    except ValueError as exc:
        raise UnsupportedOdrl(f"JSON text {operand!r}") from exc
    return value


def _duration(seconds: int) -> ValueObject:
    return _typed(f"PT{seconds}S", "duration")


def _value(operand: JSON) -> JSON:
    return operand["@value"] if isinstance(operand, dict) and "@value" in operand else operand


def _seconds(operand: JSON) -> int:
    match = _DURATION.match(str(_value(operand)))
    if not match or not any(match.groupdict().values()):
        raise UnsupportedOdrl(f"duration {operand!r} (expected ISO 8601 like PT3600S or P30D)")
    d, h, m, s = (int(match[k] or 0) for k in "dhms")
    return ((d * 24 + h) * 60 + m) * 60 + s


def _int(operand: JSON) -> int:
    try:
        return int(_value(operand))
    except (TypeError, ValueError) as exc:
        raise UnsupportedOdrl(f"integer {operand!r}") from exc


def _list(operand: JSON) -> list[JSON]:
    value = _value(operand)
    return value if isinstance(value, list) else [value]


# -- the mapping: pattern parameters <-> constraints and duties ---------------------------------------
# Constraint patterns sit in the permission's constraints; duty patterns are duties with an action.


class _Spec(NamedTuple):
    """One pattern parameter as one ODRL constraint: `left operator <to_odrl(value)>`."""

    left: str  # the constraint's leftOperand
    operator: str
    param: str
    to_odrl: Callable[[JSON], JSON]
    from_odrl: Callable[[JSON], JSON]


def _same(value: JSON) -> JSON:
    return value


def _strings(left: str, operator: str, param: str) -> _Spec:
    return _Spec(left, operator, param, _same, _list)


CONSTRAINTS: dict[str, list[_Spec]] = {
    "consumer": [_strings("recipient", "isAnyOf", "allowed_consumers")],
    "connector": [_strings("system", "isAnyOf", "allowed_connectors")],
    "role": [_strings(TESSERA + "role", "isAnyOf", "required_roles")],
    "regions": [_strings("spatial", "isAnyOf", "allowed_regions")],
    "cross_border": [
        _Spec(TESSERA + "homeJurisdiction", "eq", "home_jurisdiction", _same, _value),
        _strings(TESSERA + "jurisdiction", "isAnyOf", "allowed_jurisdictions"),
    ],
    "purpose": [_strings("purpose", "isAnyOf", "allowed_purposes")],
    "event": [_strings("event", "isAnyOf", "allowed_events")],
    "security_profile": [_Spec(TESSERA + "securityLevel", "gteq", "minimum_security_profile", _same, _value)],
    "time_window": [
        _Spec("dateTime", "gteq", "not_before", lambda v: _typed(v, "dateTime"), _value),
        _Spec("dateTime", "lt", "not_after", lambda v: _typed(v, "dateTime"), _value),
    ],
    "duration": [_Spec("elapsedTime", "lt", "max_duration_seconds", _duration, _seconds)],
    "max_uses": [_Spec("count", "lteq", "max_uses", lambda v: _typed(str(v), "integer"), _int)],
    "artifact_state": [_strings(TESSERA + "artifactState", "isAnyOf", "allowed_states")],
    "classification": [
        _Spec(TESSERA + "classification", "eq", "classification_level", _same, _value),
        _Spec(TESSERA + "importantMinimumSecurityLevel", "gteq", "important_minimum_profile", _same, _value),
    ],
}

DUTIES: dict[str, tuple[str, list[_Spec]]] = {
    "delete_after": (
        "delete",
        [
            _Spec("delayPeriod", "eq", "delete_after_seconds", _duration, _seconds),
            _Spec("dateTime", "lteq", "delete_by", lambda v: _typed(v, "dateTime"), _value),
        ],
    ),
    "masked_fields": ("anonymize", [_strings(TESSERA + "field", "isAnyOf", "masked_fields")]),
    "log_usage": (TESSERA + "log", [_Spec("event", "eq", "log_event", _same, _value)]),
    "notify": (
        "inform",
        [
            _Spec("recipient", "eq", "notify_party", _same, _value),
            _Spec(TESSERA + "endpoint", "eq", "notify_url", _same, _value),
            _Spec("event", "eq", "notify_event", _same, _value),
        ],
    ),
    "next_policy": (
        "nextPolicy",
        [
            _Spec(TESSERA + "policyId", "eq", "next_policy_id", _same, _value),
            _Spec(TESSERA + "policyHash", "eq", "next_policy_hash", _same, _value),
        ],
    ),
    "aggregate_only": (
        TESSERA + "aggregate",
        [
            _strings(TESSERA + "groupBy", "isAnyOf", "aggregate_group_by"),
            _strings(TESSERA + "aggregateFunction", "isAnyOf", "aggregate_functions"),
            _strings(TESSERA + "aggregateField", "isAnyOf", "aggregate_fields"),
            _Spec(TESSERA + "minGroupSize", "gteq", "min_group_size", lambda v: _typed(str(v), "integer"), _int),
        ],
    ),
    "compute_to_data": (
        TESSERA + "compute",
        [
            _strings(TESSERA + "groupBy", "isAnyOf", "compute_group_by"),
            _strings(TESSERA + "aggregateOnly", "isAnyOf", "compute_aggregate_only"),
            _strings(TESSERA + "aggregateFunction", "isAnyOf", "compute_functions"),
            _Spec(TESSERA + "minGroupSize", "gteq", "min_group_size", lambda v: _typed(str(v), "integer"), _int),
            # As JSON text: a JSON-LD @json object does not survive every peer's compaction unchanged.
            _Spec(TESSERA + "differentialPrivacy", "eq", "compute_dp", _compact_json, _json_text),
        ],
    ),
    # modify_in_transit is three duties, one per kind of change (see _MODIFY).
}
_MODIFY = {
    "anonymize": _strings(TESSERA + "jsonPath", "isAnyOf", "masked_paths"),
    "modify": _Spec(TESSERA + "replacements", "eq", "replacements", _json, _value),
    TESSERA + "dropRows": _Spec(TESSERA + "rowConditions", "eq", "drop_rows", _json, _value),
}


# -- patterns -> ODRL -------------------------------------------------------------------------------------


def offer_from_patterns(
    offer_id: str,
    uses: Sequence[PatternUse],
    policy_ref: tuple[str, str] | None = None,
    prohibitions: Sequence[Sequence[PatternUse]] = (),
) -> JSONObject:
    """An ODRL `Offer` with one permission (`use`) carrying the patterns' constraints and duties."""
    return offer_from_policy(offer_id, OdrlPolicy([list(uses)], [list(p) for p in prohibitions]), policy_ref)


def offer_from_policy(offer_id: str, policy: OdrlPolicy, policy_ref: tuple[str, str] | None = None) -> JSONObject:
    offer: JSONObject = {"@id": offer_id, "@type": "Offer"}
    offer["permission"] = [_rule(uses, with_duties=True) for uses in policy.permissions]
    if policy.prohibitions:
        offer["prohibition"] = [_rule(uses, with_duties=False) for uses in policy.prohibitions]
    if policy_ref is not None:
        offer[USAGE_POLICY] = {"@id": policy_ref[0], "hash": policy_ref[1]}
    return offer


def _rule(uses: Sequence[PatternUse], *, with_duties: bool) -> JSONObject:
    rule: JSONObject = {"action": "use"}
    constraints: list[Constraint] = []
    duties: list[JSONObject] = []
    for use in (u.resolved() for u in uses):
        if use.name in CONSTRAINTS:
            constraints += _constraints(CONSTRAINTS[use.name], use.params)
        elif not with_duties:
            raise UnsupportedOdrl(f"pattern {use.name} is a duty; a prohibition can only hold constraints")
        elif use.name == "modify_in_transit":
            duties += [{"action": a, "constraint": _constraints([s], use.params)} for a, s in _MODIFY.items()]
        else:
            action, specs = DUTIES[use.name]
            duties.append({"action": action, "constraint": _constraints(specs, use.params)})
    if constraints:
        rule["constraint"] = constraints
    if duties:
        rule["duty"] = duties
    return rule


def _constraints(specs: list[_Spec], params: JSONObject) -> list[Constraint]:
    return [
        {"leftOperand": spec.left, "operator": spec.operator, "rightOperand": spec.to_odrl(params[spec.param])}
        for spec in specs
        if params[spec.param] not in (None, "")
    ]


# -- ODRL -> patterns -------------------------------------------------------------------------------------


class _Found(NamedTuple):
    """A constraint read back: the pattern it belongs to, the parameter and its value."""

    pattern: str
    param: str
    value: JSON


def policy_from_offer(odrl: JSONObject) -> OdrlPolicy:
    """Map an ODRL offer (or agreement) back to patterns; raises UnsupportedOdrl naming what does not map."""
    if not isinstance(odrl, dict):
        raise UnsupportedOdrl("an ODRL policy must be a JSON object")
    common = odrl.get("obligation") or []
    permissions = [
        _patterns(rule, [*rule.get("duty", []), *common], "permission") for rule in _rules(odrl, "permission")
    ]
    prohibitions = [_patterns(rule, [], "prohibition") for rule in _rules(odrl, "prohibition")]
    if not permissions:
        raise UnsupportedOdrl("an offer without a permission grants nothing")
    return OdrlPolicy(permissions, prohibitions)


def patterns_from_offer(odrl: JSONObject) -> list[tuple[str, JSONObject]]:
    """The (pattern, params) of an offer with one permission and no prohibition (the common case)."""
    policy = policy_from_offer(odrl)
    if len(policy.permissions) > 1 or policy.prohibitions:
        raise UnsupportedOdrl("alternatives or prohibitions: use policy_from_offer and rego_from_offer")
    return [(u.name, u.params) for u in policy.permissions[0]]


def rego_from_offer(odrl: JSONObject, package: str) -> str:
    """The enforceable Rego module for an inbound ODRL offer."""
    policy = policy_from_offer(odrl)
    prohibitions = [(uses, "prohibited: " + _describe(uses)) for uses in policy.prohibitions]
    return render_policy(package, policy.permissions, prohibitions)


def _describe(uses: Sequence[PatternUse]) -> str:
    return " and ".join(f"{u.name} {_compact(u.params)}" for u in uses)


def _compact(params: JSONObject) -> str:
    return json.dumps(params, sort_keys=True, separators=(",", ":"))


def _rules(odrl: JSONObject, key: str) -> list[JSONObject]:
    rules = odrl.get(key) or []
    if isinstance(rules, dict):
        rules = [rules]
    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
        raise UnsupportedOdrl(f"{key} must be a list of rules")
    return rules


def _patterns(rule: JSONObject, duties: list[JSON], where: str) -> list[PatternUse]:
    action = rule.get("action")
    action = action.get("@id") if isinstance(action, dict) else action
    if action not in ("use", "odrl:use", "http://www.w3.org/ns/odrl/2/use"):
        raise UnsupportedOdrl(f"{where} action {action!r} (only use)")
    params: dict[str, JSONObject] = {}
    for constraint in rule.get("constraint") or []:
        name, param, value = _match(constraint, CONSTRAINTS, where)
        params.setdefault(name, {})[param] = value
    for duty in duties:
        for name, param, value in _duty(duty):
            params.setdefault(name, {})[param] = value
    try:
        return [PatternUse.of(name, **values) for name, values in params.items()]
    except PatternError as exc:
        raise UnsupportedOdrl(f"{where}: {exc.detail}") from exc


def _duty(duty: JSON) -> list[_Found]:
    if not isinstance(duty, dict):
        raise UnsupportedOdrl(f"duty {duty!r}")
    action = _term(duty.get("action"))
    constraints = duty.get("constraint") or []
    if action in _MODIFY and constraints and all(_left(c) == _MODIFY[action].left for c in constraints):
        return [_match(c, {"modify_in_transit": [_MODIFY[action]]}, f"duty {action}") for c in constraints]
    for name, (duty_action, specs) in DUTIES.items():
        if action == duty_action and all(_left(c) in {s.left for s in specs} for c in constraints):
            found = [_match(c, {name: specs}, f"duty {action}") for c in constraints]
            if name == "delete_after" and not any(f.param == "delete_after_seconds" for f in found):
                found.append(_Found(name, "delete_after_seconds", None))
            return found or [_Found(name, specs[0].param, None)]
    raise UnsupportedOdrl(f"duty {action!r} with constraints {sorted(_left(c) for c in constraints)}")


def _match(constraint: JSON, table: dict[str, list[_Spec]], where: str) -> _Found:
    if not isinstance(constraint, dict) or "leftOperand" not in constraint:
        keys = sorted(constraint) if isinstance(constraint, dict) else constraint
        raise UnsupportedOdrl(f"{where}: constraint {keys!r} (logical constraints are not supported)")
    left, operator = _left(constraint), _term(constraint.get("operator"))
    for name, specs in table.items():
        for spec in specs:
            if (left, operator) == (spec.left, spec.operator):
                return _Found(name, spec.param, spec.from_odrl(constraint.get("rightOperand")))
    raise UnsupportedOdrl(f"{where}: constraint {left} {operator}")


def _left(constraint: JSON) -> str:
    return _term(constraint.get("leftOperand")) if isinstance(constraint, dict) else ""


def _term(value: JSON) -> str:
    value = value.get("@id") if isinstance(value, dict) else value
    text = str(value)
    for prefix in ("http://www.w3.org/ns/odrl/2/", "odrl:"):
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text.replace("tessera:", TESSERA) if text.startswith("tessera:") else text
