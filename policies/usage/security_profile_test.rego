package tessera.usage.security_profile_test

import data.tessera.usage.security_profile

test_minimum_profile_is_allowed if {
	security_profile.allow with input as {"caller": {"security_profile": "trust"}}
}

test_higher_profile_is_allowed if {
	security_profile.allow with input as {"caller": {"security_profile": "trust_plus"}}
}

test_lower_profile_is_denied if {
	security_profile.deny == {`security profile: "base" below minimum "trust" (levels ["base","trust","trust_plus"])`} with input as {"caller": {"security_profile": "base"}}
}

test_unknown_profile_is_denied if {
	not security_profile.allow with input as {"caller": {"security_profile": "gold"}}
}

test_missing_profile_is_denied if {
	not security_profile.allow with input as {"caller": {}}
}
