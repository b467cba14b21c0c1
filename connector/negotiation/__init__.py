"""Contract negotiation, both roles, as the DSP 2025-1 state machine.

`process` holds the record and the state rules, `provider` and `consumer` the two roles' message
handlers, `agents` the decisions each side's agent takes (accept, counter, terminate, wait).
"""

from connector.negotiation.process import Negotiation

__all__ = ["Negotiation"]
