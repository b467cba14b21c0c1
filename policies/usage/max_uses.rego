# Number of uses: `input.uses` counts the uses consumed before this request.
package tessera.usage.max_uses

# tessera:params
# How many uses the agreement grants.
max_uses := 10

# tessera:end

default allow := false

allow if count(deny) == 0

deny contains "uses: use count (input.uses) is missing" if not is_number(object.get(input, "uses", null))

deny contains msg if {
	is_number(input.uses)
	input.uses >= max_uses
	msg := sprintf("uses: %d uses consumed, limit %d", [input.uses, max_uses])
}
