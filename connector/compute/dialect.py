"""The query dialect of compute-to-data: SQL parsed by sqlglot, checked against an allow-list of node types.

```python
checked = check("SELECT region, avg(age) FROM data GROUP BY region", columns={"region": "string", ...})
checked.plan     # what the policy sees as input.request.query
checked.tree     # the checked tree; the SQL that runs is regenerated from it (engine), never the text as sent
```

Allowed: one SELECT over the agreed table (`data`), WHERE, GROUP BY, HAVING, ORDER BY, LIMIT; comparisons,
AND / OR / NOT, IN (literals), BETWEEN, IS NULL, arithmetic, literals, column references and the aggregate
functions count / sum / avg / min / max. Anything else is refused with a 400 naming the construct:
functions (`read_csv`, `getenv` …), statements (`COPY`, `ATTACH`, `INSTALL`, `PRAGMA`, `SET` …), subqueries,
CTEs, joins, window functions, DISTINCT, `*` outside `count(*)`, tables other than the agreed one.
"""

from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from connector.usage import QueryPlan
from tessera.errors import BadRequest

TABLE = "data"  # the agreed asset, as a query names it
MAX_QUERY_CHARS = 10_000
RESERVED_PREFIX = "__tessera"  # names the engine adds; a query may not use them
AGGREGATES: dict[type[exp.Expr], str] = {
    exp.Count: "count",
    exp.Sum: "sum",
    exp.Avg: "avg",
    exp.Min: "min",
    exp.Max: "max",
}
COMPARISONS: dict[type[exp.Expr], str] = {
    exp.EQ: "eq",
    exp.NEQ: "neq",
    exp.GT: "gt",
    exp.GTE: "gte",
    exp.LT: "lt",
    exp.LTE: "lte",
    exp.In: "in",
    exp.Between: "between",
    exp.Is: "is",
}
_STRUCTURE = (exp.Select, exp.From, exp.Table, exp.Where, exp.Group, exp.Having, exp.Order, exp.Ordered, exp.Limit)
_VALUES = (exp.Column, exp.Identifier, exp.Literal, exp.Null, exp.Boolean, exp.Alias, exp.Paren, exp.Neg)
_LOGIC = (exp.And, exp.Or, exp.Not)
_ARITHMETIC = (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod)
ALLOWED: tuple[type[exp.Expr], ...] = (*_STRUCTURE, *_VALUES, *_LOGIC, *_ARITHMETIC, *AGGREGATES, *COMPARISONS)
_SELECT_PARTS = {"expressions", "from_", "where", "group", "having", "order", "limit"}


class OutsideDialect(BadRequest):
    """A query that is not in the compute-to-data dialect; the detail names the construct."""


@dataclass(frozen=True)
class Checked:
    """A query in the dialect: its checked tree and the plan the policy decides on."""

    tree: exp.Select
    plan: QueryPlan
    text: str  # the query as the consumer sent it (for the audit entry)


def check(text: str, columns: dict[str, str]) -> Checked:
    """Parse and check `text` against the dialect and the asset's `columns` (name -> Arrow type)."""
    if not isinstance(text, str) or not text.strip():
        raise OutsideDialect("sql: a query (a non-empty string) is required")
    if len(text) > MAX_QUERY_CHARS:
        raise OutsideDialect(f"sql: the query is longer than {MAX_QUERY_CHARS} characters")
    tree = _parse(text)
    nodes = list(tree.walk())
    for node in sorted(nodes, key=lambda n: isinstance(n, exp.Star)):  # a function before a `*` beside it
        _allowed(node, columns)
    return Checked(tree, describe(tree), text)


def _parse(text: str) -> exp.Select:
    try:
        trees = sqlglot.parse(text, read="duckdb")
    except (SqlglotError, RecursionError) as exc:
        raise OutsideDialect(f"sql: the query does not parse: {str(exc).splitlines()[0][:200]}") from exc
    statements = [tree for tree in trees if tree is not None]
    if len(statements) != 1:
        raise OutsideDialect(f"sql: send exactly one statement, not {len(statements)}")
    (tree,) = statements
    if not isinstance(tree, exp.Select):
        raise OutsideDialect(f"sql: only SELECT is allowed, not {_construct(tree)}")
    if tree.args.get("from_") is None:
        raise OutsideDialect(f"sql: a query reads FROM {TABLE}")
    return tree


def _construct(node: exp.Expr) -> str:
    """The construct a node is, in words a consumer recognises (`read_csv`, `COPY`, `window function` …)."""
    if isinstance(node, exp.Anonymous):
        return f"function {node.name}"
    if isinstance(node, exp.Func):
        return f"function {node.sql_name().lower()}"
    if isinstance(node, exp.Window):
        return "window function"
    if isinstance(node, exp.With | exp.CTE):
        return "CTE (WITH)"
    if isinstance(node, exp.Subquery) or (isinstance(node, exp.Select) and node.parent is not None):
        return "subquery"
    if isinstance(node, exp.Star):
        return "* (name the columns; * only in count(*))"
    return node.key.upper()


def _allowed(node: exp.Expr, columns: dict[str, str]) -> None:
    counted_star = isinstance(node, exp.Star) and isinstance(node.parent, exp.Count)
    if not counted_star and (
        not isinstance(node, ALLOWED) or (isinstance(node, exp.Select) and node.parent is not None)
    ):
        raise OutsideDialect(f"sql: {_construct(node)} is not allowed in compute-to-data queries")
    if isinstance(node, exp.Select):
        if extra := sorted(k for k, v in node.args.items() if v and k not in _SELECT_PARTS):
            construct = "CTE (WITH)" if extra[0] == "with_" else extra[0].rstrip("_").upper()
            raise OutsideDialect(f"sql: {construct} is not allowed in compute-to-data queries")
    elif isinstance(node, exp.Table):
        _table(node)
    elif isinstance(node, exp.Column):
        _column(node, columns)
    elif isinstance(node, exp.Identifier) and node.name.lower().startswith(RESERVED_PREFIX):
        raise OutsideDialect(f"sql: names starting with {RESERVED_PREFIX} are reserved")
    elif isinstance(node, tuple(AGGREGATES)):
        _aggregate(node)
    elif isinstance(node, exp.In) and (node.args.get("query") or node.args.get("unnest")):
        raise OutsideDialect("sql: subquery is not allowed in compute-to-data queries")


def _table(node: exp.Table) -> None:
    if isinstance(node.this, exp.Func):
        raise OutsideDialect(f"sql: {_construct(node.this)} is not allowed in compute-to-data queries")
    extra = [k for k, v in node.args.items() if v and k not in ("this", "alias")]
    if extra or node.name != TABLE or not isinstance(node.this, exp.Identifier):
        raise OutsideDialect(f"sql: table {node.sql(dialect='duckdb')[:100]} is not the agreed table; query {TABLE}")


def _column(node: exp.Column, columns: dict[str, str]) -> None:
    if node.table and node.table != TABLE:
        raise OutsideDialect(f"sql: column {node.sql()[:100]} names a table other than {TABLE}")
    if node.name not in columns and not _output_alias(node):
        raise OutsideDialect(f"sql: no column {node.name!r}; the columns are {sorted(columns)}")


def _output_alias(node: exp.Column) -> bool:
    """Whether a column reference in HAVING or ORDER BY names one of the query's output aliases."""
    select = node.find_ancestor(exp.Select)
    inside = node.find_ancestor(exp.Having, exp.Order)
    return select is not None and inside is not None and node.name in {e.alias for e in select.expressions if e.alias}


def _aggregate(node: exp.Expr) -> None:
    argument = node.this
    if isinstance(argument, exp.Distinct):
        raise OutsideDialect("sql: DISTINCT is not allowed in compute-to-data queries")
    if not (isinstance(argument, exp.Column) or (isinstance(node, exp.Count) and isinstance(argument, exp.Star))):
        fn = AGGREGATES[type(node)]
        raise OutsideDialect(f"sql: {fn}() takes one column (count also *), not {argument.sql()[:100]}")
    if node.find_ancestor(*AGGREGATES) is not None:
        raise OutsideDialect("sql: an aggregate inside an aggregate is not allowed")


# -- the plan the policy sees --------------------------------------------------------------------------------


def describe(tree: exp.Select) -> QueryPlan:
    """`input.request.query`: tables, columns read, aggregates, group_by, filters, limit, raw."""
    group_by = [c.name for c in _group_columns(tree)]
    aggregates = [_aggregate_of(node) for node in tree.find_all(*AGGREGATES)]
    return QueryPlan(
        tables=[TABLE],
        columns=sorted({c.name for c in tree.find_all(exp.Column) if not _output_alias(c)}),
        aggregates=aggregates,
        group_by=group_by,
        filters=[_filter(node) for node in _comparisons(tree.args.get("where"))],
        having=[_filter(node) for node in _comparisons(tree.args.get("having"))],
        limit=_limit(tree),
        raw=bool(raw_columns(tree)),
    )


def raw_columns(tree: exp.Select) -> list[str]:
    """Columns the output shows record by record: selected outside an aggregate and not grouped by."""
    grouped = {c.name for c in _group_columns(tree)}
    shown = [c for e in tree.expressions for c in e.find_all(exp.Column) if c.find_ancestor(*AGGREGATES) is None]
    return sorted({c.name for c in shown if c.name not in grouped})


def _group_columns(tree: exp.Select) -> list[exp.Column]:
    group = tree.args.get("group")
    if group is None:
        return []
    found = [e for e in group.expressions if isinstance(e, exp.Column)]
    if len(found) != len(group.expressions):
        raise OutsideDialect("sql: GROUP BY takes column names only")
    return found


def _aggregate_of(node: exp.Expr) -> dict[str, Any]:
    argument = node.this
    return {"fn": AGGREGATES[type(node)], "column": argument.name if isinstance(argument, exp.Column) else "*"}


def _comparisons(clause: exp.Expr | None) -> list[exp.Expr]:
    return [] if clause is None else [n for n in clause.walk() if isinstance(n, tuple(COMPARISONS))]


def _filter(node: exp.Expr) -> dict[str, Any]:
    """One comparison as {column, op, value}; `column` is the column compared (or the aggregate, as fn(column))."""
    subject: exp.Expr = node.this
    column: str | None
    if isinstance(subject, exp.Column):
        column = subject.name
    elif isinstance(subject, tuple(AGGREGATES)):
        column = f"{AGGREGATES[type(subject)]}({_aggregate_of(subject)['column']})"
    else:
        column = None
    op = COMPARISONS[type(node)]
    return {"column": column, "op": op, "value": _literal_values(node), "negated": _negated(node)}


def _literal_values(node: exp.Expr) -> Any:
    values = [_value(n) for n in node.iter_expressions() if n is not node.this]
    if isinstance(node, exp.In):
        return [_value(n) for n in node.expressions]
    return values[0] if len(values) == 1 else values


def _value(node: exp.Expr) -> Any:
    if isinstance(node, exp.Literal):
        return node.to_py()
    if isinstance(node, exp.Null):
        return None
    if isinstance(node, exp.Boolean):
        return node.this
    return node.sql(dialect="duckdb")


def _negated(node: exp.Expr) -> bool:
    flips, parent = 0, node.parent
    while parent is not None and not isinstance(parent, exp.Where | exp.Having):
        flips += isinstance(parent, exp.Not)
        parent = parent.parent
    return flips % 2 == 1


def _limit(tree: exp.Select) -> int | None:
    limit = tree.args.get("limit")
    if limit is None:
        return None
    value = limit.expression
    if not (isinstance(value, exp.Literal) and value.is_int) or int(value.this) < 0:
        raise OutsideDialect("sql: LIMIT takes a non-negative whole number")
    return int(value.this)
