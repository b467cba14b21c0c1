package tessera.usage.max_uses_test

import data.tessera.usage.max_uses

test_first_use_is_allowed if {
	max_uses.allow with input as {"uses": 0}
}

test_last_use_is_allowed if {
	max_uses.allow with input as {"uses": 9}
}

test_use_beyond_limit_is_denied if {
	max_uses.deny == {"uses: 10 uses consumed, limit 10"} with input as {"uses": 10}
}

test_missing_count_is_denied if {
	max_uses.deny == {"uses: use count (input.uses) is missing"} with input as {"uses": "3"}
}
