package tessera.usage.purpose_test

import data.tessera.usage.purpose

test_allowed_purpose_is_allowed if {
	purpose.allow with input as {"purpose": "research"}
}

test_other_purpose_is_denied if {
	not purpose.allow with input as {"purpose": "marketing"}
	purpose.deny == {`purpose: "marketing" not in allowed purposes ["research","statistics"]`} with input as {"purpose": "marketing"}
}

test_missing_purpose_is_denied if {
	purpose.deny == {`purpose: null not in allowed purposes ["research","statistics"]`} with input as {}
}

test_purpose_is_case_sensitive if {
	not purpose.allow with input as {"purpose": "Research"}
}

test_mocked_parameter if {
	purpose.allow with input as {"purpose": "marketing"} with purpose.allowed_purposes as ["marketing"]
}
