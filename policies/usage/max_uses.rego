# Maximum number of uses: `input.uses` counts the uses consumed before this request.
package tessera.usage.max_uses

# How many uses the agreement grants.
max_uses := 10

default allow := false

allow if count(deny) == 0

deny contains "use count is missing" if not is_number(input.uses)

deny contains msg if {
	is_number(input.uses)
	input.uses >= max_uses
	msg := sprintf("use limit reached: %d of %d uses consumed", [input.uses, max_uses])
}
