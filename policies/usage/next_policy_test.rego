package tessera.usage.next_policy_test

import data.tessera.usage.next_policy

test_use_is_allowed_and_next_policy_is_passed_on if {
	next_policy.allow with input as {}
	next_policy.obligations == {{"kind": "next_policy", "policy": "third-party-research", "hash": "sha256:0000000000000000000000000000000000000000000000000000000000000000"}} with input as {}
}
