# Purpose: the request's declared purpose must be one of a fixed list.
package tessera.usage.purpose

# tessera:params
# The purposes this policy admits.
allowed_purposes := ["research", "statistics"]

# tessera:end

default allow := false

allow if count(deny) == 0

deny contains msg if {
	not object.get(input, "purpose", null) in allowed_purposes
	msg := sprintf("purpose: %s not in allowed purposes %s", [json.marshal(object.get(input, "purpose", null)), json.marshal(allowed_purposes)])
}
