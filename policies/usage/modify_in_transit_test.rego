package tessera.usage.modify_in_transit_test

import data.tessera.usage.modify_in_transit

test_use_is_allowed if {
	modify_in_transit.allow with input as {}
}

test_every_modification_is_an_obligation if {
	modify_in_transit.obligations == {
		{"kind": "mask", "fields": ["email"]},
		{"kind": "replace", "path": "$.address.street", "value": "***"},
		{"kind": "filter_rows", "field": "consent", "op": "neq", "value": "yes"},
	} with input as {}
}

test_nothing_to_modify_means_no_obligations if {
	count(modify_in_transit.obligations) == 0 with modify_in_transit.masked_paths as [] with modify_in_transit.replacements as [] with modify_in_transit.drop_rows as []
}
