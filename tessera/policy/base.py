"""The policy engine interface, and the decision convention every usage policy follows.

A usage policy is one Rego v1 module. The engine evaluates the module's package document with the
request as `input` and reads three rules from it:

* `allow` must be exactly `true` to allow; undefined, missing or non-boolean means deny.
* `deny` is a set of strings, the reasons for a denial. A request is allowed only when `allow` is true
  *and* `deny` is empty; a denial without reasons gets "no rule allowed the request".
* `mask` is a set of field names to remove from every record the caller receives.
* `obligations` is a set of objects `{"kind": ..., ...params}` the data plane must carry out on an
  allowed request (mask, replace, filter_rows, aggregate, log, notify, delete_after, next_policy;
  see `tessera.policy.obligations`). Kinds we do not know are passed through: whoever executes
  the decision fails closed on a kind it cannot carry out.

```rego
package tessera.usage.example

default allow := false

allow if count(deny) == 0

deny contains msg if {
    input.purpose != "research"
    msg := sprintf("purpose %q is not allowed", [input.purpose])
}

mask contains "email"
```
"""

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import TypedDict

from tessera.errors import PolicyEvaluationError
from tessera.json import JSON, JSONObject

NO_RULE_ALLOWED = "no rule allowed the request"


@dataclass(frozen=True)
class PolicyModule:
    """One Rego v1 module; `id` is the stable name the connector stores it under."""

    id: str
    source: str

    @cached_property  # read on every decision, to find the compiled engine
    def hash(self) -> str:
        """`sha256:<hex>` of the UTF-8 source: what an agreement binds."""
        return "sha256:" + hashlib.sha256(self.source.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Obligation:
    """Something the connector must do for an allowed request: `Obligation("mask", {"fields": ["email"]})`."""

    kind: str
    params: JSONObject = field(default_factory=dict)

    def __hash__(self) -> int:
        return hash(self.key)

    @cached_property  # params are never changed once the obligation is made
    def key(self) -> str:
        """A canonical JSON text, used to order and deduplicate obligations."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def to_dict(self) -> JSONObject:
        return {"kind": self.kind, **self.params}


class DecisionDict(TypedDict):
    """A decision as the management API and `tessera policy explain --json` show it."""

    allow: bool
    reasons: list[str]
    obligations: list[JSONObject]
    mask: list[str]


class Decision:
    """The outcome of one usage decision. Obligations are only set on an allowed decision.

    `Decision(allow=True, mask=("email",))` is kept for callers of the first interface: it is the
    same as one `mask` obligation, and `decision.mask` reads the fields of every mask obligation.
    """

    __slots__ = ("allow", "obligations", "reasons")

    allow: bool
    reasons: tuple[str, ...]
    obligations: tuple[Obligation, ...]

    def __init__(
        self,
        allow: bool,
        reasons: Iterable[str] = (),
        obligations: Iterable[Obligation] = (),
        *,
        mask: Iterable[str] = (),
    ) -> None:
        if fields := sorted(set(mask)) if mask else None:
            obligations = (Obligation("mask", {"fields": fields}), *obligations)
        object.__setattr__(self, "allow", allow)
        object.__setattr__(self, "reasons", tuple(reasons))
        object.__setattr__(self, "obligations", _ordered(tuple(obligations)))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Decision is immutable")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Decision):
            return NotImplemented
        return (self.allow, self.reasons, self.obligations) == (other.allow, other.reasons, other.obligations)

    def __hash__(self) -> int:
        return hash((self.allow, self.reasons, self.obligations))

    def __repr__(self) -> str:
        return f"Decision(allow={self.allow!r}, reasons={self.reasons!r}, obligations={self.obligations!r})"

    @property
    def mask(self) -> tuple[str, ...]:
        """The fields (names or JSON paths) of every `mask` obligation, sorted."""
        fields = {f for o in self.obligations if o.kind == "mask" for f in o.params.get("fields", ())}
        return tuple(sorted(fields))

    def of_kind(self, kind: str) -> tuple[Obligation, ...]:
        return tuple(o for o in self.obligations if o.kind == kind)

    def to_dict(self) -> DecisionDict:
        return {
            "allow": self.allow,
            "reasons": list(self.reasons),
            "obligations": [o.to_dict() for o in self.obligations],
            "mask": list(self.mask),
        }


class Location(TypedDict):
    row: int
    col: int


class Expression(TypedDict):
    value: JSON
    text: str
    location: Location


class QueryRow(TypedDict):
    """One result of a raw query, in the shape of OPA's query API."""

    expressions: list[Expression]
    bindings: JSONObject


class PolicyEngine:
    """Base class of the policy engines; one module per implementation.

    ```python
    engine = create_engine("embedded")
    module = PolicyModule(id="research", source=source)
    decision = await engine.decide(module, {"purpose": "research", "uses": 0})
    if not decision.allow:
        raise NotEntitled("denied", reasons=list(decision.reasons))
    ```
    """

    async def compile(self, source: str) -> str:
        """Check a module and return its package path, like `data.tessera.usage.research`.

        Raises PolicyCompileError, with line and column, when the module does not compile.
        """
        raise NotImplementedError()  # pragma: no cover

    async def decide(self, module: PolicyModule, input: JSONObject) -> Decision:
        """Evaluate the module's package document with `input` and apply the decision convention.

        Any engine failure raises PolicyEvaluationError; callers fail closed.
        """
        raise NotImplementedError()  # pragma: no cover

    async def decide_all(self, modules: Sequence[PolicyModule], input: JSONObject) -> Decision:
        """Decide several modules on one input; allowed only when every one allows (`combine`).

        Engines evaluate them together (the embedded engine loads them into one engine and evaluates
        once; OPA answers one query); this fallback decides them one by one.
        """
        return combine([await self.decide(module, input) for module in modules])

    async def evaluate(
        self, modules: list[PolicyModule], query: str, input: JSON = None, data: JSON = None
    ) -> list[QueryRow]:
        """Run a raw query with `input` (and `data`, a JSON object); return its rows (`[]` when undefined).

        Each row is `{"expressions": [{"value": ..., "text": query, "location": {"row": 1, "col": 1}}],
        "bindings": {...}}`.
        """
        raise NotImplementedError()  # pragma: no cover

    async def aclose(self) -> None:
        return None


def combine(decisions: Sequence[Decision]) -> Decision:
    """Every decision must allow: the reasons of all that deny, in order; else the union of obligations."""
    if not decisions:
        return Decision(allow=False, reasons=(NO_RULE_ALLOWED,))
    denying = [d for d in decisions if not d.allow]
    # One decision that says it all is returned as it is: a decision is made on every use.
    if not denying:
        obliging = [d for d in decisions if d.obligations]
        if len(obliging) < 2:
            return (obliging or decisions)[0]
        return Decision(allow=True, obligations=[o for d in obliging for o in d.obligations])
    if len(denying) == 1:
        return denying[0]
    return Decision(allow=False, reasons=dict.fromkeys(r for d in denying for r in d.reasons))


def packages_apart(packages: Sequence[str]) -> str | None:
    """Why modules evaluated together would read each other's rules (one package inside another), or None."""
    for i, outer in enumerate(packages):
        for inner in packages[i + 1 :]:
            if outer == inner or inner.startswith(outer + ".") or outer.startswith(inner + "."):
                return f"modules with packages {outer} and {inner} cannot be decided together"
    return None


def decision_from_document(document: object) -> Decision:
    """Apply the decision convention to a package document (deny by default)."""
    if not isinstance(document, dict):
        return Decision(allow=False, reasons=(NO_RULE_ALLOWED,))
    reasons = _reasons(document.get("deny"))
    if document.get("allow") is not True or reasons:
        return Decision(allow=False, reasons=reasons or (NO_RULE_ALLOWED,))
    obligations = document.get("obligations")
    found = _obligations(obligations) if obligations is not None else ()
    if fields := _field_names(document.get("mask")):
        found = (_mask(fields), *found)
    return Decision(allow=True, obligations=found)


@lru_cache(maxsize=256)
def _mask(fields: tuple[str, ...]) -> Obligation:
    """The mask obligation for `fields`, made once: most decisions of a policy mask the same fields."""
    return Obligation("mask", {"fields": list(fields)})


def _obligations(value: object) -> tuple[Obligation, ...]:
    if not isinstance(value, (set, frozenset, list, tuple)):
        raise PolicyEvaluationError(f"obligations must be a set of objects, got {_text(value)}")
    found = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("kind"), str) or not item["kind"]:
            # An obligation we cannot even name cannot be carried out: fail closed.
            raise PolicyEvaluationError(f"an obligation must be an object with a kind, got {_text(item)}")
        found.append(Obligation(item["kind"], {k: v for k, v in item.items() if k != "kind"}))
    return tuple(found)


def _ordered(obligations: tuple[Obligation, ...]) -> tuple[Obligation, ...]:
    if len(obligations) < 2:
        return obligations  # nothing to order: no key to compute (a decision is made on every use)
    unique = {o.key: o for o in obligations}
    return tuple(sorted(unique.values(), key=lambda o: (o.kind, o.key)))


def _reasons(deny: object) -> tuple[str, ...]:
    if deny is None or deny is False:
        return ()
    if isinstance(deny, (set, frozenset, list, tuple)):
        return tuple(sorted({_text(reason) for reason in deny}))
    # A `deny` that is not a set still denies: fail closed.
    return (f"deny is {_text(deny)}",)


def _field_names(mask: object) -> tuple[str, ...]:
    if mask is None:
        return ()
    if isinstance(mask, (set, frozenset, list, tuple)) and all(isinstance(f, str) for f in mask):
        return tuple(sorted(set(mask)))
    # We cannot tell which fields to hide, so we must not release any.
    raise PolicyEvaluationError(f"mask must be a set of field names, got {_text(mask)}")


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(_jsonable(value), sort_keys=True)


def _jsonable(value: object) -> object:
    if isinstance(value, (set, frozenset)):
        return sorted((_jsonable(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value
