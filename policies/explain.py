"""Explain a usage decision without side effects: which constraints failed, with the values compared.

```python
explanation = await explain(engine, module, request)
explanation.decision.allow, explanation.decision.reasons
for part in explanation.patterns:          # one per library pattern in a rendered policy
    part.name, part.allow, part.reasons, part.inputs
```

Nothing is counted, logged or stored: the management API's "would this request be allowed?" and
`tessera policy explain` call this. A module rendered from library patterns (`policies.patterns`)
is also explained pattern by pattern, each with the input values it reads.
"""

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from policies.patterns import PatternError, PatternUse, get_pattern, render
from tessera.json import JSON, JSONObject
from tessera.policy.base import Decision, PolicyEngine, PolicyModule

__all__ = ["Explanation", "PatternResult", "explain", "explain_patterns", "patterns_in"]

_PATTERN_BLOCK = re.compile(r"^# pattern (?P<name>[a-z_]+)\n(?P<constants>(?:[a-z_][a-z0-9_]* := .+\n)*)", re.M)
_CONSTANT = re.compile(r"^(?P<name>[a-z_][a-z0-9_]*) := (?P<value>.+)$", re.M)


@dataclass(frozen=True)
class PatternResult:
    name: str
    params: JSONObject
    allow: bool
    reasons: tuple[str, ...]
    obligations: tuple[JSONObject, ...]
    inputs: JSONObject  # the input fields the pattern reads, as given (None when missing)


@dataclass(frozen=True)
class Explanation:
    decision: Decision
    patterns: tuple[PatternResult, ...] = ()
    document: JSONObject = field(default_factory=dict)  # the package's rule values, for the curious

    def to_dict(self) -> JSONObject:
        return {
            **self.decision.to_dict(),
            "patterns": [
                {
                    "pattern": p.name,
                    "allow": p.allow,
                    "reasons": list(p.reasons),
                    "obligations": list(p.obligations),
                    "inputs": p.inputs,
                    "params": p.params,
                }
                for p in self.patterns
            ],
        }


async def explain(
    engine: PolicyEngine, modules: PolicyModule | Sequence[PolicyModule], input: JSONObject
) -> Explanation:
    """The decision for `input`, and for a rendered policy each pattern's own decision.

    With several modules (a compiled agreement and the Rego module it binds) the decision is theirs
    together (`PolicyEngine.decide_all`: all must allow), as the data plane decides.
    """
    together = [modules] if isinstance(modules, PolicyModule) else list(modules)
    decision = await engine.decide_all(together, input)
    return Explanation(decision, await explain_patterns(engine, together, input))


async def explain_patterns(
    engine: PolicyEngine, modules: Sequence[PolicyModule], input: JSONObject
) -> tuple[PatternResult, ...]:
    """Each library pattern's own decision, for the modules rendered from patterns (none for hand-written
    ones): what explains a decision taken elsewhere (the connector's data plane path)."""
    results = []
    for module in modules:
        results.extend(await _patterns(engine, module, input))
    return tuple(results)


async def _patterns(engine: PolicyEngine, module: PolicyModule, input: JSONObject) -> list[PatternResult]:
    results = []
    for use in patterns_in(module.source):
        alone = PolicyModule(f"{module.id}#{use.name}", render(f"tessera.explain.{use.name}", [use]))
        part = await engine.decide(alone, input)
        inputs = {path: value_at(input, path) for path in get_pattern(use.name).input_fields}
        obligations = tuple(o.to_dict() for o in part.obligations)
        results.append(PatternResult(use.name, use.params, part.allow, part.reasons, obligations, inputs))
    return results


def patterns_in(source: str) -> list[PatternUse]:
    """The library patterns a module was rendered from (empty for a hand-written module).

    Only single-permission renderings are split up; alternatives are explained as a whole.
    """
    if "# -- permission" in source:
        return []
    uses = []
    for block in _PATTERN_BLOCK.finditer(source):
        params = {m["name"]: json.loads(m["value"]) for m in _CONSTANT.finditer(block["constants"])}
        try:
            uses.append(PatternUse.of(block["name"], **params))
        except PatternError:
            return []
    return uses


def value_at(document: JSON, path: str) -> JSON:
    """The value at a dotted `path` (`caller.region`) of a JSON document; None where it has none."""
    for part in path.split("."):
        if not isinstance(document, dict):
            return None
        document = document.get(part)
    return document
