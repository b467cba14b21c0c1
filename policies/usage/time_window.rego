# Time window: data may be used only between two instants (RFC 3339, end excluded).
package tessera.usage.time_window

# The first instant at which use is allowed.
not_before := "2026-01-01T00:00:00Z"

# The first instant at which use is no longer allowed.
not_after := "2027-01-01T00:00:00Z"

default allow := false

allow if count(deny) == 0

deny contains "request time is missing" if not input.now

deny contains msg if {
	time.parse_rfc3339_ns(input.now) < time.parse_rfc3339_ns(not_before)
	msg := sprintf("request time %s is before the usage window opens at %s", [input.now, not_before])
}

deny contains msg if {
	time.parse_rfc3339_ns(input.now) >= time.parse_rfc3339_ns(not_after)
	msg := sprintf("request time %s is not before the usage window closes at %s", [input.now, not_after])
}
