# Delete after a delay or a date: the consumer's connector deletes its copy and reports it.
package tessera.usage.delete_after

# tessera:params
# Seconds after receipt at which the copy must be deleted, or null.
delete_after_seconds := 2592000

# An RFC 3339 instant by which the copy must be deleted, or "" for none; use is denied from then on.
delete_by := ""

# tessera:end

default allow := false

allow if count(deny) == 0

deny contains msg if {
	delete_by != ""
	not is_string(object.get(input, "now", null))
	msg := "delete after: request time (input.now) is missing"
}

deny contains msg if {
	delete_by != ""
	time.parse_rfc3339_ns(input.now) >= time.parse_rfc3339_ns(delete_by)
	msg := sprintf("delete after: now %s is not before delete_by %s", [json.marshal(input.now), json.marshal(delete_by)])
}

obligations contains {"kind": "delete_after", "seconds": delete_after_seconds} if is_number(delete_after_seconds)

obligations contains {"kind": "delete_after", "date": delete_by} if delete_by != ""
