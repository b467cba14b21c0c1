"""Policy decision point: Rego usage policies behind one small engine interface.

`EmbeddedRegoEngine` (regorus, in process) is the default; `OpaServerEngine` talks to an OPA server.
The decision convention is described in `tessera.policy.base` and docs/policy-engine.md.
"""

from tessera.policy.auto import create_engine
from tessera.policy.base import Decision, Obligation, PolicyEngine, PolicyModule, QueryRow
from tessera.policy.embedded import EmbeddedRegoEngine

__all__ = [
    "Decision",
    "EmbeddedRegoEngine",
    "Obligation",
    "OpaServerEngine",
    "PolicyEngine",
    "PolicyModule",
    "QueryRow",
    "create_engine",
]


def __getattr__(name: str) -> object:
    # The OPA client pulls in aiohttp; load it only for those who use it.
    if name == "OpaServerEngine":
        from tessera.policy.opa import OpaServerEngine

        return OpaServerEngine
    raise AttributeError(name)
