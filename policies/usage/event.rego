# Event: use is allowed only while one of the named events is in progress (`input.event`).
package tessera.usage.event

# tessera:params
# Events (e.g. declared by the provider) during which the data may be used.
allowed_events := ["incident-response"]

# tessera:end

default allow := false

allow if count(deny) == 0

deny contains msg if {
	not object.get(input, "event", null) in allowed_events
	msg := sprintf("event: %s not in allowed events %s", [json.marshal(object.get(input, "event", null)), json.marshal(allowed_events)])
}
