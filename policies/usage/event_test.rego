package tessera.usage.event_test

import data.tessera.usage.event

test_during_event_is_allowed if {
	event.allow with input as {"event": "incident-response"}
}

test_other_event_is_denied if {
	event.deny == {`event: "fair" not in allowed events ["incident-response"]`} with input as {"event": "fair"}
}

test_no_event_is_denied if {
	event.deny == {`event: null not in allowed events ["incident-response"]`} with input as {}
}
