package tessera.usage.log_usage_test

import data.tessera.usage.log_usage

test_use_is_allowed_and_logged if {
	log_usage.allow with input as {}
	log_usage.obligations == {{"kind": "log", "event": "use"}} with input as {}
}
