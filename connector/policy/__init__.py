"""Policy decision point: Rego usage policies behind one small engine interface.

`EmbeddedRegoEngine` (regorus, in process) is the default; `OpaServerEngine` talks to an OPA server.
The decision convention is described in `connector.policy.base` and docs/policy-engine.md.
"""

from connector.policy.auto import create_engine
from connector.policy.base import Decision, Obligation, PolicyEngine, PolicyModule
from connector.policy.embedded import EmbeddedRegoEngine
from connector.policy.opa import OpaServerEngine

__all__ = [
    "Decision",
    "EmbeddedRegoEngine",
    "Obligation",
    "OpaServerEngine",
    "PolicyEngine",
    "PolicyModule",
    "create_engine",
]
