"""Is a request within an offer, and the offer narrowed to agreed terms.

A provider agrees to a consumer's request only when it asks for no more than an offer grants:
every permission of the request fits a permission of the offer, keeping each of the offer's
constraints at least as strict, every duty of that permission and every prohibition of the offer.
A request may add constraints, duties and prohibitions of its own (it is then narrower still).

```python
reasons = within(parse_policy(request["offer"]), offer_policy)   # [] when the request is within
agreed = narrow(offer_policy, Terms(purposes=("research",), uses=1))
```
"""

from collections.abc import Sequence
from dataclasses import replace

from policies.compiler import duration_seconds
from policies.patterns import SECURITY_PROFILES
from tessera import clock
from tessera.odrl import TESSERA, AnyConstraint, Constraint, Permission, Policy, Scalar, Value
from tessera.terms import Terms

_UPPER = ("lt", "lteq")
_LOWER = ("gt", "gteq")
_SUBSET = ("eq", "isAnyOf", "isPartOf")
_SUPERSET = ("isAllOf", "hasPart", "isNoneOf")
_ACTIONS_WITHIN = {"use": {"use", "read"}, "read": {"read"}}  # an offer of `use` admits a request to read


def within(request: Policy, offer: Policy) -> list[str]:
    """Why `request` asks for more than `offer` grants, one reason each; empty when it does not."""
    reasons = []
    for i, permission in enumerate(request.permissions, 1):
        misfits = [_misfit(permission, granted) for granted in offer.permissions]
        if all(misfits):
            reasons.append(f"permission {i}: {min(misfits, key=len)}")
    for prohibition in offer.prohibitions:
        if prohibition not in request.prohibitions:
            reasons.append(f"the offer's prohibition of {prohibition.action} is missing")
    for duty in offer.obligations:
        if duty not in request.obligations:
            reasons.append(f"the offer's obligation to {duty.action} is missing")
    if not request.permissions and offer.permissions:
        reasons.append("the request asks for no permission")
    return reasons


def _misfit(request: Permission, offer: Permission) -> str:
    """Why `request` does not fit inside `offer`; empty when it does."""
    if request.action not in _ACTIONS_WITHIN.get(offer.action, {offer.action}):
        return f"action {request.action} is not granted by an offer of {offer.action}"
    for constraint in offer.constraints:
        if not any(_at_least_as_strict(mine, constraint) for mine in request.constraints):
            return f"the constraint {_describe(constraint)} is missing or wider"
    for duty in offer.duties:
        if duty not in request.duties:
            return f"the duty to {duty.action} is missing"
    return ""


def _at_least_as_strict(mine: AnyConstraint, theirs: AnyConstraint) -> bool:
    if mine == theirs:
        return True
    if not isinstance(mine, Constraint) or not isinstance(theirs, Constraint) or mine.left != theirs.left:
        return False
    asked, granted = _strings(mine.right), _strings(theirs.right)
    if theirs.operator in _SUBSET and mine.operator in _SUBSET:
        return asked is not None and granted is not None and asked <= granted
    if theirs.operator in _SUPERSET and mine.operator == theirs.operator:
        return asked is not None and granted is not None and asked >= granted
    if theirs.operator in _UPPER + _LOWER and mine.operator in _UPPER + _LOWER:
        return _bound_within(mine, theirs)
    return False


def _bound_within(mine: Constraint, theirs: Constraint) -> bool:
    upper = theirs.operator in _UPPER
    a, b = _measure(mine.left, mine.right), _measure(theirs.left, theirs.right)
    if (mine.operator in _UPPER) != upper or a is None or b is None:
        return False
    if mine.left == "count":  # whole numbers: `lt n` is `lteq n-1`, `gt n` is `gteq n+1`
        a, b = _inclusive(a, mine.operator), _inclusive(b, theirs.operator)
        return a <= b if upper else a >= b
    if upper:
        return a < b or (a == b and (mine.operator == "lt" or theirs.operator == "lteq"))
    return a > b or (a == b and (mine.operator == "gt" or theirs.operator == "gteq"))


def _inclusive(bound: float, operator: str) -> float:
    return bound - 1 if operator == "lt" else bound + 1 if operator == "gt" else bound


def _measure(left: str, value: Value) -> float | None:
    """A comparable number for an ordered operand's value (seconds, instants, counts, ranks)."""
    if left == "elapsedTime":
        return duration_seconds(value)
    if left == "dateTime":
        try:
            return clock.parse(str(value)).timestamp() if isinstance(value, str) else None
        except ValueError:
            return None
    if left == TESSERA + "securityLevel":
        return float(SECURITY_PROFILES.index(value)) if value in SECURITY_PROFILES else None
    try:
        return float(str(value)) if isinstance(value, str | int | float) and not isinstance(value, bool) else None
    except ValueError:
        return None


def _strings(value: Value) -> set[str] | None:
    items: Sequence[Scalar] = value if isinstance(value, tuple) else (value,) if not isinstance(value, dict) else ()
    return {str(item) for item in items} if items and all(isinstance(i, str) for i in items) else None


def _describe(constraint: AnyConstraint) -> str:
    if isinstance(constraint, Constraint):
        return f"{constraint.left} {constraint.operator} {constraint.right!r}"
    return f"{constraint.operator}(…)"


# -- narrowing an offer to terms --------------------------------------------------------------------------


def narrow(offer: Policy, terms: Terms) -> Policy:
    """The offer with its `use` permissions narrowed to `terms` (purposes, uses, duration)."""
    return replace(offer, permissions=tuple(_narrow_permission(p, terms) for p in offer.permissions))


def _narrow_permission(permission: Permission, terms: Terms) -> Permission:
    replacing = {c.left: c for c in _constraints_of(terms)}
    kept = [c for c in permission.constraints if not (isinstance(c, Constraint) and c.left in replacing)]
    return replace(permission, constraints=(*kept, *replacing.values()))


def _constraints_of(terms: Terms) -> list[Constraint]:
    found = []
    if terms.purposes is not None:
        found.append(Constraint("purpose", "isAnyOf", tuple(terms.purposes)))
    if terms.uses is not None:
        found.append(Constraint("count", "lteq", str(terms.uses)))
    if terms.duration_days is not None:
        found.append(Constraint("elapsedTime", "lteq", f"P{terms.duration_days}D"))
    return found
