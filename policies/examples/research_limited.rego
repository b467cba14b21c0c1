# Research only, at most 3 uses, without the consumer ever seeing e-mail addresses.
# This is the policy the quickstart uploads; it follows Tessera's decision convention
# (docs/policy-engine.md): allow must be true and deny empty; mask names fields to remove.
package tessera.usage.research_limited

# The only purpose this data may be used for.
allowed_purpose := "research"

# How many uses the agreement grants; `input.uses` counts those already consumed.
max_uses := 3

# Personal columns removed from every record.
masked_fields := {"email"}

default allow := false

allow if count(deny) == 0

deny contains msg if {
	object.get(input, "purpose", "") != allowed_purpose
	msg := sprintf("purpose %s is not allowed (allowed: %s)", [json.marshal(object.get(input, "purpose", "")), json.marshal(allowed_purpose)])
}

deny contains "use count is missing" if not is_number(object.get(input, "uses", null))

deny contains msg if {
	is_number(input.uses)
	input.uses >= max_uses
	msg := sprintf("use limit reached: %d of %d uses consumed", [input.uses, max_uses])
}

mask contains field if some field in masked_fields
