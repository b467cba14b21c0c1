"""Transfer processes, both roles, as the DSP 2025-1 state machine: HTTP pull and HTTP push.

`process` holds the record and the state rules, `provider` and `consumer` the two roles' handlers,
`tokens` the data-plane tokens a connector issues and checks for one transfer.
"""

from connector.transfer.process import Transfer

__all__ = ["Transfer"]
