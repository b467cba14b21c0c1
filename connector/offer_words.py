"""An ODRL offer or agreement in plain words, for people choosing what to negotiate.

```python
summary(parse_policy(offer))  # ["may use if purpose is one of research and count at most 3", "must anonymize …"]
```
"""

from tessera.odrl import TESSERA, AnyConstraint, Constraint, Duty, Policy, Value

OPERATORS = {
    "eq": "is",
    "neq": "is not",
    "lt": "below",
    "lteq": "at most",
    "gt": "above",
    "gteq": "at least",
    "isAnyOf": "is one of",
    "isAllOf": "is all of",
    "isNoneOf": "is none of",
    "isPartOf": "is part of",
    "hasPart": "includes",
}
LOGICAL = {"and": " and ", "or": " or ", "xone": " or (exactly one) ", "andSequence": " and then "}
SUBJECTS = {"count": "uses", "dateTime": "date", "elapsedTime": "time since agreed"}


def summary(policy: Policy) -> list[str]:
    """One line per rule: what one may do and on which conditions, what one must do, what one may not."""
    lines = [_rule("may", p.action, p.constraints) for p in policy.permissions]
    lines += [_duty(duty) for p in policy.permissions for duty in p.duties]
    lines += [_rule("may not", p.action, p.constraints) for p in policy.prohibitions]
    lines += [_duty(duty) for duty in policy.obligations]
    return lines


def _rule(modal: str, action: str, constraints: tuple[AnyConstraint, ...]) -> str:
    conditions = " and ".join(_condition(c) for c in constraints)
    return f"{modal} {_name(action)}" + (f" if {conditions}" if conditions else "")


def _duty(duty: Duty) -> str:
    details = ", ".join(_condition(c) for c in (*duty.refinements, *duty.constraints))
    return f"must {_name(duty.action)}" + (f" ({details})" if details else "")


def _condition(constraint: AnyConstraint) -> str:
    if not isinstance(constraint, Constraint):
        return "(" + LOGICAL[constraint.operator].join(_condition(c) for c in constraint.constraints) + ")"
    left = _name(constraint.left)
    subject = SUBJECTS.get(left, left)
    unit = f" {_name(constraint.unit)}" if constraint.unit else ""
    return (
        f"{subject} {OPERATORS.get(constraint.operator, _name(constraint.operator))} {_value(constraint.right)}{unit}"
    )


def _value(value: Value) -> str:
    if isinstance(value, tuple):
        return ", ".join(map(str, value))
    if isinstance(value, dict):
        return str(value.get("@id", value))
    return str(value)


def _name(term: str) -> str:
    """A term without the namespaces a reader does not need (ours, ODRL's prefixed form)."""
    return term.removeprefix(TESSERA).removeprefix("odrl:").replace("_", " ")
