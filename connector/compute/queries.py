"""One compute query, from the data plane's request to its answer: checked, decided, run, spent, released.

The query is checked against the dialect, decided with its plan as `input.request.query` (the agreement's
`compute` obligation says how it may run), run in the sandbox, and then decided again in the use's
transaction (`usage.decide_use`), where its ε is spent and its released groups are checked against and
recorded beside the use count, so parallel queries can never overspend. Raw rows never leave: only
aggregates of groups of at least k records, noised when the obligation says so.
"""

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from sqlglot import exp
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.concurrency import run_in_threadpool

from connector import data_tokens, usage
from connector.assets import Asset
from connector.compute import dialect, differencing, engine, privacy
from connector.runtime import Runtime
from connector.sources import Source, source_of
from connector.transfers import Transfer
from tessera import audit
from tessera.errors import BadRequest, NotFound
from tessera.json import load_object
from tessera.policy import Decision, Obligation

QUERY_FIELDS = ("sql", "epsilon")
MAX_EPSILON = 100.0
POSITIONS = "__tessera_rows"


@dataclass
class Result:
    """What the engine computed, not yet released: rows, and the records of each un-noised group."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    groups: list[pa.Int64Array] | None = None  # None: noised, no differencing needed
    left_out: int = 0  # groups below k


@dataclass
class Answer:
    rows: list[dict[str, Any]]
    noised: bool
    epsilon: float
    epsilon_spent: float
    left_out: int
    query_sha256: str
    headers: dict[str, str]

    def public(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "noised": self.noised,
            "epsilon": self.epsilon,
            "epsilon_spent": self.epsilon_spent,
            "groups_left_out": self.left_out,
            "query_sha256": self.query_sha256,
        }


@dataclass
class QueryCharge:
    """What a query spends in its use's transaction: its ε, and its groups against the released ones."""

    actor: str  # the provider, who writes the audit entry
    checked: dialect.Checked
    epsilon: float
    version: str
    result: Result | None
    rule: Obligation | None = None
    spent_after: float = 0.0

    async def input(self, session: AsyncSession, agreement_id: str) -> dict[str, Any]:
        return {"privacy": {"spent": await privacy.spent(session, agreement_id), "epsilon": self.epsilon}}

    async def settle(self, session: AsyncSession, agreement_id: str, decision: Decision) -> Decision:
        if decision.allow:
            decision = await self._release(session, agreement_id, decision)
        await audit.append(
            session,
            actor=self.actor,
            action="compute.answered" if decision.allow else "compute.refused",
            subject=agreement_id,
            query=self.checked.text,
            query_sha256=sha256(self.checked.text),
            epsilon=self.epsilon,
            epsilon_spent=self.spent_after,
            noised=self.result is not None and self.result.groups is None,
            groups=len(self.result.rows) if self.result is not None else 0,
            reasons=list(decision.reasons),
        )
        return decision

    async def _release(self, session: AsyncSession, agreement_id: str, decision: Decision) -> Decision:
        rules = decision.of_kind("compute")
        if not rules or self.result is None or rules[0] != self.rule:
            return _denied("compute: the agreement allows no compute query like this one")
        if self.checked.plan["raw"]:
            return _denied("compute: the query selects raw columns; raw rows never leave")
        k = min_group_size(rules[0])
        if (groups := self.result.groups) is not None:
            if refused := await differencing.refusals(session, agreement_id, self.version, groups, k):
                return _denied(*refused)
            differencing.record(session, agreement_id, self.version, groups)
        self.spent_after = await privacy.spend(session, agreement_id, self.epsilon)
        return decision


def _denied(*reasons: str) -> Decision:
    return Decision(allow=False, reasons=reasons)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def min_group_size(rule: Obligation) -> int:
    k = rule.params.get("min_group_size", 1)
    return k if isinstance(k, int) and not isinstance(k, bool) and k >= 1 else 1


async def answer(runtime: Runtime, transfer_id: str, token: str, body: bytes) -> Answer:
    """Answer a consumer's query under the agreement of its transfer; raises with a 400, 403 or 502."""
    claims = data_tokens.verify(runtime, token, transfer_id)
    async with runtime.db.session() as session:
        transfer = await session.get(Transfer, transfer_id)
    if transfer is None or transfer.role != "provider" or transfer.counterparty_id != claims["sub"]:
        raise NotFound(f"no transfer {transfer_id}")
    await usage.require_open(runtime, transfer)  # before any work: the engine runs before the counted decision
    sql, asked = _request(body)
    *_, asset = await usage.parts(runtime, transfer)
    source = source_of(asset)
    schema = await run_in_threadpool(source.schema)
    checked = dialect.check(sql, {f.name: str(f.type) for f in schema})
    rule = await _rule(runtime, transfer, asset, checked, asked)
    epsilon = _epsilon(rule, asked)
    result = (
        None if rule is None or checked.plan["raw"] else await _run(runtime, source, schema, checked, rule, epsilon)
    )
    stored = await run_in_threadpool(source.stored)
    charge = QueryCharge(
        runtime.participant_id, checked, epsilon, stored.etag if stored else "unversioned", result, rule
    )
    use = await usage.decide_use(runtime, transfer, usage.Declared(query=checked.plan), charge=charge)
    assert result is not None  # an allowed use has a result (settle denies one without)
    noised = result.groups is None
    return Answer(result.rows, noised, epsilon, charge.spent_after, result.left_out, sha256(sql), use.headers)


def _request(body: bytes) -> tuple[str, float | None]:
    request = load_object(body, "the query", BadRequest)
    if unknown := sorted(set(request) - set(QUERY_FIELDS)):
        raise BadRequest(f"query: unknown field {unknown[0]!r}; the fields are {list(QUERY_FIELDS)}")
    sql, epsilon = request.get("sql"), request.get("epsilon")
    if not isinstance(sql, str):
        raise BadRequest("sql: a query (a string) is required")
    if epsilon is not None and (
        isinstance(epsilon, bool) or not isinstance(epsilon, int | float) or not 0 < epsilon <= MAX_EPSILON
    ):
        raise BadRequest(f"epsilon: a number above 0 and at most {MAX_EPSILON:g}")
    return sql, None if epsilon is None else float(epsilon)


async def _rule(
    runtime: Runtime, transfer: Transfer, asset: Asset, checked: dialect.Checked, asked: float | None
) -> Obligation | None:
    """The compute obligation the policy gives this query now (None: it is not allowed; the use then
    records the denial). The decision in the use's transaction is the one that counts."""
    agreement, policy, _ = await usage.parts(runtime, transfer)
    async with runtime.db.session() as session:
        counter = await session.get(usage.UsageCounter, agreement.id)
        spent = await privacy.spent(session, agreement.id)
    declared = usage.Declared(query=checked.plan)
    request = usage.usage_input(
        agreement, transfer.caller_claims, declared, counter.uses if counter else 0, asset, now=runtime.clock()
    )
    request["privacy"] = {"spent": spent, "epsilon": asked or 0.0}
    decision = await usage.judge(runtime, agreement, policy, asset, request, checked.plan)
    rules = decision.of_kind("compute") if decision.allow else ()
    return rules[0] if rules else None


def _epsilon(rule: Obligation | None, asked: float | None) -> float:
    if rule is None:
        return asked or 0.0  # refused already; the use's decision says why with the ε asked
    settings = _dp(rule)
    if settings is None:
        if asked is not None:
            raise BadRequest("epsilon: this agreement's answers are not noised (its compute obligation has no dp)")
        return 0.0
    default = settings.get("epsilon")
    epsilon = asked if asked is not None else default
    if not isinstance(epsilon, int | float) or isinstance(epsilon, bool) or epsilon <= 0:
        raise BadRequest("epsilon: name the ε this query spends (the obligation gives no default)")
    return float(epsilon)


def _dp(rule: Obligation | None) -> dict[str, Any] | None:
    settings = rule.params.get("dp") if rule is not None else None
    return settings if isinstance(settings, dict) else None


async def _run(
    runtime: Runtime, source: Source, schema: pa.Schema, checked: dialect.Checked, rule: Obligation, epsilon: float
) -> Result:
    limits = runtime.config.compute
    k, limit = min_group_size(rule), checked.plan["limit"]
    if (settings := _dp(rule)) is not None:
        bounds = privacy.bounds_of(settings)
        within = await run_in_threadpool(engine.known_within, source, bounds)
        noised = privacy.noised_query(checked.tree, bounds, within)
        read = engine.columns_read(noised.tree, schema)
        table = await run_in_threadpool(engine.run, source, engine.sql_of(noised.tree, schema), limits, columns=read)
        rows, left_out = privacy.release(noised, table, epsilon, k, limit)
        return Result(rows, None, left_out)
    tree = _with_positions(checked.tree)
    read = engine.columns_read(tree, schema)
    sql = engine.sql_of(tree, schema)
    table = await run_in_threadpool(engine.run, source, sql, limits, positions=True, columns=read)
    return _released(table, k)


def _with_positions(tree: exp.Select) -> exp.Select:
    """The query with each output named, and per group its record count and the records' positions."""
    tree = tree.copy()
    named = [
        item if item.alias else exp.alias_(item, item.sql(dialect="duckdb"), quoted=True) for item in tree.expressions
    ]
    tree.set("expressions", named)
    tree.select(exp.alias_(exp.Count(this=exp.Star()), privacy.RECORDS, quoted=True), copy=False)
    rows = exp.Anonymous(this="list", expressions=[exp.column(engine.ROW)])
    return tree.select(exp.alias_(rows, POSITIONS, quoted=True), copy=False)


def _released(table: pa.Table, k: int) -> Result:
    result = Result(groups=[])
    assert result.groups is not None
    shown = [name for name in table.column_names if name not in (privacy.RECORDS, POSITIONS)]
    positions = table.column(POSITIONS)
    for i, row in enumerate(table.select([*shown, privacy.RECORDS]).to_pylist()):
        if row.pop(privacy.RECORDS) < k:
            result.left_out += 1
            continue
        result.rows.append({name: _finite(value) for name, value in row.items()})
        result.groups.append(positions[i].values)
    return result


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value
