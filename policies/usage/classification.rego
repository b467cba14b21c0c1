# Data classification: general data may be used; important data needs a minimum security profile;
# core data never leaves the provider (only the provider itself may use it).
package tessera.usage.classification

# tessera:params
# The data's level: general, important or core. A stricter `input.asset.classification` wins.
classification_level := "important"

# The lowest security profile admitted for important data: base < trust < trust_plus.
important_minimum_profile := "trust"

# tessera:end

default allow := false

allow if count(deny) == 0

classification_levels := ["general", "important", "core"]

classification_profiles := ["base", "trust", "trust_plus"]

classification_rank(level) := i if classification_levels[i] == level

classification_profile_rank(profile) := i if classification_profiles[i] == profile

# The caller's profile rank; -1 when missing or unknown.
classification_caller_rank := rank if {
	rank := classification_profile_rank(input.caller.security_profile)
} else := -1

# The stricter of the policy's level and the asset's own label (an unknown label counts as core).
classification_effective := classification_levels[max({classification_rank(classification_level), classification_asset_rank})]

classification_asset_rank := classification_rank(input.asset.classification) if is_string(input.asset.classification)

else := 2 if input.asset.classification

else := 0

deny contains msg if {
	classification_effective == "core"
	# A missing assigner must deny too: compare through object.get (undefined would admit).
	object.get(input, ["caller", "sub"], null) != object.get(input, ["agreement", "assigner"], null)
	msg := sprintf("classification: core data never leaves the provider %s (caller %s)", [json.marshal(object.get(input, ["agreement", "assigner"], null)), json.marshal(object.get(input, ["caller", "sub"], null))])
}

deny contains msg if {
	classification_effective == "core"
	not input.caller.sub
	msg := "classification: core data never leaves the provider (caller unknown)"
}

deny contains msg if {
	classification_effective == "important"
	classification_caller_rank < classification_profile_rank(important_minimum_profile)
	msg := sprintf("classification: important data needs security profile %s, caller has %s", [json.marshal(important_minimum_profile), json.marshal(object.get(input, ["caller", "security_profile"], null))])
}
