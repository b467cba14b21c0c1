# Duration since the agreement: data may be used for a fixed time after the agreement was signed.
package tessera.usage.duration

# tessera:params
# Seconds after the agreement's timestamp during which use is allowed (end excluded).
max_duration_seconds := 2592000

# tessera:end

default allow := false

allow if count(deny) == 0

deny contains "duration: agreement time (input.agreement.timestamp) is missing" if not is_string(object.get(input, ["agreement", "timestamp"], null))

deny contains "duration: request time (input.now) is missing" if not is_string(object.get(input, "now", null))

duration_elapsed_ns := time.parse_rfc3339_ns(input.now) - time.parse_rfc3339_ns(input.agreement.timestamp)

deny contains msg if {
	duration_elapsed_ns >= max_duration_seconds * 1000000000
	msg := sprintf("duration: %d s elapsed since the agreement at %s, limit %d s", [floor(duration_elapsed_ns / 1000000000), json.marshal(input.agreement.timestamp), max_duration_seconds])
}

deny contains msg if {
	duration_elapsed_ns < 0
	msg := sprintf("duration: now %s is before the agreement at %s", [json.marshal(input.now), json.marshal(input.agreement.timestamp)])
}
