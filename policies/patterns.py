"""Render library patterns with parameters into concrete usage-policy modules.

Each pattern in `usage/` is a Rego module whose parameters sit between `# tessera:params` and
`# tessera:end` as JSON constants. An agreement binds the policy text by hash, so parameters are
rendered into the text (never read from `data`):

```python
from policies.patterns import PatternUse, render

source = render("tessera.usage.acme_research", [
    PatternUse.of("purpose", allowed_purposes=["research"]),
    PatternUse.of("max_uses", max_uses=3),
    PatternUse.of("modify_in_transit", masked_paths=["email"], replacements=[], drop_rows=[]),
])
```

Several patterns in one module are a conjunction: the request is allowed only when no pattern
denies, and the obligations are the union. `render_policy` also takes ODRL's alternatives (several
permissions: the first that admits the request applies, with its obligations) and prohibitions (a
prohibition whose patterns all admit the request denies it, whatever the permissions say).
"""

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache

from policies import LIBRARY
from tessera.errors import BadRequest
from tessera.json import JSON, JSONObject

__all__ = [
    "PATTERNS",
    "Param",
    "Pattern",
    "PatternError",
    "PatternUse",
    "get_pattern",
    "render",
    "render_policy",
]

_PARAMS_BLOCK = re.compile(r"^# tessera:params\n(?P<block>.*?)^# tessera:end\n", re.M | re.S)
_CONSTANT = re.compile(r"^(?P<name>[a-z_][a-z0-9_]*) := (?P<value>.+)$", re.M)
_HEADER = "default allow := false\n\nallow if count(deny) == 0\n"
_PACKAGE = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)*$")
_EMPTY_DENY = re.compile(r"^deny := set\(\)\n\n?", re.M)
_DEFINED = re.compile(r"^(?:default\s+)?(?P<name>[a-z_][a-z0-9_]*)\b(?=\s*(?:\(|:=|=|contains\b|if\b|\{|$))", re.M)
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|`[^`]*`|#[^\n]*')
SECURITY_PROFILES = ("base", "trust", "trust_plus")
FILTER_OPS = ("eq", "neq", "lt", "lte", "gt", "gte", "in", "not_in")


class PatternError(BadRequest):
    """An unknown pattern, or parameters that do not fit it."""


# -- parameter kinds --------------------------------------------------------------------------------------

Check = Callable[[JSON], JSON]  # takes a parameter's JSON value; returns it checked, or raises ValueError


def _strings(value: JSON, *, allow_empty: bool = False) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError("must be a list of non-empty strings")
    if not value and not allow_empty:
        raise ValueError("must not be empty")
    return sorted(set(value))


def _string(value: JSON) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("must be a non-empty string")
    return value


def _integer(value: JSON) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("must be a non-negative integer")
    return value


def _positive(value: JSON) -> int:
    number = _integer(value)
    if number < 1:
        raise ValueError("must be at least 1")
    return number


def _instant(value: JSON) -> str:
    text = _string(value)
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError("must be an RFC 3339 instant with a zone, like 2027-01-01T00:00:00Z") from exc
    if not re.search(r"(Z|[+-]\d\d:\d\d)$", text):
        raise ValueError("must carry a zone (Z or ±hh:mm)")
    return text


def _choice(*choices: str) -> Check:
    def check(value: JSON) -> str:
        if not isinstance(value, str) or value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    return check


def _optional(check: Check) -> Check:
    return lambda value: None if value is None else check(value)


def _replacements(value: JSON) -> list[JSONObject]:
    if not isinstance(value, list) or not all(
        isinstance(r, dict) and set(r) == {"path", "value"} and isinstance(r["path"], str) for r in value
    ):
        raise ValueError('must be a list of {"path": ..., "value": ...}')
    return value


def _conditions(value: JSON) -> list[JSONObject]:
    if not isinstance(value, list):
        raise ValueError('must be a list of {"field": ..., "op": ..., "value": ...}')
    for c in value:
        if not isinstance(c, dict) or set(c) != {"field", "op", "value"} or not isinstance(c["field"], str):
            raise ValueError('must be a list of {"field": ..., "op": ..., "value": ...}')
        if c["op"] not in FILTER_OPS:
            raise ValueError(f"op must be one of {', '.join(FILTER_OPS)}")
        if c["op"] in ("in", "not_in") and not isinstance(c["value"], list):
            raise ValueError(f"{c['op']} needs a list value")
    return value


def _functions(value: JSON) -> list[str]:
    functions = _strings(value)
    if unknown := set(functions) - {"count", "sum", "avg", "min", "max"}:
        raise ValueError(f"unknown aggregate functions {sorted(unknown)}")
    return functions


def _dp(value: JSON) -> JSONObject:
    shape = 'must be null or {"epsilon": > 0, "bounds": {column: [lo, hi]}}'
    if not isinstance(value, dict) or not set(value) <= {"epsilon", "bounds"}:
        raise ValueError(shape)
    epsilon, bounds = value.get("epsilon"), value.get("bounds", {})
    if epsilon is not None and (isinstance(epsilon, bool) or not isinstance(epsilon, int | float) or epsilon <= 0):
        raise ValueError(shape)
    if not isinstance(bounds, dict) or not all(
        isinstance(b, list)
        and len(b) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in b)
        and b[0] <= b[1]
        for b in bounds.values()
    ):
        raise ValueError(shape)
    return value


# -- patterns ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    name: str
    check: Check
    doc: str


@dataclass(frozen=True)
class Pattern:
    """A library pattern: `usage/<name>.rego`, package `tessera.usage.<name>`, with typed parameters."""

    name: str
    params: tuple[Param, ...]
    input_fields: tuple[str, ...] = ()

    @property
    def path(self) -> str:
        return f"usage/{self.name}"

    @property
    def source(self) -> str:
        return _read(self.name)

    @property
    def tests(self) -> str:
        return (LIBRARY / "usage" / f"{self.name}_test.rego").read_text(encoding="utf-8")

    @property
    def title(self) -> str:
        return self.source.splitlines()[0].lstrip("# ").strip()

    @property
    def defaults(self) -> JSONObject:
        block = _params_block(self.source)
        return {m["name"]: json.loads(m["value"]) for m in _CONSTANT.finditer(block)}

    @property
    def rules(self) -> str:
        return self.source.split(_HEADER, 1)[1].strip("\n") + "\n"

    def resolve(self, params: JSONObject) -> JSONObject:
        """Defaults filled in and every value checked; raises PatternError naming the parameter."""
        known = {p.name: p for p in self.params}
        if unknown := sorted(set(params) - set(known)):
            raise PatternError(f"pattern {self.name} has no parameter {', '.join(unknown)} (has {', '.join(known)})")
        resolved = {**self.defaults, **params}
        for name, param in known.items():
            try:
                resolved[name] = param.check(resolved[name])
            except ValueError as exc:
                raise PatternError(f"{self.name}.{name} {exc}, got {json.dumps(resolved[name])}") from exc
        return resolved


@cache
def _read(name: str) -> str:
    return (LIBRARY / "usage" / f"{name}.rego").read_text(encoding="utf-8")


def _params_block(source: str) -> str:
    match = _PARAMS_BLOCK.search(source)
    assert match is not None, "every library pattern has a tessera:params block"
    return match.group("block")


def _p(name: str, check: Check, doc: str) -> Param:
    return Param(name, check, doc)


_PATTERN_LIST = [
    Pattern("consumer", (_p("allowed_consumers", _strings, "participant ids"),), ("caller.sub",)),
    Pattern("connector", (_p("allowed_connectors", _strings, "connector ids"),), ("connector.id",)),
    Pattern("role", (_p("required_roles", _strings, "roles, any one admits"),), ("caller.roles",)),
    Pattern("regions", (_p("allowed_regions", _strings, "region codes"),), ("caller.region",)),
    Pattern(
        "cross_border",
        (
            _p("home_jurisdiction", _string, "where the data is held"),
            _p("allowed_jurisdictions", lambda v: _strings(v, allow_empty=True), "other jurisdictions allowed"),
        ),
        ("caller.jurisdiction",),
    ),
    Pattern("purpose", (_p("allowed_purposes", _strings, "purposes"),), ("purpose",)),
    Pattern("event", (_p("allowed_events", _strings, "events"),), ("event",)),
    Pattern(
        "security_profile",
        (_p("minimum_security_profile", _choice(*SECURITY_PROFILES), "lowest profile"),),
        ("caller.security_profile",),
    ),
    Pattern(
        "time_window",
        (_p("not_before", _instant, "first instant"), _p("not_after", _instant, "end, excluded")),
        ("now",),
    ),
    Pattern("duration", (_p("max_duration_seconds", _integer, "seconds"),), ("agreement.timestamp", "now")),
    Pattern("max_uses", (_p("max_uses", _integer, "uses granted"),), ("uses",)),
    Pattern(
        "delete_after",
        (
            _p("delete_after_seconds", _optional(_integer), "seconds after receipt"),
            _p("delete_by", lambda v: "" if v in (None, "") else _instant(v), 'instant, or "" for none'),
        ),
        ("now",),
    ),
    Pattern(
        "modify_in_transit",
        (
            _p("masked_paths", lambda v: _strings(v, allow_empty=True), "names or JSON paths"),
            _p("replacements", _replacements, "path and value"),
            _p("drop_rows", _conditions, "conditions; matching rows are dropped"),
        ),
    ),
    Pattern("masked_fields", (_p("masked_fields", lambda v: _strings(v, allow_empty=True), "field names"),)),
    Pattern("log_usage", (_p("log_event", _string, "event name"),)),
    Pattern(
        "notify",
        (
            _p("notify_party", _string, "participant"),
            _p("notify_url", _optional(_string), "URL"),
            _p("notify_event", _string, "event"),
        ),
    ),
    Pattern(
        "next_policy",
        (_p("next_policy_id", _string, "policy id"), _p("next_policy_hash", _string, "sha256:<hex>")),
    ),
    Pattern("artifact_state", (_p("allowed_states", _strings, "states"),), ("artifact.state",)),
    Pattern(
        "classification",
        (
            _p("classification_level", _choice("general", "important", "core"), "level"),
            _p("important_minimum_profile", _choice(*SECURITY_PROFILES), "profile for important"),
        ),
        ("caller.sub", "caller.security_profile", "agreement.assigner", "asset.classification"),
    ),
    Pattern(
        "aggregate_only",
        (
            _p("aggregate_group_by", lambda v: _strings(v, allow_empty=True), "group-by fields"),
            _p("aggregate_functions", _functions, "functions"),
            _p("aggregate_fields", lambda v: _strings(v, allow_empty=True), "fields"),
            _p("min_group_size", _positive, "k"),
        ),
        ("request.query",),
    ),
    Pattern(
        "compute_to_data",
        (
            _p("compute_group_by", lambda v: _strings(v, allow_empty=True), "group-by columns"),
            _p("compute_aggregate_only", lambda v: _strings(v, allow_empty=True), "aggregate-only columns"),
            _p("compute_functions", _functions, "functions"),
            _p("min_group_size", _positive, "k"),
            _p("compute_dp", _optional(_dp), "noise"),
        ),
        ("request.query",),
    ),
]
PATTERNS: dict[str, Pattern] = {p.name: p for p in _PATTERN_LIST}


def get_pattern(name: str) -> Pattern:
    try:
        return PATTERNS[name]
    except KeyError:
        raise PatternError(f"no pattern {name!r} (patterns: {', '.join(sorted(PATTERNS))})") from None


@dataclass(frozen=True)
class PatternUse:
    """One pattern with its resolved parameters."""

    name: str
    params: JSONObject = field(default_factory=dict)

    @classmethod
    def of(cls, name: str, /, **params: JSON) -> "PatternUse":
        return cls(name, get_pattern(name).resolve(params))

    def resolved(self) -> "PatternUse":
        return PatternUse.of(self.name, **self.params)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PatternUse):
            return NotImplemented
        return (self.name, _canonical(self.params)) == (other.name, _canonical(other.params))

    def __hash__(self) -> int:
        return hash((self.name, _canonical(self.params)))


def _canonical(value: JSON) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# -- rendering --------------------------------------------------------------------------------------------

Prohibition = tuple[Sequence[PatternUse], str]  # (patterns, reason): a request all of them admit is denied


def render(package: str, uses: Sequence[PatternUse]) -> str:
    """One module, package `package`: the conjunction of `uses`."""
    return render_policy(package, [uses])


def render_policy(
    package: str,
    permissions: Sequence[Sequence[PatternUse]],
    prohibitions: Sequence[Prohibition] = (),
) -> str:
    """One module for ODRL-shaped rules: permissions are alternatives, prohibitions override.

    `prohibitions` holds (patterns, reason): the request is denied with `reason` when every pattern
    of a prohibition admits it.
    """
    if not _PACKAGE.match(package):
        raise PatternError(f"invalid package name {package!r}")
    if not permissions or any(not uses for uses in permissions):
        raise PatternError("a policy needs at least one permission, each with at least one pattern")
    uses_all = [[u.resolved() for u in uses] for uses in permissions]
    parts = [_summary(uses_all, prohibitions), f"package {package}\n", _HEADER, 'deny contains "" if false\n']
    if len(uses_all) == 1 and not prohibitions:
        parts += [_block(uses, "") for uses in uses_all]
        return "\n".join(parts)
    for i, uses in enumerate(uses_all, 1):
        parts.append(f"# -- permission {i} (an alternative) --\n")
        parts.append(_block(uses, f"_p{i}"))
    for j, (prohibited, _) in enumerate(prohibitions, 1):
        parts.append(f"# -- prohibition {j} (overrides every permission) --\n")
        parts.append(_block([u.resolved() for u in prohibited], f"_x{j}"))
    parts.append(_combine(len(uses_all), [reason for _, reason in prohibitions]))
    return "\n".join(parts)


def _summary(permissions: Sequence[Sequence[PatternUse]], prohibitions: Sequence[Prohibition]) -> str:
    lines = ["# Rendered by tessera from library patterns; do not edit (agreements bind this text's hash)."]
    for i, uses in enumerate(permissions, 1):
        lines.append(f"# permission {i}: {', '.join(u.name for u in uses)}")
    for j, (uses, _) in enumerate(prohibitions, 1):
        lines.append(f"# prohibition {j}: {', '.join(u.name for u in uses)}")
    return "\n".join(lines)


def _block(uses: Sequence[PatternUse], suffix: str) -> str:
    names = [u.name for u in uses]
    if len(set(names)) != len(names):
        raise PatternError(f"a pattern may appear once per rule; merge the parameters of {names}")
    chunks = []
    for use in uses:
        pattern = get_pattern(use.name)
        constants = "".join(f"{name} := {json.dumps(use.params[name])}\n" for name in sorted(use.params))
        rules = _EMPTY_DENY.sub("", pattern.rules)
        chunks.append(f"# pattern {use.name}\n{constants}\n{rules}")
    text = "\n".join(chunks)
    if suffix:
        text = _rename(text, suffix)
        text += "".join(f'\n{rule}{suffix} contains "" if false\n' for rule in ("deny", "obligations", "mask"))
    return text


def _rename(text: str, suffix: str) -> str:
    """Add `suffix` to every name the text defines at the top level (and deny/obligations/mask)."""
    code_only = _TOKENS.sub(lambda m: " " * len(m.group()), text)
    names = {m["name"] for m in _DEFINED.finditer(code_only)} - {"default", "import", "package", "else"}
    names |= {"deny", "obligations", "mask"}
    pattern = re.compile(r"(?<![\w.])(" + "|".join(sorted(names, key=len, reverse=True)) + r")\b")
    out, last = [], 0
    for token in _TOKENS.finditer(text):
        out.append(pattern.sub(lambda m: m.group(1) + suffix, text[last : token.start()]))
        out.append(token.group())
        last = token.end()
    out.append(pattern.sub(lambda m: m.group(1) + suffix, text[last:]))
    return "".join(out)


def _combine(permissions: int, reasons: list[str]) -> str:
    lines = ["# -- how the rules combine --"]
    lines += [f"tessera_permitted contains {i} if count(deny_p{i}) == 0" for i in range(1, permissions + 1)]
    lines.append("")
    for i in range(1, permissions + 1):
        prefix = f"permission {i}: " if permissions > 1 else ""
        lines.append(
            f"deny contains msg if {{\n\tcount(tessera_permitted) == 0\n\tsome reason in deny_p{i}\n"
            f'\treason != ""\n\tmsg := concat("", [{json.dumps(prefix)}, reason])\n}}\n'
        )
    for j, reason in enumerate(reasons, 1):
        lines.append(f"deny contains {json.dumps(reason)} if count(deny_x{j}) == 0\n")
    lines.append("tessera_chosen := min(tessera_permitted)\n")
    for i in range(1, permissions + 1):
        lines.append(f"obligations contains o if {{\n\ttessera_chosen == {i}\n\tsome o in obligations_p{i}\n}}\n")
        lines.append(f'mask contains f if {{\n\ttessera_chosen == {i}\n\tsome f in mask_p{i}\n\tf != ""\n}}\n')
    return "\n".join(lines)


def render_block(uses: Sequence[PatternUse], suffix: str) -> str:
    """The rules of `uses` with every top-level name (and deny, obligations, mask) ending in `suffix`."""
    return _block([u.resolved() for u in uses], suffix)
