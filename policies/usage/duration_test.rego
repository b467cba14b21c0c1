package tessera.usage.duration_test

import data.tessera.usage.duration

agreed := {"timestamp": "2026-11-01T00:00:00Z"}

test_within_duration_is_allowed if {
	duration.allow with input as {"agreement": agreed, "now": "2026-11-30T23:59:59Z"}
}

test_after_duration_is_denied if {
	duration.deny == {`duration: 2592000 s elapsed since the agreement at "2026-11-01T00:00:00Z", limit 2592000 s`} with input as {"agreement": agreed, "now": "2026-12-01T00:00:00Z"}
}

test_before_agreement_is_denied if {
	not duration.allow with input as {"agreement": agreed, "now": "2026-10-01T00:00:00Z"}
}

test_missing_timestamp_is_denied if {
	duration.deny == {"duration: agreement time (input.agreement.timestamp) is missing"} with input as {"now": "2026-11-02T00:00:00Z"}
}
