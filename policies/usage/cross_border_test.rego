package tessera.usage.cross_border_test

import data.tessera.usage.cross_border

test_home_jurisdiction_is_allowed if {
	cross_border.allow with input as {"caller": {"jurisdiction": "EU"}}
}

test_allowed_jurisdiction_is_allowed if {
	cross_border.allow with input as {"caller": {"jurisdiction": "CH"}}
}

test_other_jurisdiction_is_denied if {
	cross_border.deny == {`jurisdiction: "US" is neither home "EU" nor in allowed jurisdictions ["CH","UK"]`} with input as {"caller": {"jurisdiction": "US"}}
}

test_missing_jurisdiction_is_denied if {
	not cross_border.allow with input as {"caller": {"region": "EU-DE"}}
}
