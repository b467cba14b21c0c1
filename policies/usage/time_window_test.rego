package tessera.usage.time_window_test

import data.tessera.usage.time_window

test_inside_window_is_allowed if {
	time_window.allow with input as {"now": "2026-11-23T10:00:00Z"}
}

test_offset_timestamps_are_compared_as_instants if {
	time_window.allow with input as {"now": "2027-01-01T00:30:00+01:00"}
}

test_before_window_is_denied if {
	time_window.deny == {`time interval: now "2025-12-31T23:59:59Z" is before not_before "2026-01-01T00:00:00Z"`} with input as {"now": "2025-12-31T23:59:59Z"}
}

test_window_end_is_excluded if {
	time_window.deny == {`time interval: now "2027-01-01T00:00:00Z" is not before not_after "2027-01-01T00:00:00Z"`} with input as {"now": "2027-01-01T00:00:00Z"}
}

test_missing_time_is_denied if {
	time_window.deny == {"time interval: request time (input.now) is missing"} with input as {}
}
