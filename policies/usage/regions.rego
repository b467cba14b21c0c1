# Location: the caller's verified region claim must be one of a fixed list.
package tessera.usage.regions

# tessera:params
# The regions (ISO 3166-2-like codes) consumers may use the data from.
allowed_regions := ["EU-DE", "EU-FR", "EU-NL"]

# tessera:end

default allow := false

allow if count(deny) == 0

deny contains msg if {
	not object.get(input, ["caller", "region"], null) in allowed_regions
	msg := sprintf("region: %s not in allowed regions %s", [json.marshal(object.get(input, ["caller", "region"], null)), json.marshal(allowed_regions)])
}
