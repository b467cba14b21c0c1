"""An ODRL policy in plain words, for people: the console's offers and agreements, the CLI's catalog.

Each sentence is a `Phrase`: an English template (also the gettext message id) and its values, so a page
translates the template and fills it in, and the CLI prints the English. Constraints we know read as
sentences ("Only for the purposes: research"); any other is shown as it is ("foo lteq 3"), never dropped.

```python
for phrase in describe(parse_policy(offer)):
    print(phrase.format())                     # English
    print(phrase.format(translator.gettext))   # the page's language
```
"""

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from tessera.odrl import TESSERA, AnyConstraint, Constraint, Duty, LogicalConstraint, Policy, Value

_ACTIONS = {
    "use": "Use the data",
    "read": "Read the data",
    "distribute": "Pass the data on",
    "reproduce": "Copy the data",
    "modify": "Change the data",
    "aggregate": "Use the data in aggregates",
    "transfer": "Transfer the data",
}
# (leftOperand, operator) → the sentence; {value} is the right operand.
_CONSTRAINTS = {
    ("purpose", "isAnyOf"): "Only for the purposes: {value}",
    ("purpose", "eq"): "Only for the purpose: {value}",
    ("purpose", "isNoneOf"): "Never for the purposes: {value}",
    ("count", "lteq"): "At most {value} uses",
    ("count", "lt"): "Fewer than {value} uses",
    ("dateTime", "gteq"): "Not before {value}",
    ("dateTime", "gt"): "After {value}",
    ("dateTime", "lt"): "Only before {value}",
    ("dateTime", "lteq"): "Until {value}",
    ("elapsedTime", "lt"): "Within {value} of the agreement",
    ("elapsedTime", "lteq"): "Within {value} of the agreement",
    ("spatial", "isAnyOf"): "Only in the regions: {value}",
    ("spatial", "eq"): "Only in the region: {value}",
    ("recipient", "isAnyOf"): "Only for the participants: {value}",
    ("system", "isAnyOf"): "Only on the connectors: {value}",
    ("event", "isAnyOf"): "Only during the events: {value}",
    (TESSERA + "role", "isAnyOf"): "Only for participants with the roles: {value}",
    (TESSERA + "jurisdiction", "isAnyOf"): "Only into the jurisdictions: {value}",
    (TESSERA + "homeJurisdiction", "eq"): "The data's home jurisdiction is {value}",
    (TESSERA + "securityLevel", "gteq"): "The recipient's security profile must be at least {value}",
    (TESSERA + "artifactState", "isAnyOf"): "Only while the data is: {value}",
    (TESSERA + "classification", "eq"): "The data is graded {value}",
    (TESSERA + "importantMinimumSecurityLevel", "gteq"): "Important data needs security profile {value} or higher",
}
_DUTIES = {
    "delete": "Delete the copy",
    "anonymize": "Masked before delivery",
    TESSERA + "log": "Every use is logged",
    "inform": "The provider is informed",
    "nextPolicy": "Passed on only under the provider's next policy",
    TESSERA + "aggregate": "Only aggregates are delivered (usable, not visible)",
    TESSERA + "compute": "Only computed answers are delivered (compute to data)",
}
_DUTY_DETAILS = {
    "delayPeriod": "within {value}",
    "dateTime": "by {value}",
    TESSERA + "field": "fields: {value}",
    TESSERA + "groupBy": "grouped by: {value}",
    TESSERA + "aggregateFunction": "functions: {value}",
    TESSERA + "aggregateField": "fields: {value}",
    TESSERA + "minGroupSize": "groups of at least {value}",
    "recipient": "party: {value}",
    "event": "event: {value}",
}
_LOGICAL = {
    "or": "At least one of these holds",
    "xone": "Exactly one of these holds",
    "and": "All of these hold",
    "andSequence": "All of these hold, in order",
}


@dataclass(frozen=True)
class Phrase:
    """A sentence: `template` (English, the message id) with `{value}`-style fields; `depth` indents it."""

    template: str
    values: dict[str, str] = field(default_factory=dict)
    depth: int = 0

    def format(self, gettext: Callable[[str], str] = str) -> str:
        """The sentence in `gettext`'s language; values that are our words (actions) are translated too."""
        return gettext(self.template).format(**{name: gettext(value) for name, value in self.values.items()})


def lines(policy: Policy) -> list[str]:
    """The policy in English, one indented line per phrase: for terminals and logs."""
    return ["  " * phrase.depth + phrase.format() for phrase in describe(policy)]


def describe(policy: Policy) -> list[Phrase]:
    """The policy's permissions, prohibitions and duties as sentences, in the policy's order."""
    phrases: list[Phrase] = []
    for permission in policy.permissions:
        phrases.append(_action("Allowed: {action}", permission.action))
        phrases += _constraints(permission.constraints, 1)
        for duty in permission.duties:
            phrases += _duty(duty, 1)
    for prohibition in policy.prohibitions:
        phrases.append(_action("Forbidden: {action}", prohibition.action))
        phrases += _constraints(prohibition.constraints, 1)
    for obligation in policy.obligations:
        phrases += _duty(obligation, 0)
    return phrases or [Phrase("No permission is granted")]


def constraint(found: Constraint, depth: int = 0) -> Phrase:
    template = _CONSTRAINTS.get((found.left, found.operator))
    if template is None:
        return Phrase(
            "{left} {operator} {value}",
            {"left": _short(found.left), "operator": found.operator, "value": value_text(found.right, found.unit)},
            depth,
        )
    return Phrase(template, {"value": value_text(found.right, found.unit)}, depth)


def value_text(value: Value, unit: str | None = None) -> str:
    """A right operand as people read it: lists joined, durations (`P30D`) kept, IRIs shortened."""
    if isinstance(value, tuple):
        return ", ".join(_short(str(item)) for item in value)
    if isinstance(value, dict):
        return str(value.get("@value", value))
    text = _short(str(value)).lower() if isinstance(value, bool) else _duration(_short(str(value)))
    return f"{text} {_short(unit)}" if unit else text


def _duration(text: str) -> str:
    """`PT2592000S` → `30 d`, `PT7200S` → `2 h`: an ISO 8601 duration in seconds, in its largest whole unit."""
    found = re.fullmatch(r"PT(\d+)S", text)
    if found is None:
        return text
    seconds = int(found.group(1))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def _constraints(constraints: tuple[AnyConstraint, ...], depth: int) -> Iterator[Phrase]:
    for found in constraints:
        if isinstance(found, LogicalConstraint):
            yield Phrase(_LOGICAL[found.operator], {}, depth)
            yield from _constraints(found.constraints, depth + 1)
        else:
            yield constraint(found, depth)


def _duty(duty: Duty, depth: int) -> list[Phrase]:
    template = _DUTIES.get(duty.action)
    head = Phrase(template, {}, depth) if template else _action("Duty: {action}", duty.action, depth)
    details = []
    for found in (*duty.refinements, *duty.constraints):
        if isinstance(found, Constraint) and found.left in _DUTY_DETAILS:
            details.append(Phrase(_DUTY_DETAILS[found.left], {"value": value_text(found.right, found.unit)}, depth + 1))
        elif isinstance(found, Constraint):
            details.append(constraint(found, depth + 1))
        else:
            details += _constraints((found,), depth + 1)
    return [head, *details]


def _action(template: str, action: str, depth: int = 0) -> Phrase:
    return Phrase(template, {"action": _ACTIONS.get(action, _short(action))}, depth)


def _short(term: str) -> str:
    """`https://w3id.org/tessera/v1/role` → `tessera:role`; other IRIs and words as they are."""
    return "tessera:" + term.removeprefix(TESSERA) if term.startswith(TESSERA) else term
