"""ODRL 2.2 policies as typed values: what an offer or an agreement says, in every form a peer sends.

`parse_policy` reads compact JSON-LD (`"permission"`), prefixed terms (`"odrl:permission"`), full IRIs
(`"http://www.w3.org/ns/odrl/2/permission"`), value objects (`{"@value": "5", "@type": "xsd:integer"}`,
`{"@id": "odrl:use"}`), `@list` / `@set` containers and single values where ODRL allows lists.
`Policy.to_json` writes the DSP 2025-1 compact form.

Terms of the ODRL vocabulary keep their compact names (`purpose`, `lteq`, `use`); Tessera's profile
terms their full IRIs under `TESSERA` (`tessera:role` is read as `https://w3id.org/tessera/v1/role`);
any other IRI is kept as it came. What the policy library cannot enforce is its business, not the
parser's: an unknown operand still parses, and the compiler denies on it.

```python
policy = parse_policy(message["offer"])
policy.permissions[0].constraints[0]  # Constraint(left='purpose', operator='isAnyOf', right=('research',))
```
"""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeAlias, cast

from tessera.errors import InvalidMessage
from tessera.json import JSON

ODRL = "http://www.w3.org/ns/odrl/2/"
TESSERA = "https://w3id.org/tessera/v1/"
XSD = "http://www.w3.org/2001/XMLSchema#"

Scalar: TypeAlias = str | int | float | bool
Value: TypeAlias = Scalar | tuple[Scalar, ...] | dict[str, JSON]  # a right operand, unwrapped

LOGICAL_OPERATORS = ("and", "or", "xone", "andSequence")
SET_OPERATORS = ("isAnyOf", "isAllOf", "isNoneOf", "isPartOf", "hasPart")
LogicalOperator = Literal["and", "or", "xone", "andSequence"]
PolicyKind = Literal["Offer", "Agreement", "Set", "Policy", "Request"]
_KINDS: tuple[PolicyKind, ...] = ("Offer", "Agreement", "Set", "Policy", "Request")
_KIND_OF: dict[str, PolicyKind] = {kind: kind for kind in _KINDS}
_PREFIXES = {"odrl:": ODRL, "tessera:": TESSERA, "xsd:": XSD}
_POLICY_KEYS = {"@context", "@id", "@type", "uid", "target", "assigner", "assignee", "profile"}
_RULE_KEYS = {"permission", "prohibition", "obligation"}


class InvalidPolicy(InvalidMessage):
    """An ODRL policy we cannot read; the detail names the element (`permission[0].constraint[1]`)."""


@dataclass(frozen=True)
class Constraint:
    """`left operator right`, e.g. `purpose isAnyOf ["research"]`; `datatype` as the literal stated it."""

    left: str
    operator: str
    right: Value
    datatype: str | None = None
    unit: str | None = None

    def to_json(self) -> dict[str, JSON]:
        right: JSON
        if isinstance(self.right, tuple):
            right = list(self.right)
        elif self.datatype is not None:
            right = {"@value": cast(JSON, self.right), "@type": self.datatype}
        else:
            right = self.right if isinstance(self.right, str | dict) else {"@value": self.right}
        found: dict[str, JSON] = {"leftOperand": self.left, "operator": self.operator, "rightOperand": right}
        if self.unit is not None:
            found["unit"] = self.unit
        return found


@dataclass(frozen=True)
class LogicalConstraint:
    """`and`, `or`, `xone` (exactly one) or `andSequence` over constraints."""

    operator: LogicalOperator
    constraints: tuple["AnyConstraint", ...]

    def to_json(self) -> dict[str, JSON]:
        return {self.operator: [c.to_json() for c in self.constraints]}


AnyConstraint: TypeAlias = Constraint | LogicalConstraint


@dataclass(frozen=True)
class Duty:
    """An action the assignee (or, for `nextPolicy` and the like, someone) must carry out."""

    action: str
    constraints: tuple[AnyConstraint, ...] = ()
    refinements: tuple[AnyConstraint, ...] = ()

    def to_json(self) -> dict[str, JSON]:
        return _rule_json(self.action, self.refinements, self.constraints)


@dataclass(frozen=True)
class Permission:
    action: str
    constraints: tuple[AnyConstraint, ...] = ()
    duties: tuple[Duty, ...] = ()
    refinements: tuple[AnyConstraint, ...] = ()

    def to_json(self) -> dict[str, JSON]:
        found = _rule_json(self.action, self.refinements, self.constraints)
        if self.duties:
            found["duty"] = [d.to_json() for d in self.duties]
        return found


@dataclass(frozen=True)
class Prohibition:
    action: str
    constraints: tuple[AnyConstraint, ...] = ()
    remedies: tuple[Duty, ...] = ()
    refinements: tuple[AnyConstraint, ...] = ()

    def to_json(self) -> dict[str, JSON]:
        found = _rule_json(self.action, self.refinements, self.constraints)
        if self.remedies:
            found["remedy"] = [d.to_json() for d in self.remedies]
        return found


@dataclass(frozen=True)
class Policy:
    """An ODRL policy. `extensions` keeps the properties ODRL does not define (ours and other connectors')."""

    kind: PolicyKind = "Offer"
    id: str | None = None
    target: str | None = None
    assigner: str | None = None
    assignee: str | None = None
    permissions: tuple[Permission, ...] = ()
    prohibitions: tuple[Prohibition, ...] = ()
    obligations: tuple[Duty, ...] = ()
    profile: tuple[str, ...] = ()
    extensions: dict[str, JSON] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, JSON]:
        found: dict[str, JSON] = {"@type": self.kind}
        if self.id is not None:
            found = {"@id": self.id, **found}
        for name in ("target", "assigner", "assignee"):
            if getattr(self, name) is not None:
                found[name] = getattr(self, name)
        if self.profile:
            found["profile"] = list(self.profile)
        if self.permissions:
            found["permission"] = [p.to_json() for p in self.permissions]
        if self.prohibitions:
            found["prohibition"] = [p.to_json() for p in self.prohibitions]
        if self.obligations:
            found["obligation"] = [d.to_json() for d in self.obligations]
        return {**found, **self.extensions}


def _rule_json(
    action: str, refinements: tuple[AnyConstraint, ...], constraints: tuple[AnyConstraint, ...]
) -> dict[str, JSON]:
    found: dict[str, JSON] = {
        "action": {"rdf:value": {"@id": action}, "refinement": [r.to_json() for r in refinements]}
    }
    if not refinements:
        found["action"] = action
    if constraints:
        found["constraint"] = [c.to_json() for c in constraints]
    return found


# -- reading ----------------------------------------------------------------------------------------------


def term(value: object) -> str:
    """A vocabulary term's canonical name: ODRL terms compact, Tessera's and others' as full IRIs."""
    if isinstance(value, list) and len(value) == 1:  # expanded JSON-LD wraps every value in an array
        value = value[0]
    if isinstance(value, Mapping):
        value = value.get("@id", value.get("@value"))
    if not isinstance(value, str) or not value:
        raise ValueError(f"{value!r} is not a term")
    for prefix, namespace in _PREFIXES.items():
        if value.startswith(prefix):
            value = namespace + value[len(prefix) :]
    return value.removeprefix(ODRL)


def parse_policy(document: object, *, where: str = "policy") -> Policy:
    """An ODRL policy from JSON(-LD); InvalidPolicy names the first element that cannot be read."""
    data = _object(document, where)
    kind = _kind(data, where)
    policy = Policy(
        kind=kind,
        id=_optional_id(data, "@id", where) or _optional_id(data, "uid", where),
        target=_optional_id(data, "target", where),
        assigner=_optional_id(data, "assigner", where),
        assignee=_optional_id(data, "assignee", where),
        permissions=tuple(_permission(r, f"{where}.permission[{i}]") for i, r in _items(data, "permission", where)),
        prohibitions=tuple(_prohibition(r, f"{where}.prohibition[{i}]") for i, r in _items(data, "prohibition", where)),
        obligations=tuple(_duty(r, f"{where}.obligation[{i}]") for i, r in _items(data, "obligation", where)),
        profile=tuple(_term_at(p, f"{where}.profile[{i}]") for i, p in _items(data, "profile", where)),
        extensions={k: v for k, v in data.items() if _local(k) not in _POLICY_KEYS | _RULE_KEYS},
    )
    if not policy.permissions and not policy.prohibitions and not policy.obligations:
        raise InvalidPolicy(f"{where}: a policy needs at least one permission, prohibition or obligation")
    return policy


def _kind(data: Mapping[str, JSON], where: str) -> PolicyKind:
    stated = _get(data, "@type")
    names = stated if isinstance(stated, list) else [stated]
    for name in names:
        if isinstance(name, str) and (kind := _KIND_OF.get(term(name))):
            return kind
    if stated is None:
        return "Offer"
    raise InvalidPolicy(f"{where}.@type: {stated!r} is not an ODRL policy type ({', '.join(_KINDS)})")


def _permission(document: JSON, where: str) -> Permission:
    data = _object(document, where)
    action, refinements = _action(data, where)
    return Permission(
        action=action,
        constraints=_constraints(data, "constraint", where),
        duties=tuple(_duty(d, f"{where}.duty[{i}]") for i, d in _items(data, "duty", where)),
        refinements=refinements,
    )


def _prohibition(document: JSON, where: str) -> Prohibition:
    data = _object(document, where)
    action, refinements = _action(data, where)
    return Prohibition(
        action=action,
        constraints=_constraints(data, "constraint", where),
        remedies=tuple(_duty(d, f"{where}.remedy[{i}]") for i, d in _items(data, "remedy", where)),
        refinements=refinements,
    )


def _duty(document: JSON, where: str) -> Duty:
    data = _object(document, where)
    action, refinements = _action(data, where)
    return Duty(action=action, constraints=_constraints(data, "constraint", where), refinements=refinements)


def _action(data: Mapping[str, JSON], where: str) -> tuple[str, tuple[AnyConstraint, ...]]:
    """The rule's action and its refinements (`{"rdf:value": {"@id": "odrl:print"}, "refinement": […]}`)."""
    value = _get(data, "action")
    if isinstance(value, list):
        if len(value) != 1:
            raise InvalidPolicy(f"{where}.action: a rule has exactly one action, got {len(value)}")
        value = value[0]
    if isinstance(value, Mapping) and ("rdf:value" in value or "refinement" in _locals(value)):
        inner = value.get("rdf:value", value.get("http://www.w3.org/1999/02/22-rdf-syntax-ns#value", value.get("@id")))
        return _term_at(inner, f"{where}.action"), _constraints(value, "refinement", f"{where}.action")
    if value is None:
        raise InvalidPolicy(f"{where}: a rule needs an action")
    return _term_at(value, f"{where}.action"), ()


def _constraints(data: Mapping[str, JSON], key: str, where: str) -> tuple[AnyConstraint, ...]:
    return tuple(_constraint(c, f"{where}.{key}[{i}]") for i, c in _items(data, key, where))


def _constraint(document: JSON, where: str) -> AnyConstraint:
    data = _object(document, where)
    logical = [k for k in data if _local(k) in LOGICAL_OPERATORS]
    if logical:
        if len(logical) > 1 or _get(data, "leftOperand") is not None:
            raise InvalidPolicy(f"{where}: a logical constraint has exactly one operator and no leftOperand")
        name = cast(LogicalOperator, _local(logical[0]))
        members = _members(data[logical[0]])
        if not members:
            raise InvalidPolicy(f"{where}.{name}: a logical constraint needs constraints")
        return LogicalConstraint(name, tuple(_constraint(c, f"{where}.{name}[{i}]") for i, c in enumerate(members)))
    left, operator = _get(data, "leftOperand"), _get(data, "operator")
    if left is None or operator is None or _get(data, "rightOperand") is None:
        raise InvalidPolicy(f"{where}: a constraint needs leftOperand, operator and rightOperand")
    right, datatype = _right_operand(_get(data, "rightOperand"), f"{where}.rightOperand")
    unit = _get(data, "unit")
    operator_name = _term_at(operator, f"{where}.operator")
    return Constraint(
        left=_term_at(left, f"{where}.leftOperand"),
        operator=operator_name,
        right=_shaped(right, operator_name),
        datatype=datatype,
        unit=_term_at(unit, f"{where}.unit") if unit is not None else None,
    )


def _shaped(right: Value, operator: str) -> Value:
    """Set operators take a tuple, others a single value, however many brackets the peer wrote."""
    if operator in SET_OPERATORS:
        return right if isinstance(right, tuple) else (right,) if not isinstance(right, dict) else right
    if isinstance(right, tuple) and len(right) == 1:
        return right[0]
    return right


def _right_operand(value: JSON, where: str) -> tuple[Value, str | None]:
    """The operand's value (`@value`, `@id`, or a tuple for a list) and its stated datatype."""
    if isinstance(value, list) or (isinstance(value, Mapping) and ("@list" in value or "@set" in value)):
        items = _members(value)
        return tuple(_scalar(item, f"{where}[{i}]") for i, item in enumerate(items)), None
    if isinstance(value, Mapping) and value.get("@type") == "@json":
        return dict(value), None  # a JSON literal (`{"@value": [...], "@type": "@json"}`), kept whole
    if isinstance(value, Mapping) and "@value" in value:
        datatype = value.get("@type")
        return _scalar(value, where), _term_at(datatype, f"{where}.@type") if datatype is not None else None
    if isinstance(value, Mapping) and set(value) == {"@id"}:
        return _scalar(value, where), None
    if isinstance(value, Mapping):
        return dict(value), None  # a JSON object operand (e.g. @json literals), compared as a whole
    return _scalar(value, where), None


def _scalar(value: JSON, where: str) -> Scalar:
    if isinstance(value, Mapping):
        value = value.get("@value", value.get("@id"))
    if isinstance(value, bool | int | float | str):
        return value
    raise InvalidPolicy(f"{where}: {value!r} is not a value")


def _members(value: JSON) -> list[JSON]:
    if isinstance(value, Mapping):
        inner = value.get("@list", value.get("@set"))
        return _members(inner) if inner is not None else [dict(value)]
    if isinstance(value, list):
        return value
    return [] if value is None else [value]


def _items(data: Mapping[str, JSON], key: str, where: str) -> Iterator[tuple[int, JSON]]:
    return enumerate(_members(_get(data, key)))


def _object(value: object, where: str) -> dict[str, JSON]:
    if not isinstance(value, Mapping):
        raise InvalidPolicy(f"{where}: expected a JSON object, got {type(value).__name__}")
    return dict(value)


def _optional_id(data: Mapping[str, JSON], key: str, where: str) -> str | None:
    value = _get(data, key)
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if value is None:
        return None
    if isinstance(value, Mapping):
        value = value.get("@id", value.get("@value"))
    if not isinstance(value, str):
        raise InvalidPolicy(f"{where}.{key}: {value!r} is not an identifier")
    return value


def _term_at(value: object, where: str) -> str:
    try:
        return term(value)
    except ValueError as exc:
        raise InvalidPolicy(f"{where}: {exc}") from exc


def _get(data: Mapping[str, JSON], key: str) -> JSON:
    """`key` in any of its spellings: compact, `odrl:` prefixed, full IRI."""
    if key in data:
        return data[key]
    for name, value in data.items():
        if _local(name) == key:
            return value
    return None


def _local(name: str) -> str:
    if name == "@id" or name == "@type" or name == "@context":
        return name
    for prefix in ("odrl:", ODRL):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def _locals(data: Mapping[str, JSON]) -> set[str]:
    return {_local(k) for k in data}
