# Modify in transit: mask or replace fields (names or JSON paths) and drop rows before data leaves.
package tessera.usage.modify_in_transit

# tessera:params
# Fields removed from every record: names (`email`) or JSON paths (`$.address.street`).
masked_paths := ["email"]

# Fields whose value is replaced: [{"path": ..., "value": ...}].
replacements := [{"path": "$.address.street", "value": "***"}]

# Rows dropped when a condition holds: [{"field": ..., "op": eq|neq|lt|lte|gt|gte|in|not_in, "value": ...}].
drop_rows := [{"field": "consent", "op": "neq", "value": "yes"}]

# tessera:end

default allow := false

allow if count(deny) == 0

deny := set()

obligations contains {"kind": "mask", "fields": masked_paths} if count(masked_paths) > 0

obligations contains {"kind": "replace", "path": r.path, "value": r.value} if some r in replacements

obligations contains {"kind": "filter_rows", "field": c.field, "op": c.op, "value": c.value} if some c in drop_rows
