package tessera.usage.regions_test

import data.tessera.usage.regions

test_allowed_region_is_allowed if {
	regions.allow with input as {"caller": {"region": "EU-DE"}}
}

test_other_region_is_denied if {
	regions.deny == {`region: "US-CA" not in allowed regions ["EU-DE","EU-FR","EU-NL"]`} with input as {"caller": {"region": "US-CA"}}
}

test_missing_region_is_denied if {
	regions.deny == {`region: null not in allowed regions ["EU-DE","EU-FR","EU-NL"]`} with input as {"caller": {"sub": "did:web:acme"}}
}

test_region_claim_from_the_body_is_ignored if {
	not regions.allow with input as {"region": "EU-DE", "caller": {}}
}
