# Role or membership: the caller must hold at least one of the required roles (verified claims).
package tessera.usage.role

# tessera:params
# Roles or memberships, any one of which admits the caller.
required_roles := ["researcher"]

# tessera:end

default allow := false

allow if count(deny) == 0

role_held contains role if {
	is_array(input.caller.roles)
	some role in input.caller.roles
	role in required_roles
}

deny contains msg if {
	count(role_held) == 0
	msg := sprintf("role: caller roles %s hold none of %s", [json.marshal(object.get(input, ["caller", "roles"], [])), json.marshal(required_roles)])
}
