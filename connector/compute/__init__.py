"""Compute-to-data (可用不可见): a consumer's SQL runs at the provider; only aggregates leave.

`dialect` parses and checks the query (sqlglot) and describes it for the policy (`input.request.query`);
`engine` runs it in a locked-down DuckDB over the asset's Arrow batches; `privacy` adds OpenDP noise and
keeps each agreement's ε; `differencing` refuses un-noised answers that would, with earlier ones, isolate
fewer than k records; `queries` puts them together under one use of the agreement. docs/compute.md.
"""
