"""What is on the table in a negotiation, as ODRL: the consumer's request, our counter-offer, the agreement.

The provider accepts a request only when it is within the catalog offer (`policies.narrowing.within`)
and compiles without problems; anything wider is countered with the offer narrowed as far as the
request allows. `Terms` (purposes, uses, days) are the summary the agents bargain over; the ODRL
policy is what gets agreed, whole.

```python
asked = requested_policy(message_offer)          # None: the offer as published
reasons = refusals(asked, offer_policy)          # [] when we may agree to it
counter = narrowed(offer_policy, fit(terms_of(asked), terms_of(offer_policy)))
```
"""

from dataclasses import replace

from policies.compiler import compile_policy, duration_seconds
from policies.narrowing import narrow, within
from tessera.json import JSONObject
from tessera.odrl import (
    AnyConstraint,
    Constraint,
    Duty,
    LogicalConstraint,
    Permission,
    Policy,
    Prohibition,
    Value,
    parse_policy,
)
from tessera.terms import Terms

_RULES = ("permission", "prohibition", "obligation")
_NAMESPACES = ("odrl:", "http://www.w3.org/ns/odrl/2/")
_DAY = 86400
_USE = ("use", "read")


def requested_policy(offer: JSONObject) -> Policy | None:
    """The policy a request's offer asks for; None when it names the offer only (`@id`, `target`)."""
    if not any(_local(key) in _RULES for key in offer):
        return None
    return parse_policy(offer, where="offer")  # InvalidPolicy (400) names the element it cannot read


def offered_policy(offer: JSONObject) -> Policy:
    """A counter-party's offer; one without rules grants plain `use` (what DSP peers mean by it)."""
    if not any(_local(key) in _RULES for key in offer):
        offer = {**offer, "permission": [{"action": "use"}]}
    return parse_policy(offer, where="offer")


def wider(request: Policy, offer: Policy) -> list[str]:
    """`policies.narrowing.within`, blind to how a literal was written (`"5"`, `5`, `{"@value": "5", "@type": …}`)."""
    return within(_plain(request), _plain(offer))


def refusals(request: Policy, offer: Policy) -> list[str]:
    """Why we may not agree to `request` as it stands: wider than `offer`, or not enforceable."""
    reasons = wider(request, offer)
    reasons += [f"cannot be enforced: {problem}" for problem in compile_policy(request).problems]
    return reasons


def narrowed(offer: Policy, terms: Terms) -> Policy:
    """`offer` narrowed to `terms` field by field, skipping a field that would widen it."""
    result = offer
    for name in ("purposes", "uses", "duration_days"):
        value = getattr(terms, name)
        if value is None:
            continue
        candidate = narrow(result, Terms(**{name: value}))
        if not wider(candidate, offer):
            result = candidate
    return result


def fit(requested: Terms, granted: Terms) -> Terms:
    """The most of `requested` that `granted` allows: the terms of a counter-offer."""
    purposes = requested.purposes
    if granted.purposes is not None:
        common = tuple(p for p in requested.purposes or () if p in granted.purposes)
        purposes = common or granted.purposes
    return Terms(
        purposes=purposes,
        uses=_least(requested.uses, granted.uses),
        duration_days=_least(requested.duration_days, granted.duration_days),
    )


def terms_of(policy: Policy) -> Terms:
    """The negotiable terms a policy states (its first `use` permission); what Terms cannot say is left out."""
    permission = next((p for p in policy.permissions if p.action in _USE), None)
    purposes: tuple[str, ...] | None = None
    uses: int | None = None
    days: int | None = None
    for constraint in permission.constraints if permission else ():
        if not isinstance(constraint, Constraint):
            continue
        if constraint.left == "purpose" and (found := _purposes(constraint)) is not None:
            purposes = tuple(sorted(set(found) & set(purposes))) if purposes is not None else found
        elif constraint.left == "count":
            uses = _least(uses, _count(constraint))
        elif constraint.left == "elapsedTime":
            days = _least(days, _days(constraint))
    return Terms(purposes=purposes, uses=uses, duration_days=days)


def as_offer(policy: Policy, *, offer_id: str, target: str) -> JSONObject:
    """The policy as a DSP message's `offer`: an ODRL Offer with its id and target, without our extensions."""
    return replace(policy, kind="Offer", id=offer_id, target=target, extensions={}).to_json()


# -- literals compared by value: peers drop or add datatypes, and JSON-LD compaction drops them too --------


def _plain(policy: Policy) -> Policy:
    return replace(
        policy,
        permissions=tuple(_plain_permission(p) for p in policy.permissions),
        prohibitions=tuple(_plain_prohibition(p) for p in policy.prohibitions),
        obligations=tuple(_plain_duty(d) for d in policy.obligations),
    )


def _plain_permission(rule: Permission) -> Permission:
    constraints, refinements = _plain_conditions(rule)
    duties = tuple(_plain_duty(d) for d in rule.duties)
    return replace(rule, constraints=constraints, refinements=refinements, duties=duties)


def _plain_prohibition(rule: Prohibition) -> Prohibition:
    constraints, refinements = _plain_conditions(rule)
    remedies = tuple(_plain_duty(d) for d in rule.remedies)
    return replace(rule, constraints=constraints, refinements=refinements, remedies=remedies)


def _plain_duty(rule: Duty) -> Duty:
    constraints, refinements = _plain_conditions(rule)
    return replace(rule, constraints=constraints, refinements=refinements)


def _plain_conditions(rule: Permission | Prohibition | Duty) -> tuple[tuple[AnyConstraint, ...], ...]:
    return _plain_constraints(rule.constraints), _plain_constraints(rule.refinements)


def _plain_constraints(constraints: tuple[AnyConstraint, ...]) -> tuple[AnyConstraint, ...]:
    return tuple(_plain_constraint(c) for c in constraints)


def _plain_constraint(constraint: AnyConstraint) -> AnyConstraint:
    if isinstance(constraint, LogicalConstraint):
        return replace(constraint, constraints=_plain_constraints(constraint.constraints))
    return replace(constraint, right=_plain_value(constraint.right), datatype=None)


def _plain_value(value: Value) -> Value:
    if isinstance(value, tuple):
        return tuple(str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v for v in value)
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _purposes(constraint: Constraint) -> tuple[str, ...] | None:
    right = constraint.right
    items = right if isinstance(right, tuple) else (right,)
    if constraint.operator not in ("eq", "isAnyOf", "isPartOf") or not all(isinstance(i, str) for i in items):
        return None
    return tuple(sorted(str(i) for i in items))


def _count(constraint: Constraint) -> int | None:
    try:
        bound = int(str(constraint.right))
    except ValueError:
        return None
    if constraint.operator == "lt":
        return bound - 1
    return bound if constraint.operator in ("lteq", "eq") else None


def _days(constraint: Constraint) -> int | None:
    seconds = duration_seconds(constraint.right)
    if seconds is None or constraint.operator not in ("lt", "lteq", "eq"):
        return None
    days = int(seconds // _DAY) - (1 if constraint.operator == "lt" and seconds % _DAY == 0 else 0)
    return days if days >= 1 else None


def _least(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _local(key: str) -> str:
    for namespace in _NAMESPACES:
        if key.startswith(namespace):
            return key[len(namespace) :]
    return key
