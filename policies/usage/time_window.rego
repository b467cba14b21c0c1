# Time interval: data may be used only between two instants (RFC 3339, end excluded).
package tessera.usage.time_window

# tessera:params
# The first instant at which use is allowed.
not_before := "2026-01-01T00:00:00Z"

# The first instant at which use is no longer allowed.
not_after := "2027-01-01T00:00:00Z"

# tessera:end

default allow := false

allow if count(deny) == 0

deny contains "time interval: request time (input.now) is missing" if not is_string(object.get(input, "now", null))

deny contains msg if {
	time.parse_rfc3339_ns(input.now) < time.parse_rfc3339_ns(not_before)
	msg := sprintf("time interval: now %s is before not_before %s", [json.marshal(input.now), json.marshal(not_before)])
}

deny contains msg if {
	time.parse_rfc3339_ns(input.now) >= time.parse_rfc3339_ns(not_after)
	msg := sprintf("time interval: now %s is not before not_after %s", [json.marshal(input.now), json.marshal(not_after)])
}
