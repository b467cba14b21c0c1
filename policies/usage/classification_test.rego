package tessera.usage.classification_test

import data.tessera.usage.classification

provider_agreement := {"assigner": "did:web:provider", "assignee": "did:web:consumer"}

test_important_data_with_enough_profile_is_allowed if {
	classification.allow with input as {"caller": {"sub": "did:web:consumer", "security_profile": "trust"}, "agreement": provider_agreement}
}

test_important_data_below_profile_is_denied if {
	classification.deny == {`classification: important data needs security profile "trust", caller has "base"`} with input as {"caller": {"sub": "did:web:consumer", "security_profile": "base"}, "agreement": provider_agreement}
}

test_general_data_is_allowed_for_anyone if {
	classification.allow with input as {"caller": {"security_profile": "base"}} with classification.classification_level as "general"
}

test_core_data_never_leaves_the_provider if {
	classification.deny == {`classification: core data never leaves the provider "did:web:provider" (caller "did:web:consumer")`} with input as {"caller": {"sub": "did:web:consumer", "security_profile": "trust_plus"}, "agreement": provider_agreement} with classification.classification_level as "core"
}

test_core_data_without_a_known_provider_is_denied if {
	not classification.allow with input as {"caller": {"sub": "did:web:consumer", "security_profile": "trust_plus"}} with classification.classification_level as "core"
}

test_core_data_is_usable_by_the_provider_itself if {
	classification.allow with input as {"caller": {"sub": "did:web:provider"}, "agreement": provider_agreement} with classification.classification_level as "core"
}

test_a_stricter_asset_label_wins if {
	not classification.allow with input as {"caller": {"sub": "did:web:consumer", "security_profile": "trust_plus"}, "agreement": provider_agreement, "asset": {"classification": "core"}}
}

test_an_unknown_asset_label_counts_as_core if {
	not classification.allow with input as {"caller": {"sub": "did:web:consumer", "security_profile": "trust_plus"}, "agreement": provider_agreement, "asset": {"classification": "secret"}}
}

test_a_laxer_asset_label_does_not_weaken_the_policy if {
	not classification.allow with input as {"caller": {"sub": "did:web:consumer", "security_profile": "base"}, "agreement": provider_agreement, "asset": {"classification": "general"}}
}
