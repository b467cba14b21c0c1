# Allowed consumer regions: the caller's verified region claim must be in a fixed list.
package tessera.usage.regions

# The regions (ISO 3166-2-like codes) consumers may use the data from.
allowed_regions := {"EU-DE", "EU-FR", "EU-NL"}

default allow := false

allow if count(deny) == 0

deny contains msg if {
	not input.caller.region in allowed_regions
	msg := sprintf("consumer region %q is not allowed (allowed: %v)", [object.get(input, ["caller", "region"], ""), sort(allowed_regions)])
}
