# Cross-border: data may leave its home jurisdiction only for the allowed jurisdictions.
package tessera.usage.cross_border

# tessera:params
# Where the data is held (the provider's jurisdiction).
home_jurisdiction := "EU"

# Other jurisdictions the data may be used in (e.g. those with an adequacy decision).
allowed_jurisdictions := ["CH", "UK"]

# tessera:end

default allow := false

allow if count(deny) == 0

cross_border_ok if input.caller.jurisdiction == home_jurisdiction

cross_border_ok if input.caller.jurisdiction in allowed_jurisdictions

deny contains msg if {
	not cross_border_ok
	msg := sprintf("jurisdiction: %s is neither home %s nor in allowed jurisdictions %s", [json.marshal(object.get(input, ["caller", "jurisdiction"], null)), json.marshal(home_jurisdiction), json.marshal(allowed_jurisdictions)])
}
