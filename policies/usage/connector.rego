# Connector: only named connectors (the connector the request came through) may use the data.
package tessera.usage.connector

# tessera:params
# Connector ids allowed to pull the data.
allowed_connectors := ["https://consumer.example/connector"]

# tessera:end

default allow := false

allow if count(deny) == 0

deny contains msg if {
	not object.get(input, ["connector", "id"], null) in allowed_connectors
	msg := sprintf("connector: %s not in allowed connectors %s", [json.marshal(object.get(input, ["connector", "id"], null)), json.marshal(allowed_connectors)])
}
