"""Differential privacy for compute queries: OpenDP's Laplace mechanism, and the ε each agreement spent.

A noised query (the `compute` obligation carries `dp`) may select group columns and count / sum / avg of
one column each. The engine computes, per group, the true values of a few measures (records, and per
summed column its clamped sum and its count); OpenDP adds Laplace noise to each measure's vector of group
values, with scale sensitivity / (ε / measures): records are added or removed one at a time, so a count
moves by at most 1 and a clamped sum by max(|lo|, |hi|), in one group only (sequential composition over
the measures, parallel over the disjoint groups). avg is noisy sum / noisy count, clamped to the bounds.
Groups whose noisy record count is below k are left out. Group keys come from the data (documented in
docs/compute.md: they are not themselves protected). Only OpenDP's `contrib` feature is enabled: the
Laplace mechanism on floats is contributed code; floating-point noise is OpenDP's own (no
`floating-point` or `honest-but-curious` features are needed for it).
"""

from dataclasses import dataclass
from typing import Any

import opendp.prelude as dp
import pyarrow as pa
from sqlglot import exp
from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from connector.compute.dialect import AGGREGATES, OutsideDialect
from tessera.errors import NotEntitled

dp.enable_features("contrib")

RECORDS = "__tessera_n"  # every query's record count per group


class PrivacyBudget(SQLModel, table=True):
    """The ε an agreement's compute queries spent, kept by the provider beside its use counter."""

    __tablename__ = "privacy_budget"

    agreement_id: str = Field(primary_key=True)
    spent: float = 0.0
    queries: int = 0


async def spent(session: AsyncSession, agreement_id: str) -> float:
    budget = await session.get(PrivacyBudget, agreement_id)
    return budget.spent if budget is not None else 0.0


async def spend(session: AsyncSession, agreement_id: str, epsilon: float) -> float:
    """Add one query's ε; the total after it."""
    budget = await session.get(PrivacyBudget, agreement_id) or PrivacyBudget(agreement_id=agreement_id)
    budget.spent += epsilon
    budget.queries += 1
    session.add(budget)
    return budget.spent


@dataclass(frozen=True)
class Measure:
    """One quantity per group that gets noise: its column in the engine's result and its sensitivity."""

    name: str
    expression: exp.Expr
    sensitivity: float


@dataclass(frozen=True)
class Output:
    """One column of the answer: a group key, or an aggregate built from measures."""

    name: str
    fn: str  # key | count | sum | avg
    measures: tuple[str, ...] = ()
    bounds: tuple[float, float] | None = None


@dataclass(frozen=True)
class NoisedQuery:
    tree: exp.Select  # what the engine runs: group keys and the measures' true values
    outputs: tuple[Output, ...]
    measures: tuple[Measure, ...]


def bounds_of(settings: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """The clamping bounds of the obligation's `dp.bounds` ({column: [lo, hi]}); a malformed one denies."""
    found: dict[str, tuple[float, float]] = {}
    for column, pair in (settings.get("bounds") or {}).items():
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, int | float) for v in pair)):
            raise NotEntitled(f"compute: dp bounds of {column} are not [lo, hi]")
        if pair[0] > pair[1]:
            raise NotEntitled(f"compute: dp bounds of {column} have lo > hi")
        found[str(column)] = (float(pair[0]), float(pair[1]))
    return found


def noised_query(
    tree: exp.Select, bounds: dict[str, tuple[float, float]], within: frozenset[str] = frozenset()
) -> NoisedQuery:
    """The query as measures to noise; a query that cannot be noised is refused naming why. Columns in
    `within` are known to hold only values inside their bounds (the file's statistics): not clamped."""
    for clause in ("having", "order"):
        if tree.args.get(clause) is not None and (clause == "having" or _orders_by_aggregate(tree)):
            raise OutsideDialect(
                f"sql: {clause.upper()} on aggregates is not allowed on noised queries (it reads true values)"
            )
    measures: dict[str, Measure] = {RECORDS: Measure(RECORDS, exp.Count(this=exp.Star()), 1.0)}
    outputs = [_output(item, bounds, measures, within) for item in tree.expressions]
    engine_tree = tree.copy()
    engine_tree.set("expressions", [item.copy() for item in tree.expressions if _is_key(item)])
    for measure in measures.values():
        engine_tree.select(exp.alias_(measure.expression, measure.name, quoted=True), copy=False)
    engine_tree.set("limit", None)  # applied after the noise and the threshold
    return NoisedQuery(engine_tree, tuple(outputs), tuple(measures.values()))


def _orders_by_aggregate(tree: exp.Select) -> bool:
    aliases = {e.alias for e in tree.expressions if e.alias and not _is_key(e)}
    order = tree.args["order"]
    return any(order.find_all(*AGGREGATES)) or any(c.name in aliases for c in order.find_all(exp.Column))


def _is_key(item: exp.Expr) -> bool:
    return isinstance(item.unalias(), exp.Column)


def _output(
    item: exp.Expr, bounds: dict[str, tuple[float, float]], measures: dict[str, Measure], within: frozenset[str]
) -> Output:
    name, value = item.alias_or_name if item.alias else item.sql(dialect="duckdb"), item.unalias()
    if isinstance(value, exp.Column):
        return Output(item.alias_or_name, "key")
    if not isinstance(value, exp.Count | exp.Sum | exp.Avg):
        raise OutsideDialect(f"sql: {value.sql()[:100]}: a noised query selects group columns and count, sum or avg")
    column = value.this
    if isinstance(column, exp.Star):
        return Output(name, "count", (RECORDS,))
    assert isinstance(column, exp.Column)
    if isinstance(value, exp.Count):
        return Output(name, "count", (_count(measures, column),))
    if column.name not in bounds:
        raise NotEntitled(f"compute: no dp bounds for {column.name}; it cannot be summed under noise")
    lo, hi = bounds[column.name]
    clamped = (
        column.copy()
        if column.name in within  # clamping would change no value: the sensitivity holds as it is
        else exp.func(
            "least",
            exp.func("greatest", column.copy(), _number(lo)),  # a string column is cast (engine.sql_of)
            _number(hi),
        )
    )
    summed = _measure(measures, f"__tessera_sum_{column.name}", exp.Sum(this=clamped), max(abs(lo), abs(hi)))
    if isinstance(value, exp.Sum):
        return Output(name, "sum", (summed,))
    return Output(name, "avg", (summed, _count(measures, column)), (lo, hi))


def _number(bound: float) -> exp.Expr:
    """A bound as SQL: whole bounds as integers, so an integer column is clamped without a cast to double."""
    return exp.Literal.number(int(bound) if bound.is_integer() else bound)


def _count(measures: dict[str, Measure], column: exp.Column) -> str:
    return _measure(measures, f"__tessera_count_{column.name}", exp.Count(this=column.copy()), 1.0)


def _measure(measures: dict[str, Measure], name: str, expression: exp.Expr, sensitivity: float) -> str:
    measures.setdefault(name, Measure(name, expression, sensitivity))
    return name


def release(
    query: NoisedQuery, table: pa.Table, epsilon: float, k: int, limit: int | None
) -> tuple[list[dict[str, Any]], int]:
    """The noised answer rows (groups whose noisy record count is at least k) and how many were left out."""
    share = epsilon / len(query.measures)
    noisy = {m.name: _laplace(table.column(m.name).to_pylist(), m.sensitivity, share) for m in query.measures}
    keys = {o.name: table.column(o.name).to_pylist() for o in query.outputs if o.fn == "key"}
    rows, left_out = [], 0
    for i in range(table.num_rows):
        if noisy[RECORDS][i] < k:
            left_out += 1
            continue
        rows.append({o.name: keys[o.name][i] if o.fn == "key" else _value(o, noisy, i) for o in query.outputs})
    return rows if limit is None else rows[:limit], left_out


def _laplace(values: list[Any], sensitivity: float, epsilon: float) -> list[float]:
    if not values:
        return []
    scale = sensitivity / epsilon
    space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.l1_distance(T=float)
    mechanism = dp.m.make_laplace(*space, scale=scale)
    noised: list[float] = mechanism([float(v or 0.0) for v in values])
    return noised


def _value(output: Output, noisy: dict[str, list[float]], i: int) -> float | int:
    first = noisy[output.measures[0]][i]
    if output.fn == "count":
        return max(0, round(first))
    if output.fn == "sum":
        return first
    assert output.bounds is not None
    lo, hi = output.bounds
    count = noisy[output.measures[1]][i]
    return min(hi, max(lo, first / count)) if count >= 1 else (lo + hi) / 2
