# Allowed purposes: the request's declared purpose must be one of a fixed list.
package tessera.usage.purpose

# The purposes this policy admits.
allowed_purposes := {"research", "statistics"}

default allow := false

allow if count(deny) == 0

deny contains msg if {
	not input.purpose in allowed_purposes
	msg := sprintf("purpose %q is not allowed (allowed: %v)", [object.get(input, "purpose", ""), sort(allowed_purposes)])
}
