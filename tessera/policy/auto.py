"""Choose a policy engine by name: `embedded` (regorus, in process) or `opa` (an OPA server)."""

from tessera.errors import BadRequest
from tessera.policy.base import PolicyEngine

ENGINE_KINDS = ("embedded", "opa")


def create_engine(kind: str = "embedded", *, opa_url: str | None = None) -> PolicyEngine:
    if kind == "embedded":
        from tessera.policy.embedded import EmbeddedRegoEngine

        return EmbeddedRegoEngine()
    if kind == "opa":
        if not opa_url:
            raise BadRequest("the opa policy engine needs an OPA server URL (opa_url)")
        from tessera.policy.opa import OpaServerEngine

        return OpaServerEngine(opa_url)
    raise BadRequest(f"unknown policy engine {kind!r} (choose from {', '.join(ENGINE_KINDS)})")
