# Aggregate-only access ("usable but not visible"): the consumer may run only the aggregate queries
# allowed here (`input.request.query`), every group must cover at least k records, and raw rows never
# leave the provider. The `aggregate` obligation tells the data plane to run the query, not to stream.
package tessera.usage.aggregate_only

# tessera:params
# Fields the consumer may group by.
aggregate_group_by := ["region"]

# Aggregate functions the consumer may use: count, sum, avg, min, max.
aggregate_functions := ["avg", "count"]

# Fields the functions may read (count without a field counts records).
aggregate_fields := ["age"]

# The smallest group the result may contain (k).
min_group_size := 5

# tessera:end

default allow := false

allow if count(deny) == 0

aggregate_query := input.request.query

deny contains "aggregate: raw access is not allowed; the request carries no aggregate query (input.request.query)" if {
	not is_object(object.get(input, ["request", "query"], null))
}

deny contains "aggregate: the query needs at least one metric" if {
	is_object(aggregate_query)
	count(object.get(aggregate_query, "metrics", [])) == 0
}

deny contains msg if {
	some field in object.get(aggregate_query, "group_by", [])
	not field in aggregate_group_by
	msg := sprintf("aggregate: group_by %s not in allowed %s", [json.marshal(field), json.marshal(aggregate_group_by)])
}

deny contains msg if {
	some metric in object.get(aggregate_query, "metrics", [])
	fn := object.get(metric, "fn", null)
	not fn in aggregate_functions
	msg := sprintf("aggregate: function %s not in allowed %s", [json.marshal(fn), json.marshal(aggregate_functions)])
}

deny contains msg if {
	some metric in object.get(aggregate_query, "metrics", [])
	field := object.get(metric, "field", null)
	not aggregate_counts_records(metric)
	not field in aggregate_fields
	msg := sprintf("aggregate: field %s not in allowed %s", [json.marshal(field), json.marshal(aggregate_fields)])
}

aggregate_counts_records(metric) if {
	metric.fn == "count"
	object.get(metric, "field", "*") in {"*", null}
}

obligations contains {
	"kind": "aggregate",
	"group_by": aggregate_group_by,
	"functions": aggregate_functions,
	"fields": aggregate_fields,
	"min_group_size": min_group_size,
}
