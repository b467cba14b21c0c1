package tessera.usage.compute_to_data_test

import data.tessera.usage.compute_to_data

plan(changes) := {"request": {"query": object.union(
	{"tables": ["data"], "columns": ["age", "region"], "aggregates": [{"fn": "avg", "column": "age"}], "group_by": ["region"], "filters": [], "having": [], "limit": null, "raw": false},
	changes,
)}}

test_an_allowed_aggregate_is_allowed_with_the_compute_obligation if {
	compute_to_data.allow with input as plan({})
	compute_to_data.obligations == {{"kind": "compute", "group_by": ["region"], "aggregate_only": ["age"], "functions": ["avg", "count", "sum"], "min_group_size": 5, "dp": null}} with input as plan({})
}

test_a_pull_without_a_query_is_denied if {
	compute_to_data.deny == {"compute: raw access is not allowed; send a query (input.request.query)"} with input as {}
}

test_a_raw_select_is_denied if {
	compute_to_data.deny == {"compute: the query selects columns outside an aggregate that it does not group by (raw rows never leave)"} with input as plan({"raw": true, "aggregates": [], "group_by": []})
}

test_a_forbidden_column_is_denied if {
	compute_to_data.deny == {`compute: column "name" may not be read; allowed ["age","region"]`} with input as plan({"columns": ["age", "name", "region"]})
}

test_grouping_by_an_aggregate_only_column_is_denied if {
	compute_to_data.deny == {`compute: group_by "age" not in allowed ["region"]`} with input as plan({"group_by": ["age"]})
}

test_another_function_is_denied if {
	compute_to_data.deny == {`compute: function "max" not in allowed ["avg","count","sum"]`} with input as plan({"aggregates": [{"fn": "max", "column": "age"}]})
}

test_a_filter_on_an_aggregate_only_column_is_denied if {
	compute_to_data.deny == {`compute: filter on "age" not allowed; filter on ["region"]`} with input as plan({"filters": [{"column": "age", "op": "gt", "value": 40, "negated": false}]})
}
