"""A TCK-style self-test: the Dataspace TCK's scenarios, replayed against a running connector.

```
runner      discovery, one run per scenario, results
scenarios   the table (MET, CAT, CN, CN_C, TP, TP_C)
steps       what a scenario does: send, receive, check state, ask the operator
actions     the operator's actions through Tessera's management API
messages    the DSP messages the harness sends
peer        the harness's identity, callback app and inbox
schemas     the official DSP 2025-1 validator, loaded from a schema directory
command     `tessera selftest`
```
"""

from connector.selftest.peer import Participant, Peer
from connector.selftest.runner import ScenarioResult, run_all, run_scenario, select
from connector.selftest.scenarios import SCENARIOS, Scenario
from connector.selftest.schemas import Schemas, SchemaSetupError
from connector.selftest.steps import Management, Target

__all__ = [
    "SCENARIOS",
    "Management",
    "Participant",
    "Peer",
    "Scenario",
    "ScenarioResult",
    "SchemaSetupError",
    "Schemas",
    "Target",
    "run_all",
    "run_scenario",
    "select",
]
