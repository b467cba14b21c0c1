"""The policy engine interface, and the decision convention every usage policy follows.

A usage policy is one Rego v1 module. The engine evaluates the module's package document with the
request as `input` and reads three rules from it:

* `allow` must be exactly `true` to allow; undefined, missing or non-boolean means deny.
* `deny` is a set of strings, the reasons for a denial. A request is allowed only when `allow` is true
  *and* `deny` is empty; a denial without reasons gets "no rule allowed the request".
* `mask` is a set of field names to remove from every record the caller receives.

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
from dataclasses import dataclass

from connector.errors import PolicyEvaluationError

NO_RULE_ALLOWED = "no rule allowed the request"


@dataclass(frozen=True)
class PolicyModule:
    """One Rego v1 module; `id` is the stable name the connector stores it under."""

    id: str
    source: str

    @property
    def hash(self) -> str:
        """`sha256:<hex>` of the UTF-8 source: what an agreement binds."""
        return "sha256:" + hashlib.sha256(self.source.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Decision:
    """The outcome of one usage decision. `mask` is only set on an allowed decision."""

    allow: bool
    reasons: tuple[str, ...] = ()
    mask: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"allow": self.allow, "reasons": list(self.reasons), "mask": list(self.mask)}


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

    async def decide(self, module: PolicyModule, input: dict) -> Decision:
        """Evaluate the module's package document with `input` and apply the decision convention.

        Any engine failure raises PolicyEvaluationError; callers fail closed.
        """
        raise NotImplementedError()  # pragma: no cover

    async def evaluate(
        self,
        modules: list[PolicyModule],
        query: str,
        input: object | None = None,
        data: object | None = None,
    ) -> list[dict]:
        """Run a raw query; return OPA's result rows (`[]` when the query is undefined).

        Each row is `{"expressions": [{"value": ..., "text": query, "location": {"row": 1, "col": 1}}],
        "bindings": {...}}`.
        """
        raise NotImplementedError()  # pragma: no cover

    async def aclose(self) -> None:
        return None


def decision_from_document(document: object) -> Decision:
    """Apply the decision convention to a package document (deny by default)."""
    if not isinstance(document, dict):
        return Decision(allow=False, reasons=(NO_RULE_ALLOWED,))
    reasons = _reasons(document.get("deny"))
    if document.get("allow") is not True or reasons:
        return Decision(allow=False, reasons=reasons or (NO_RULE_ALLOWED,))
    return Decision(allow=True, mask=_field_names(document.get("mask")))


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
