# Data consumer: only named participants (the verified token subject) may use the data.
package tessera.usage.consumer

# tessera:params
# Participant ids allowed to use the data.
allowed_consumers := ["did:web:consumer.example"]

# tessera:end

default allow := false

allow if count(deny) == 0

deny contains msg if {
	not object.get(input, ["caller", "sub"], null) in allowed_consumers
	msg := sprintf("consumer: %s not in allowed consumers %s", [json.marshal(object.get(input, ["caller", "sub"], null)), json.marshal(allowed_consumers)])
}
