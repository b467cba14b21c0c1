# Artifact state: the data may be used only while the artifact is in one of the allowed states.
package tessera.usage.artifact_state

# tessera:params
# Artifact states that admit use (e.g. released, not draft or withdrawn).
allowed_states := ["released"]

# tessera:end

default allow := false

allow if count(deny) == 0

deny contains msg if {
	not object.get(input, ["artifact", "state"], null) in allowed_states
	msg := sprintf("artifact state: %s not in allowed states %s", [json.marshal(object.get(input, ["artifact", "state"], null)), json.marshal(allowed_states)])
}
