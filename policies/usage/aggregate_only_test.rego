package tessera.usage.aggregate_only_test

import data.tessera.usage.aggregate_only

query(q) := {"request": {"query": q}}

test_allowed_query_is_allowed_with_the_aggregate_obligation if {
	aggregate_only.allow with input as query({"group_by": ["region"], "metrics": [{"fn": "avg", "field": "age"}, {"fn": "count"}]})
	aggregate_only.obligations == {{"kind": "aggregate", "group_by": ["region"], "functions": ["avg", "count"], "fields": ["age"], "min_group_size": 5}} with input as {}
}

test_raw_access_is_denied if {
	aggregate_only.deny == {"aggregate: raw access is not allowed; the request carries no aggregate query (input.request.query)"} with input as {}
}

test_grouping_by_another_field_is_denied if {
	aggregate_only.deny == {`aggregate: group_by "name" not in allowed ["region"]`} with input as query({"group_by": ["name"], "metrics": [{"fn": "count"}]})
}

test_another_function_is_denied if {
	aggregate_only.deny == {`aggregate: function "max" not in allowed ["avg","count"]`} with input as query({"metrics": [{"fn": "max", "field": "age"}]})
}

test_another_field_is_denied if {
	aggregate_only.deny == {`aggregate: field "salary" not in allowed ["age"]`} with input as query({"metrics": [{"fn": "avg", "field": "salary"}]})
}

test_a_query_without_metrics_is_denied if {
	aggregate_only.deny == {"aggregate: the query needs at least one metric"} with input as query({"group_by": ["region"]})
}
