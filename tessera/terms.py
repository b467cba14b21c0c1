"""Negotiable terms of an offer: purposes, duration of use, number of uses.

They travel as ODRL constraints on the offer's `use` permission (`purpose isAnyOf […]`,
`elapsedTime lteq "P30D"`, `count lteq "10"`), are what the two agents bargain over, and end up in
the agreement, where the usage policy reads them as `input.agreement.terms`.
"""

import re
from dataclasses import dataclass
from typing import NotRequired, TypedDict

from tessera.errors import InvalidMessage
from tessera.json import JSON, JSONObject

_DAYS = re.compile(r"^P(\d+)D$")


class Constraint(TypedDict):
    """An ODRL constraint, like `{"leftOperand": "count", "operator": "lteq", "rightOperand": "10"}`."""

    leftOperand: str
    operator: str
    rightOperand: JSON


class Permission(TypedDict):
    action: str
    constraint: NotRequired[list[Constraint]]


class _Granted(TypedDict, total=False):
    """What the constraints of an offer state, as `Terms` arguments."""

    purposes: tuple[str, ...]
    duration_days: int
    uses: int


@dataclass(frozen=True, kw_only=True)
class Terms:
    """`None` means unrestricted; a list of purposes restricts use to those purposes."""

    purposes: tuple[str, ...] | None = None
    duration_days: int | None = None
    uses: int | None = None

    @classmethod
    def from_dict(cls, data: JSONObject | None) -> "Terms":
        data = data or {}
        purposes = data.get("purposes")
        return cls(
            purposes=tuple(sorted(purposes)) if purposes is not None else None,
            duration_days=data.get("duration_days"),
            uses=data.get("uses"),
        )

    def to_dict(self) -> JSONObject:
        return {
            "purposes": list(self.purposes) if self.purposes is not None else None,
            "duration_days": self.duration_days,
            "uses": self.uses,
        }

    def within(self, limit: "Terms") -> bool:
        """True when these (requested) terms ask for no more than `limit` (offered) grants."""
        return (
            _subset(self.purposes, limit.purposes)
            and _at_most(self.duration_days, limit.duration_days)
            and _at_most(self.uses, limit.uses)
        )

    def constraints(self) -> list[Constraint]:
        found: list[Constraint] = []
        if self.purposes is not None:
            found.append({"leftOperand": "purpose", "operator": "isAnyOf", "rightOperand": list(self.purposes)})
        if self.duration_days is not None:
            found.append({"leftOperand": "elapsedTime", "operator": "lteq", "rightOperand": f"P{self.duration_days}D"})
        if self.uses is not None:
            found.append({"leftOperand": "count", "operator": "lteq", "rightOperand": str(self.uses)})
        return found

    def permission(self) -> list[Permission]:
        constraints = self.constraints()
        return [{"action": "use", "constraint": constraints} if constraints else {"action": "use"}]


def _subset(wanted: tuple[str, ...] | None, allowed: tuple[str, ...] | None) -> bool:
    if allowed is None:
        return True
    return wanted is not None and set(wanted) <= set(allowed)


def _at_most(wanted: int | None, allowed: int | None) -> bool:
    if allowed is None:
        return True
    return wanted is not None and wanted <= allowed


def from_odrl(policy: JSONObject) -> Terms:
    """The terms an ODRL offer or agreement states; other constraints are left to the usage policy."""
    values: _Granted = {}
    for permission in _list(policy.get("permission")):
        for constraint in _list(permission.get("constraint") if isinstance(permission, dict) else None):
            _read(constraint, values)
    return Terms(**values)


def _read(constraint: JSON, values: _Granted) -> None:
    if not isinstance(constraint, dict):
        raise InvalidMessage("an ODRL constraint must be an object")
    left = str(constraint.get("leftOperand", "")).removeprefix("odrl:").rsplit("/", 1)[-1]
    operator = str(constraint.get("operator", "")).removeprefix("odrl:").rsplit("/", 1)[-1]
    right: JSON = constraint.get("rightOperand")
    if left == "purpose":
        items = right if isinstance(right, list) else [right]
        if operator not in ("eq", "isAnyOf", "isPartOf") or not all(isinstance(i, str) for i in items):
            raise InvalidMessage(f"purpose constraint {operator} {right!r} is not understood")
        values["purposes"] = tuple(sorted(items))
    elif left == "elapsedTime":
        match = _DAYS.match(str(right))
        if operator not in ("lteq", "lt") or not match:
            raise InvalidMessage(f"elapsedTime constraint {operator} {right!r} is not understood (want lteq PnD)")
        values["duration_days"] = int(match.group(1)) - (1 if operator == "lt" else 0)
    elif left == "count":
        if operator not in ("lteq", "lt") or not str(right).isdigit():
            raise InvalidMessage(f"count constraint {operator} {right!r} is not understood")
        values["uses"] = int(str(right)) - (1 if operator == "lt" else 0)


def _list(value: JSON) -> list[JSON]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]
