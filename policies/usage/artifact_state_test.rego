package tessera.usage.artifact_state_test

import data.tessera.usage.artifact_state

test_released_is_allowed if {
	artifact_state.allow with input as {"artifact": {"state": "released"}}
}

test_withdrawn_is_denied if {
	artifact_state.deny == {`artifact state: "withdrawn" not in allowed states ["released"]`} with input as {"artifact": {"state": "withdrawn"}}
}

test_missing_state_is_denied if {
	not artifact_state.allow with input as {"artifact": {}}
}
