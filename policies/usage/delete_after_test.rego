package tessera.usage.delete_after_test

import data.tessera.usage.delete_after

test_use_is_allowed_with_a_delete_obligation if {
	delete_after.allow with input as {"now": "2026-11-23T10:00:00Z"}
	delete_after.obligations == {{"kind": "delete_after", "seconds": 2592000}} with input as {}
}

test_delete_by_date_denies_from_then_on if {
	delete_after.deny == {`delete after: now "2027-01-01T00:00:00Z" is not before delete_by "2027-01-01T00:00:00Z"`} with input as {"now": "2027-01-01T00:00:00Z"} with delete_after.delete_by as "2027-01-01T00:00:00Z"
}

test_delete_by_date_is_an_obligation if {
	delete_after.obligations == {{"kind": "delete_after", "date": "2027-01-01T00:00:00Z"}} with input as {"now": "2026-01-01T00:00:00Z"} with delete_after.delete_by as "2027-01-01T00:00:00Z" with delete_after.delete_after_seconds as null
}

test_delete_by_date_needs_a_time if {
	not delete_after.allow with input as {} with delete_after.delete_by as "2027-01-01T00:00:00Z"
}
