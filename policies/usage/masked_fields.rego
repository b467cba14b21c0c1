# Masked fields: every use is allowed, and these fields are removed from every record.
package tessera.usage.masked_fields

# tessera:params
# The personal fields that never leave the provider.
masked_fields := ["email", "phone"]

# tessera:end

default allow := false

allow if count(deny) == 0

deny := set()

mask contains field if some field in masked_fields
