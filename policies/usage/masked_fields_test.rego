package tessera.usage.masked_fields_test

import data.tessera.usage.masked_fields

test_use_is_allowed if {
	masked_fields.allow with input as {"purpose": "research"}
}

test_personal_fields_are_masked if {
	masked_fields.mask == {"email", "phone"} with input as {"purpose": "research"}
}
