# Compute-to-data: the consumer sends SQL, the provider runs it, and only aggregates of groups of at least
# k records leave (`input.request.query` is the query as the connector's dialect parsed it). The `compute`
# obligation tells the data plane how to run it: which columns it may group by, which it may only
# aggregate, the functions, k, and differential privacy (`dp`: a default ε and clamping bounds).
package tessera.usage.compute_to_data

# tessera:params
# Columns the consumer may group by and filter on.
compute_group_by := ["region"]

# Columns the consumer may only read inside an aggregate.
compute_aggregate_only := ["age"]

# Aggregate functions the consumer may use: count, sum, avg, min, max.
compute_functions := ["avg", "count", "sum"]

# The smallest group an answer may contain (k).
min_group_size := 5

# Noise: null (none; differencing protection applies) or {"epsilon": default ε, "bounds": {column: [lo, hi]}}.
compute_dp := null

# tessera:end

default allow := false

allow if count(deny) == 0

compute_query := q if {
	q := object.get(input, ["request", "query"], null)
	is_object(q)
} else := {}

compute_readable := {c | some c in compute_group_by} | {c | some c in compute_aggregate_only}

deny contains "compute: raw access is not allowed; send a query (input.request.query)" if {
	not is_array(object.get(compute_query, "tables", null))
}

deny contains "compute: the query selects columns outside an aggregate that it does not group by (raw rows never leave)" if {
	object.get(compute_query, "raw", true) != false
	is_array(object.get(compute_query, "tables", null))
}

deny contains msg if {
	some column in object.get(compute_query, "columns", [])
	not column in compute_readable
	msg := sprintf("compute: column %s may not be read; allowed %s", [json.marshal(column), json.marshal(sort(compute_readable))])
}

deny contains msg if {
	some column in object.get(compute_query, "group_by", [])
	not column in compute_group_by
	msg := sprintf("compute: group_by %s not in allowed %s", [json.marshal(column), json.marshal(compute_group_by)])
}

deny contains msg if {
	some aggregate in object.get(compute_query, "aggregates", [])
	fn := object.get(aggregate, "fn", null)
	not fn in compute_functions
	msg := sprintf("compute: function %s not in allowed %s", [json.marshal(fn), json.marshal(compute_functions)])
}

deny contains msg if {
	some filter in object.get(compute_query, "filters", [])
	column := object.get(filter, "column", null)
	not column in compute_group_by
	msg := sprintf("compute: filter on %s not allowed; filter on %s", [json.marshal(column), json.marshal(compute_group_by)])
}

obligations contains {
	"kind": "compute",
	"group_by": compute_group_by,
	"aggregate_only": compute_aggregate_only,
	"functions": compute_functions,
	"min_group_size": min_group_size,
	"dp": compute_dp,
}
