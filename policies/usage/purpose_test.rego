package tessera.usage.purpose_test

import data.tessera.usage.purpose

test_allowed_purpose_is_allowed if {
	purpose.allow with input as {"purpose": "research"}
}

test_other_purpose_is_denied if {
	not purpose.allow with input as {"purpose": "marketing"}
	purpose.deny == {`purpose "marketing" is not allowed (allowed: ["research", "statistics"])`} with input as {"purpose": "marketing"}
}

test_missing_purpose_is_denied if {
	not purpose.allow with input as {}
	count(purpose.deny) == 1 with input as {}
}
