"""The agreement as law: an ODRL policy compiled to one Rego module that the data plane evaluates.

```python
compiled = compile_policy(parse_policy(agreement_document))
compiled.source     # package tessera.agreement … allow / deny / obligations / mask
compiled.problems   # what cannot be enforced, one line each (empty for an enforceable policy)
```

Semantics (ODRL 2.2): permissions are alternatives, each granting its action when all its
constraints hold; a prohibition whose constraints hold overrides every permission; duties become
obligations (through the library's duty patterns, so they are carried out as the patterns define).
Every failed constraint gives one reason. Whatever the compiler does not understand — an action,
a left operand, an operator, a value — compiles to a rule that denies with a reason naming it, and
is listed in `problems`: never a silent allow.

The input is the data plane's usage input (see docs/policy-engine.md): `purpose`, `uses` (before this
one), `now`, `agreement.timestamp`, `caller.{sub, region, jurisdiction, roles, security_profile}`,
`connector.id`, `event`, `asset.classification`, `artifact.state`, and for compute queries
`privacy.{spent, epsilon}` (`tessera:privacyBudget`).
"""

import contextlib
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from policies.odrl import UnsupportedOdrl, policy_from_offer
from policies.patterns import SECURITY_PROFILES, PatternError, render_block
from tessera import clock
from tessera.json import JSONObject
from tessera.odrl import (
    TESSERA,
    AnyConstraint,
    Constraint,
    Duty,
    InvalidPolicy,
    LogicalConstraint,
    Permission,
    Policy,
    Value,
    parse_policy,
)
from tessera.policy.base import PolicyModule

PACKAGE = "tessera.agreement"
USE_ACTIONS = ("use", "read")  # what a pull through the data plane does
OTHER_ACTIONS = frozenset(  # ODRL actions the provider's data plane never performs: not ours to enforce here
    [
        "distribute",
        "reproduce",
        "modify",
        "delete",
        "archive",
        "print",
        "sell",
        "transfer",
        "display",
        "play",
        "present",
        "stream",
        "aggregate",
        "anonymize",
        "derive",
        "digitize",
        "execute",
        "extract",
        "grantUse",
        "index",
        "install",
        "move",
        "translate",
        "compensate",
        "inform",
        "ensureExclusivity",
        "include",
        "attribute",
        "concurrentUse",
        "annotate",
        "attachPolicy",
        "attachSource",
        "lease",
        "lend",
        "license",
        "give",
        "nextPolicy",
        "obtainConsent",
        "reviewPolicy",
        "textToSpeech",
        "transform",
        "uninstall",
        "watermark",
        "acceptTracking",
    ]
)
_DURATION = re.compile(
    r"^P(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
_NS = 1_000_000_000


@dataclass(frozen=True)
class CompiledPolicy:
    package: str
    source: str
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class CompiledAgreement:
    """An agreement's ODRL as the module the data plane decides with (beside any bound Rego module).

    Each agreement gets its own package under `tessera.agreements` (so many agreements can live in
    one OPA server); an agreement that cannot be read, or has problems, compiles to a module that
    denies with one reason per problem: fail closed.
    """

    module: PolicyModule
    problems: tuple[str, ...] = ()


AGREEMENTS_PACKAGE = "tessera.agreements"


@dataclass(frozen=True)
class _Operand:
    """How a left operand is read from the usage input, and of what kind its values are.

    A constraint compiles to an expression that holds when the constraint does. It is written inline,
    under `not`, only when it is total (defined for every input, never failing): OPA moves references
    and calls out of a negated expression, so `not f(input.x)` is undefined rather than true when
    `input.x` is missing (regorus says true), and a missing value would pass. Partial expressions
    (times, which must be parsed) are compiled to a helper rule, `not c1`, which both engines agree on.
    """

    value: str  # a Rego expression
    kind: str  # string | strings | number | instant | elapsed | rank
    shown: str  # the value in words, for a reason
    shown_total: bool = False  # shown is defined (and cannot fail) for every input
    guard: str | None = None  # what must hold before `value` can be computed without an engine error
    total: bool = False  # comparisons on value are defined for every input and never fail: they may be inlined
    shown_bound: str | None = None  # `shown` for a numeric bound, `{bound}` standing for the right operand


def _input(kind: str, *path: str) -> _Operand:
    """An operand read from the input, null when missing (total); a reason shows its JSON."""
    value = f"object.get(input, {json.dumps(list(path))}, null)"
    return _Operand(value, kind, shown=f"json.marshal({value})", shown_total=True, total=True)


OPERANDS: dict[str, _Operand] = {
    "purpose": _input("string", "purpose"),
    "recipient": _input("string", "caller", "sub"),
    "assignee": _input("string", "caller", "sub"),
    "spatial": _input("string", "caller", "region"),
    "system": _input("string", "connector", "id"),
    "event": _input("string", "event"),
    # The use being decided is counted; a missing or non-numeric count holds nothing (denies) on both engines.
    "count": _Operand(
        "input.uses + 1",
        "number",
        shown='sprintf("this would be use %d", [input.uses + 1])',
        guard="is_number(input.uses)",
    ),
    # A compute query's ε, spent with what the agreement's queries spent before it (connector.compute).
    TESSERA + "privacyBudget": _Operand(
        "input.privacy.spent + input.privacy.epsilon",
        "number",
        shown='sprintf("this query asks epsilon %v, %v spent before", [input.privacy.epsilon, input.privacy.spent])',
        guard="is_number(input.privacy.spent); is_number(input.privacy.epsilon)",
        shown_bound='sprintf("this query asks epsilon %v; %v of {bound} spent, %v left", '
        "[input.privacy.epsilon, input.privacy.spent, {bound} - input.privacy.spent])",
    ),
    "dateTime": _Operand(
        "time.parse_rfc3339_ns(input.now)",
        "instant",
        shown='concat("", ["now ", json.marshal(object.get(input, "now", null))])',
        shown_total=True,
    ),
    "elapsedTime": _Operand(
        "time.parse_rfc3339_ns(input.now) - time.parse_rfc3339_ns(input.agreement.timestamp)",
        "elapsed",
        shown='sprintf("elapsed %ds", [round((time.parse_rfc3339_ns(input.now) - '
        "time.parse_rfc3339_ns(input.agreement.timestamp)) / 1000000000)])",
    ),
    TESSERA + "role": _input("strings", "caller", "roles"),
    TESSERA + "jurisdiction": _input("string", "caller", "jurisdiction"),
    TESSERA + "securityLevel": _input("rank", "caller", "security_profile"),
    TESSERA + "classification": _input("string", "asset", "classification"),
    TESSERA + "artifactState": _input("string", "artifact", "state"),
}
_SET_OPERATORS = ("isAnyOf", "isNoneOf", "isAllOf", "isPartOf", "hasPart")
_ORDER_OPERATORS = {"lt": "<", "lteq": "<=", "gt": ">", "gteq": ">=", "eq": "==", "neq": "!="}
_ORDER_TESTS: dict[str, Callable[[int, int], bool]] = {
    "lt": lambda a, b: a < b,
    "lteq": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "gteq": lambda a, b: a >= b,
    "eq": lambda a, b: a == b,
    "neq": lambda a, b: a != b,
}


class _Unsupported(Exception):
    """A constraint the compiler cannot turn into Rego; the message says what and why."""


@dataclass
class _Module:
    """The Rego text being written, with fresh rule names."""

    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    count: int = 0

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    def add(self, text: str) -> None:
        self.lines.append(text)


def compile_policy(policy: Policy, package: str = PACKAGE) -> CompiledPolicy:
    module = _Module()
    module.add(f"# Compiled by tessera from the ODRL {policy.kind.lower()} {policy.id or ''}; do not edit.")
    module.add(f"package {package}\n")
    module.add("default allow := false\n\nallow if count(deny) == 0\n")
    if _plain_use(policy):
        _lean_permission(module, policy.permissions[0].constraints)
        return CompiledPolicy(package, "\n".join(module.lines), tuple(module.problems))
    module.add('deny contains "" if false\n\nobligations contains "" if false\n\nmask contains "" if false\n')
    permissions = [p for p in policy.permissions]
    if not permissions:
        module.add('deny contains "agreement: no permission grants any use"\n')
    for i, permission in enumerate(permissions, 1):
        _permission(module, i, permission.action, permission.constraints, permission.duties, len(permissions))
    for j, prohibition in enumerate(policy.prohibitions, 1):
        _prohibition(module, j, prohibition.action, prohibition.constraints)
    if policy.obligations:
        _duties(module, "_o", policy.obligations, top_level=True)
    if permissions:
        _combine(module, len(permissions))
    return CompiledPolicy(package, "\n".join(module.lines), tuple(module.problems))


def compile_agreement(document: JSONObject) -> CompiledAgreement:
    """The agreement document (ODRL JSON, any form a peer sends) compiled for enforcement."""
    digest = hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()
    package = f"{AGREEMENTS_PACKAGE}.a{digest[:24]}"
    module_id = f"agreement-{digest[:24]}"
    try:
        policy = parse_policy(document, where="agreement")
    except InvalidPolicy as exc:
        problem = f"the agreement cannot be read: {exc.detail}"
        return CompiledAgreement(PolicyModule(module_id, _denying(package, [problem])), (problem,))
    compiled = compile_policy(policy, package)
    source = compiled.source + _problem_denials(compiled.problems) + _assignee_rule(policy.assignee)
    return CompiledAgreement(PolicyModule(module_id, source), compiled.problems)


def compile_duties(document: JSONObject) -> CompiledAgreement | None:
    """The agreement's duties alone (of every permission, and its obligations), for the consumer to carry out.

    Deciding the module gives the duties as obligations (delete_after, next_policy …), as the library's duty
    patterns define them; None when the agreement states no duty.
    """
    digest = hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()[:24]
    package, module_id = f"{AGREEMENTS_PACKAGE}.duties_a{digest}", f"agreement-duties-{digest}"
    try:
        policy = parse_policy(document, where="agreement")
    except InvalidPolicy as exc:
        problem = f"the agreement cannot be read: {exc.detail}"
        return CompiledAgreement(PolicyModule(module_id, _denying(package, [problem])), (problem,))
    duties = (*(d for p in policy.permissions for d in p.duties), *policy.obligations)
    if not duties:
        return None
    compiled = compile_policy(Policy(kind="Agreement", permissions=(Permission("use", duties=duties),)), package)
    source = compiled.source + _problem_denials(compiled.problems)
    return CompiledAgreement(PolicyModule(module_id, source), compiled.problems)


def _denying(package: str, problems: Sequence[str]) -> str:
    return f"package {package}\n\ndefault allow := false\n" + _problem_denials(problems)


def _problem_denials(problems: Sequence[str]) -> str:
    return "".join(f"\ndeny contains {json.dumps(f'agreement: cannot be enforced: {p}')}\n" for p in problems)


def _assignee_rule(assignee: str | None) -> str:
    """The agreement binds its assignee: nobody else may use the data under it."""
    if assignee is None:
        return ""
    return (
        # `==` under `not` is safe on both engines with the subject missing (unlike calls and `in`).
        f"\ndeny contains msg if {{\n\tnot input.caller.sub == {json.dumps(assignee)}\n"
        f'\tmsg := sprintf("agreement: the caller %s is not the assignee %s", '
        f"[{OPERANDS['assignee'].shown}, {json.dumps(json.dumps(assignee))}])\n}}\n"
    )


def _plain_use(policy: Policy) -> bool:
    """One permission to use, constraints only: most agreements. It compiles without the machinery for
    alternatives and duties, which costs the engine more than the constraints (bench/policy.py)."""
    if len(policy.permissions) != 1 or policy.prohibitions or policy.obligations:
        return False
    permission = policy.permissions[0]
    return permission.action in USE_ACTIONS and not permission.duties


def _lean_permission(module: _Module, constraints: Sequence[AnyConstraint]) -> None:
    """Each constraint inline in its own deny rule: no helper rule, so a use costs the engine only the
    constraints' expressions (bench/policy.py)."""
    if not constraints:
        module.add('deny contains "" if false\n')  # deny must be defined for allow to read it
    for constraint in _pattern_parameters(module, "", constraints):
        if isinstance(constraint, Constraint) and (inline := _inline(module, constraint)):
            module.add(inline)
            continue
        rule, text = _constraint(module, constraint, "permission 1")
        module.add(f"deny contains msg if {{\n\tnot {rule}\n\tmsg := {_reason(module, rule, text, constraint)}\n}}\n")


def _inline(module: _Module, constraint: Constraint) -> str | None:
    """The deny rule for one constraint, without a helper rule; None when it cannot be compiled."""
    try:
        expression = _expression(constraint)
    except _Unsupported:
        return None  # compiled as a rule, which records the problem
    operand = OPERANDS[constraint.left]
    rule, text = module.name("c"), _text(constraint)
    if operand.total:
        violated = expression.removeprefix("not ") if expression.startswith("not ") else f"not {expression}"
    else:  # through a function of a constant, which `not` may safely negate
        guard = f"{operand.guard}\n\t" if operand.guard else ""
        module.add(f"{rule}(_) if {{\n\t{guard}{expression}\n}}\n")
        violated = f"not {rule}(0)"
    return f"deny contains msg if {{\n\t{violated}\n\tmsg := {_reason(module, rule, text, constraint)}\n}}\n"


# -- rules ------------------------------------------------------------------------------------------------


def _permission(
    module: _Module, i: int, action: str, constraints: Sequence[AnyConstraint], duties: Sequence[Duty], total: int
) -> None:
    suffix = f"_p{i}"
    module.add(f"# -- permission {i}{' (an alternative)' if total > 1 else ''}: {action} --")
    if action not in USE_ACTIONS:
        known = "grants" if action in OTHER_ACTIONS else "names an action we do not know:"
        module.add(f"deny{suffix} contains {json.dumps(f'agreement: permission {known} {action}, not use')}\n")
        if action not in OTHER_ACTIONS:
            module.problems.append(f"permission {i}: unknown action {action}")
    module.add("".join(f'{rule}{suffix} contains "" if false\n\n' for rule in ("deny", "obligations", "mask")))
    constraints = _pattern_parameters(module, suffix, constraints)
    for constraint in constraints:
        rule, text = _constraint(module, constraint, f"permission {i}")
        module.add(
            f"deny{suffix} contains msg if {{\n\tnot {rule}\n\tmsg := {_reason(module, rule, text, constraint)}\n}}\n"
        )
    _duties(module, suffix, duties, top_level=False)


# Constraints that are parameters of one library pattern and mean something only together (the home
# jurisdiction widens the allowed ones; the minimum profile applies to important data only): they are
# compiled through that pattern, as duties are, not one by one.
_PATTERN_PARAMETERS = {
    TESSERA + "homeJurisdiction": (TESSERA + "homeJurisdiction", TESSERA + "jurisdiction"),
    TESSERA + "importantMinimumSecurityLevel": (TESSERA + "importantMinimumSecurityLevel", TESSERA + "classification"),
}


def _pattern_parameters(module: _Module, suffix: str, constraints: Sequence[AnyConstraint]) -> list[AnyConstraint]:
    """Compile the pattern-parameter groups among `constraints`; the others are returned to compile alone."""
    left = list(constraints)
    for k, (marker, members) in enumerate(_PATTERN_PARAMETERS.items(), 1):
        if not any(isinstance(c, Constraint) and c.left == marker for c in left):
            continue
        group = [c for c in left if isinstance(c, Constraint) and c.left in members]
        left = [c for c in left if c not in group]
        try:
            rule = {"action": "use", "constraint": [c.to_json() for c in group]}
            uses = policy_from_offer({"permission": [rule]}).permissions[0]
            module.add(render_block(uses, f"{suffix}g{k}"))
        except (UnsupportedOdrl, PatternError) as exc:
            module.problems.append(f"constraints {', '.join(_short(c.left) for c in group)}: {exc.detail}")
            module.add(f"deny{suffix} contains {json.dumps(f'agreement: {_short(marker)} cannot be enforced')}\n")
            continue
        for name in ("deny", "obligations", "mask"):
            module.add(f"{name}{suffix} contains x if {{ some x in {name}{suffix}g{k} }}\n")
    return left


def _prohibition(module: _Module, j: int, action: str, constraints: Sequence[AnyConstraint]) -> None:
    module.add(f"# -- prohibition {j}: {action} (overrides every permission) --")
    if action in OTHER_ACTIONS:
        return  # the data plane never performs it; the consumer's copy carries the agreement
    if action not in USE_ACTIONS:
        module.problems.append(f"prohibition {j}: unknown action {action}")
        module.add(f"deny contains {json.dumps(f'agreement: prohibition {j} names an unknown action {action}')}\n")
        return
    rules = [_constraint(module, c, f"prohibition {j}") for c in constraints]
    described = " and ".join(text for _, text in rules) or "any use"
    body = "; ".join(rule for rule, _ in rules) or "true"
    module.add(f"deny contains {json.dumps(f'agreement: prohibited: {described}')} if {{ {body} }}\n")


def _duties(module: _Module, suffix: str, duties: Sequence[Duty], *, top_level: bool) -> None:
    """Duties through the library's duty patterns: obligations, and the denials those patterns make."""
    for k, duty in enumerate(duties, 1):
        try:
            uses = policy_from_offer({"permission": [{"action": "use", "duty": [duty.to_json()]}]}).permissions[0]
            block = render_block(uses, f"{suffix}d{k}")
        except (UnsupportedOdrl, PatternError) as exc:
            module.problems.append(f"duty {duty.action}: {exc.detail}")
            target = "deny" if top_level else f"deny{suffix}"
            module.add(f"{target} contains {json.dumps(f'agreement: duty {duty.action} cannot be carried out')}\n")
            continue
        module.add(block)
        target = "" if top_level else suffix
        for rule in ("deny", "obligations", "mask"):
            module.add(f"{rule}{target} contains x if {{ some x in {rule}{suffix}d{k} }}\n")


def _combine(module: _Module, permissions: int) -> None:
    module.add("# -- how the rules combine: the first permission whose constraints all hold applies --")
    for i in range(1, permissions + 1):
        module.add(f'tessera_permitted contains {i} if {{ every r in deny_p{i} {{ r == "" }} }}')
    module.add("")
    for i in range(1, permissions + 1):
        prefix = json.dumps(f"permission {i}: " if permissions > 1 else "")
        module.add(
            f"deny contains msg if {{\n\tcount(tessera_permitted) == 0\n\tsome reason in deny_p{i}\n"
            f'\treason != ""\n\tmsg := concat("", [{prefix}, reason])\n}}\n'
        )
    module.add("tessera_chosen := min(tessera_permitted)\n")
    for i in range(1, permissions + 1):
        for rule in ("obligations", "mask"):
            module.add(f"{rule} contains x if {{\n\ttessera_chosen == {i}\n\tsome x in {rule}_p{i}\n}}\n")


def _reason(module: _Module, rule: str, text: str, constraint: AnyConstraint) -> str:
    """A Rego expression for the reason `rule` failed, naming the value it saw (always defined: an
    undefined reason would drop the denial)."""
    operand = OPERANDS.get(constraint.left) if isinstance(constraint, Constraint) else None
    if operand is None:
        return json.dumps(f"agreement: {text} does not hold")
    shown = operand.shown
    if operand.shown_bound is not None and isinstance(constraint, Constraint):
        with contextlib.suppress(ValueError):  # not a number: the constraint is a problem, shown as it is
            shown = operand.shown_bound.replace("{bound}", _number_text(float(str(constraint.right))))
    if not operand.shown_total:  # computed only when it can be, through a function with a fallback
        guard = f"{operand.guard}; " if operand.guard else ""
        module.add(f'{rule}_seen(_) := shown if {{ {guard}shown := {shown} }} else := "unknown"\n')
        shown = f"{rule}_seen(0)"
    return f'concat("", [{json.dumps(f"agreement: {text} does not hold (")}, {shown}, ")"])'


# -- constraints ------------------------------------------------------------------------------------------


def _constraint(module: _Module, constraint: AnyConstraint, where: str) -> tuple[str, str]:
    """A rule that holds when the constraint does, and the constraint in words."""
    rule = module.name("c")
    module.add(f"default {rule} := false\n")
    if isinstance(constraint, LogicalConstraint):
        members = [_constraint(module, c, where) for c in constraint.constraints]
        text = f"{constraint.operator}({', '.join(t for _, t in members)})"
        names = [name for name, _ in members]
        if constraint.operator in ("and", "andSequence"):
            module.add(f"{rule} if {{ {'; '.join(names)} }}\n")
        elif constraint.operator == "or":
            module.add("".join(f"{rule} if {name}\n" for name in names))
        else:  # xone: exactly one holds
            module.add(f"{rule} if count([x | some x in [{', '.join(names)}]; x]) == 1\n")
        return rule, text
    text = _text(constraint)
    try:
        guard = OPERANDS[constraint.left].guard if constraint.left in OPERANDS else None
        module.add(f"{rule} if {{\n\t{guard + chr(10) + chr(9) if guard else ''}{_expression(constraint)}\n}}\n")
    except _Unsupported as exc:
        module.problems.append(f"{where}: constraint {text}: {exc}")
        module.add(f"# {rule} cannot hold: {exc}\n")
    return rule, text


def _text(constraint: Constraint) -> str:
    return f"{_short(constraint.left)} {constraint.operator} {json.dumps(_plain(constraint.right))}"


def _expression(constraint: Constraint) -> str:
    """One Rego expression that holds when the constraint does (and is undefined or false otherwise)."""
    operand = OPERANDS.get(constraint.left)
    if operand is None:
        raise _Unsupported(f"unknown left operand {constraint.left}")
    compare = _COMPARISONS[operand.kind]
    return compare(operand.value, constraint.operator, constraint.right)


def _strings_of(right: Value) -> list[str]:
    items = list(right) if isinstance(right, tuple) else [right]
    if not items or not all(isinstance(item, str) for item in items):
        raise _Unsupported(f"right operand {_plain(right)!r} is not a string or a list of strings")
    return [str(item) for item in items]


def _string(value: str, operator: str, right: Value) -> str:
    items = json.dumps(_strings_of(right))
    if operator in ("eq", "isAnyOf", "isPartOf") or (operator == "isAllOf" and len(_strings_of(right)) == 1):
        return f"{value} in {items}"
    if operator in ("neq", "isNoneOf"):  # a missing value (null) holds nothing, this included
        return f"not {value} in {json.dumps([None, *_strings_of(right)])}"
    raise _Unsupported(f"operator {operator} on a single value")


def _strings(value: str, operator: str, right: Value) -> str:
    items = json.dumps(_strings_of(right))
    # A missing or non-list value holds nothing (and must not make the engine fail).
    held = f"{{x | v := {value}; is_array(v); some x in v}}"
    if operator in ("isAnyOf", "eq"):
        return f"count({held} & {{x | some x in {items}}}) > 0"
    if operator in ("isAllOf", "hasPart"):
        return f"count({{x | some x in {items}}} - {held}) == 0"
    if operator == "isNoneOf":  # one expression, so that it stays total: a missing value holds nothing
        return f"[is_array({value}), count({held} & {{x | some x in {items}}})] == [true, 0]"
    raise _Unsupported(f"operator {operator} on a set of values")


def _number(value: str, operator: str, right: Value) -> str:
    try:
        bound = float(str(right)) if not isinstance(right, tuple | dict | bool) else None
    except ValueError:
        bound = None
    if bound is None:
        raise _Unsupported(f"right operand {_plain(right)!r} is not a number")
    return _ordered(value, operator, _number_text(bound))


def _instant(value: str, operator: str, right: Value) -> str:
    try:
        moment = clock.parse(str(right)) if isinstance(right, str) else None
    except ValueError:
        moment = None
    if moment is None:
        raise _Unsupported(f"right operand {_plain(right)!r} is not an RFC 3339 date and time")
    return _ordered(value, operator, str(int(moment.timestamp()) * _NS + moment.microsecond * 1000))


def _elapsed(value: str, operator: str, right: Value) -> str:
    seconds = duration_seconds(right)
    if seconds is None:
        raise _Unsupported(f"right operand {_plain(right)!r} is not an ISO 8601 duration (PnDTnHnMnS)")
    return _ordered(value, operator, str(round(seconds * _NS)))


def _rank(value: str, operator: str, right: Value) -> str:
    if right not in SECURITY_PROFILES:
        raise _Unsupported(f"security level {_plain(right)!r} is not one of {list(SECURITY_PROFILES)}")
    # As the levels that satisfy the comparison: membership is total (an unknown level holds nothing).
    if operator not in _ORDER_OPERATORS:
        raise _Unsupported(f"operator {operator} on an ordered value")
    bound, holds = SECURITY_PROFILES.index(str(right)), _ORDER_TESTS[operator]
    return f"{value} in {json.dumps([level for i, level in enumerate(SECURITY_PROFILES) if holds(i, bound)])}"


def _ordered(value: str, operator: str, bound: str) -> str:
    if operator not in _ORDER_OPERATORS:
        raise _Unsupported(f"operator {operator} on an ordered value")
    return f"{value} {_ORDER_OPERATORS[operator]} {bound}"


_COMPARISONS: dict[str, Callable[[str, str, Value], str]] = {
    "string": _string,
    "strings": _strings,
    "number": _number,
    "instant": _instant,
    "elapsed": _elapsed,
    "rank": _rank,
}


def duration_seconds(value: Value) -> float | None:
    """An ISO 8601 duration (`P30D`, `PT3600S`, `P1W`) in seconds; None when it is not one."""
    match = _DURATION.match(str(value)) if isinstance(value, str) else None
    if not match or not any(match.groupdict().values()):
        return None
    w, d, h, m = (int(match[k] or 0) for k in "wdhm")
    return (((w * 7 + d) * 24 + h) * 60 + m) * 60 + float(match["s"] or 0)


def _number_text(number: float) -> str:
    return str(int(number)) if number == int(number) else repr(number)


def _plain(value: Value) -> object:
    return list(value) if isinstance(value, tuple) else value


def _short(term: str) -> str:
    return "tessera:" + term.removeprefix(TESSERA) if term.startswith(TESSERA) else term
