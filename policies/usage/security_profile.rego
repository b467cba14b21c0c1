# Security profile: the caller's verified security profile must be at least a minimum level.
package tessera.usage.security_profile

# tessera:params
# The lowest profile admitted: base < trust < trust_plus.
minimum_security_profile := "trust"

# tessera:end

default allow := false

allow if count(deny) == 0

security_profile_levels := ["base", "trust", "trust_plus"]

security_profile_rank(profile) := i if security_profile_levels[i] == profile

# The caller's profile rank; -1 when missing or unknown.
security_profile_caller_rank := rank if {
	rank := security_profile_rank(input.caller.security_profile)
} else := -1

deny contains msg if {
	security_profile_caller_rank < security_profile_rank(minimum_security_profile)
	msg := sprintf("security profile: %s below minimum %s (levels %s)", [json.marshal(object.get(input, ["caller", "security_profile"], null)), json.marshal(minimum_security_profile), json.marshal(security_profile_levels)])
}
