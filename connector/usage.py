"""The policy enforcement point: one use of agreed data, decided, counted, carried out, metered.

The agreement is the law: its ODRL, compiled to Rego (`policies.compiler.compile_agreement`, cached
per agreement), and the Rego usage module it binds, if any, decide every use together, in one
evaluation, and both must allow (`decide`). They see the agreement, the consumer's verified claims,
the declared purpose, the uses so far, the clock and, for aggregate-only data, the query
(`usage_input`). Decision, use count and audit entry are one transaction, so 50 parallel requests
under "at most 10 uses" let exactly 10 through. The decision's obligations are then carried out:
record obligations (mask, replace, filter rows, aggregate) on the stream; side effects (log,
notify) at once; delete-after and next-policy travel to the consumer as response headers (the
consumer enforces the agreement's own duties too). An obligation that cannot be carried out denies
the request: fail closed. The connector's own rules by grade (`connector.grades`) and across borders
(`connector.cross_border`) apply to every use whatever the agreement says (`governed`); an allowed
cross-border use is filed in the same transaction. Data sent carries its labels (`Tessera-Labels`:
the strictest of its inputs). Bytes sent are metered per agreement.
"""

import asyncio
import hashlib
import json
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Protocol, TypeVar

import pyarrow as pa
from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool

from connector import cross_border, fast_path, grades, resumes, shaping, sources, timeline, writers
from connector.agreements import Agreement
from connector.assets import Asset, write_records
from connector.catalog import UsagePolicy
from connector.fast_path import Asked, Fetch, fetch_for
from connector.outbox import enqueue
from connector.ranges import Unsatisfiable
from connector.runtime import Runtime
from connector.sources import MEDIA_TYPES, source_of
from connector.transfers import Transfer
from policies.compiler import CompiledAgreement, compile_agreement
from tessera import audit
from tessera.clock import parse, rfc3339, utcnow
from tessera.errors import BadRequest, InvalidMessage, NotEntitled, NotFound, PolicyEvaluationError, TesseraError
from tessera.ids import new_id
from tessera.json import JSONObject, load_object
from tessera.labels import Labels, strictest
from tessera.policy import Decision, Obligation, PolicyModule
from tessera.policy.obligations import (
    KNOWN_KINDS,
    AggregateRefused,
    ObligationError,
    aggregate,
    require_supported,
)
from tessera.store import Timestamp, UtcDateTime

DELETE_AFTER_HEADER = "Tessera-Delete-After"
NEXT_POLICY_HEADER = "Tessera-Next-Policy"
LABELS_HEADER = "Tessera-Labels"  # the labels of the data sent, as JSON (`Labels.to_dict`)
COMPILED_AGREEMENTS = 1024  # compiled agreements kept in memory (compiling one takes about a millisecond)
T = TypeVar("T")


class UsageCounter(SQLModel, table=True):
    """Uses and bytes of one agreement, kept by the provider."""

    __tablename__ = "usage_counter"

    agreement_id: str = Field(primary_key=True)
    uses: int = 0
    denials: int = 0
    bytes: int = 0
    last_used_at: Timestamp | None = Field(default=None, sa_type=UtcDateTime)


class QueryPlan(dict[str, Any]):
    """A compute-to-data query as the dialect checked it (`connector.compute.dialect`), never as a consumer
    described it: only this kind of query satisfies a `compute` obligation."""


class Charge(Protocol):
    """What a use spends beside its count, in the same transaction (a compute query's ε, its released groups)."""

    async def input(self, session: AsyncSession, agreement_id: str) -> dict[str, Any]:
        """Fields added to the policy input (read inside the use's transaction)."""
        ...

    async def settle(self, session: AsyncSession, agreement_id: str, decision: Decision) -> Decision:
        """The final decision (it may only deny); spends and records what an allowed use spends."""
        ...


@dataclass(frozen=True)
class Declared:
    """What the consumer declares for one use: its purpose, the event in progress, and, for
    aggregate-only data, its query. Policies read them as `input.purpose`, `input.event` and
    `input.request.query`; nothing of it is proven, so patterns combine it with verified claims.
    `format` is how the consumer wants the data written (None: the asset's own format)."""

    purpose: str | None = None
    event: str | None = None
    query: dict[str, Any] | None = None
    format: str | None = None

    PARAMETERS: ClassVar = ("purpose", "event", "query", "format")  # the query parameters of a pull that carry it

    @classmethod
    def of(cls, params: Mapping[str, str]) -> "Declared":
        """Read from a pull's query parameters (`?purpose=…&event=…&query={json}&format=csv`)."""
        query, fmt = params.get("query"), params.get("format")
        if fmt is not None and fmt not in writers.FORMATS:
            raise BadRequest(f"format must be one of {', '.join(writers.FORMATS)}, got {fmt[:50]!r}")
        return cls(
            params.get("purpose"),
            params.get("event"),
            None if query is None else load_object(query, "query", BadRequest),
            fmt,
        )


@dataclass
class Use:
    """An allowed use: what to send, under which obligations, with which headers for the consumer."""

    transfer: Transfer
    agreement: Agreement
    asset: Asset
    decision: Decision
    query: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    filing: str | None = None  # the cross-border filing this use wrote, if it crosses a border
    fetch: Fetch | None = None  # set when the stored file is sent as it is (the fast path)
    format: str | None = None  # how the consumer wants the data written; None: the asset's format


def usage_input(
    agreement: Agreement,
    caller: dict[str, Any],
    declared: Declared,
    uses: int,
    asset: Asset,
    *,
    now: datetime | None = None,
    connector_id: str | None = None,
) -> dict[str, Any]:
    """The input both modules decide on (every field is documented in docs/policy-engine.md)."""
    return {
        "agreement": {
            "id": agreement.id,
            "assigner": agreement.provider_id,
            "assignee": agreement.consumer_id,
            "target": agreement.target,
            "timestamp": agreement.document.get("timestamp"),
            "terms": _terms(agreement),
        },
        "caller": caller,
        "connector": {"id": connector_id},
        "purpose": declared.purpose,
        "event": declared.event,
        "uses": uses,
        "now": rfc3339(now),
        "asset": asset.policy_input(),
        "artifact": {"state": asset.state},  # the asset's lifecycle state
        "request": {"query": declared.query} if declared.query is not None else {},
    }


def _terms(agreement: Agreement) -> dict[str, Any] | None:
    """The agreed terms as the first usage policies read them; None when the ODRL states others."""
    try:
        return agreement.terms.to_dict()
    except InvalidMessage:
        return None


async def parts(runtime: Runtime, transfer: Transfer) -> tuple[Agreement, UsagePolicy | None, Asset]:
    """The agreement, the usage policy it binds (None when it binds none) and the asset of a transfer."""
    async with runtime.db.session() as session:
        agreement = await session.get(Agreement, transfer.agreement_id)
        asset = await session.get(Asset, agreement.target) if agreement else None
    if agreement is None or asset is None:
        raise NotFound(f"the agreement or asset of transfer {transfer.id} is gone")
    return agreement, await bound_policy(runtime, agreement), asset


async def bound_policy(runtime: Runtime, agreement: Agreement) -> UsagePolicy | None:
    """The Rego module the agreement binds, unchanged, or we fail closed; None when it binds none."""
    policy_id: str | None = agreement.usage_policy_id
    if policy_id is None:
        return None  # a plain DSP agreement: its ODRL alone decides
    async with runtime.db.session() as session:
        policy = await session.get(UsagePolicy, policy_id)
    if policy is None or policy.hash != agreement.usage_policy_hash:
        raise NotEntitled("the usage policy bound by the agreement is not available unchanged")
    return policy


_compiled: OrderedDict[str, CompiledAgreement] = OrderedDict()


def compiled(agreement: Agreement) -> CompiledAgreement:
    """The agreement's ODRL compiled to Rego, once per agreement document."""
    key = hashlib.sha256(json.dumps(agreement.document, sort_keys=True, default=str).encode()).hexdigest()
    if (found := _compiled.get(key)) is not None:
        _compiled.move_to_end(key)
        return found
    found = _compiled[key] = compile_agreement(agreement.document)
    if len(_compiled) > COMPILED_AGREEMENTS:
        _compiled.popitem(last=False)
    return found


def modules(agreement: Agreement, policy: UsagePolicy | None) -> list[PolicyModule]:
    """What decides a use: the compiled agreement, and the bound usage module when there is one."""
    return [compiled(agreement).module, *([policy.module] if policy is not None else [])]


async def decide(runtime: Runtime, agreement: Agreement, policy: UsagePolicy | None, request: JSONObject) -> Decision:
    """The one decision path (data plane, explain, simulate): both modules in one evaluation, both must allow."""
    try:
        return await runtime.engine.decide_all(modules(agreement, policy), request)
    except PolicyEvaluationError as exc:
        return evaluation_failed(exc)


async def judge(
    runtime: Runtime,
    agreement: Agreement,
    policy: UsagePolicy | None,
    asset: Asset,
    request: JSONObject,
    query: dict[str, Any] | None,
) -> Decision:
    """The one decision of a use, for the data plane, explain and simulate alike: the compiled agreement and
    its bound module in one evaluation (`decide`), denied when an obligation cannot be carried out
    (`executable`), then under the connector's rules by grade and across borders (`governed`)."""
    decision = executable(await decide(runtime, agreement, policy, request), query)
    return governed(runtime, asset, request["caller"], decision)


def evaluation_failed(exc: PolicyEvaluationError) -> Decision:
    return Decision(allow=False, reasons=(f"policy evaluation failed: {exc.detail}",))


def governed(runtime: Runtime, asset: Asset, caller: JSONObject, decision: Decision) -> Decision:
    """The decision under the connector's rules by grade and across borders, which can only deny."""
    labels, provider = asset.labels, runtime.participant_id
    refusals = grades.use_refusals(runtime.config.grades, labels, caller, provider, decision)
    if (border := cross_border.crossing(labels, caller, provider)) is not None:
        refusals += cross_border.refusals(runtime.config.cross_border, labels, border)
    if not refusals:
        return decision
    return Decision(allow=False, reasons=(*(() if decision.allow else decision.reasons), *refusals))


async def require_open(runtime: Runtime, transfer: Transfer) -> None:
    """Refuse a use of a transfer that is not STARTED, or of a consumer the broker suspended."""
    if transfer.state != "STARTED":
        raise NotEntitled(f"transfer {transfer.id} is {transfer.state}, not STARTED")
    await runtime.participant_status.require_active(transfer.counterparty_id)


async def decide_use(
    runtime: Runtime, transfer: Transfer, declared: Declared, asked: Asked | None = None, charge: Charge | None = None
) -> Use:
    """Decide one use; count it when allowed (and spend its `charge`). Raises NotEntitled carrying the reasons.

    A consumer the broker suspended is refused first, whatever its data token and agreement say.
    `asked` is what the request asks of the stored bytes (a range); when the stored file can
    answer it and the decision leaves the data untouched, the use sends the file as it is
    (`Use.fetch`), and a request that resumes the transfer's counted use is decided as that use was
    and not counted again (`connector.resumes`).
    """
    await require_open(runtime, transfer)
    agreement, policy, asset = await parts(runtime, transfer)
    caller = transfer.caller_claims
    fetch = fetch_for(asset, asked, declared.format) if asked is not None else None
    async with runtime.transaction() as session:
        counter = await session.get(UsageCounter, agreement.id) or UsageCounter(agreement_id=agreement.id)

        async def judged(uses: int) -> tuple[dict[str, Any], Decision]:
            request = usage_input(
                agreement,
                caller,
                declared,
                uses,
                asset,
                now=runtime.clock(),
                connector_id=transfer.counterparty_address,
            )
            if charge is not None:
                request |= await charge.input(session, agreement.id)
            return request, await judge(runtime, agreement, policy, asset, request, declared.query)

        record = await session.get(resumes.CountedUse, transfer.id) if fetch is not None else None
        resuming = record is not None and resumes.continues(record, fetch)
        uses = record.uses_before if record is not None and resuming else counter.uses
        request, decision = await judged(uses)
        if resuming and not resumes.untouched(decision):  # the data is reshaped now: a new use
            resuming, uses = False, counter.uses
            request, decision = await judged(uses)
        if charge is not None:
            decision = await charge.settle(session, agreement.id, decision)
        fast = fetch if fetch is not None and decision.allow and resumes.untouched(decision) else None
        counted = decision.allow and not resuming and not (fast is not None and isinstance(fast.wanted, Unsatisfiable))
        border = cross_border.crossing(asset.labels, caller, runtime.participant_id)
        counter.uses += counted
        counter.denials += not decision.allow
        counter.last_used_at = utcnow() if decision.allow else counter.last_used_at
        session.add(counter)
        if fast is not None:
            await resumes.note(session, transfer.id, fast, counted=counted, uses_before=uses)
        elif counted:
            await resumes.forget(session, transfer.id)
        verdict = "allow" if decision.allow else "deny"
        timeline.decided(session, transfer.id, "usage", verdict, [*decision.reasons, *_purpose(declared)])
        await audit.append(
            session,
            actor=runtime.participant_id,
            action="usage.allowed" if decision.allow else "usage.denied",
            subject=agreement.id,
            transfer=transfer.id,
            consumer=transfer.counterparty_id,
            purpose=declared.purpose,
            event=declared.event,
            uses=counter.uses,
            **({"resumed": True} if resuming else {}),
            reasons=list(decision.reasons),
            obligations=[o.to_dict() for o in decision.obligations],
            agreement_module_hash=compiled(agreement).module.hash,
            policy_hash=policy.hash if policy is not None else None,
            asset=request["asset"] | request["artifact"],
            cross_border=border.to_dict() if border is not None else None,
        )
        filing = None
        if counted:
            await _side_effects(session, runtime, transfer, decision)
            if border is not None:
                filing = await cross_border.file(session, runtime.participant_id, transfer, asset, border)
    runtime.metrics.decided(decision)
    if not decision.allow:
        denied = "the agreement, its usage policy or the connector's rules denied this request"
        raise NotEntitled(denied, reasons=list(decision.reasons))
    headers = _headers(decision, runtime.clock(), sent_labels(asset))
    return Use(transfer, agreement, asset, decision, declared.query, headers, filing, fast, declared.format)


def _purpose(declared: Declared) -> list[str]:
    """What the consumer declared, for the timeline."""
    declarations = (("purpose", declared.purpose), ("event", declared.event))
    return [f"{name} {value!r} declared" for name, value in declarations if value]


def sent_labels(asset: Asset) -> Labels:
    """The labels of what a use sends: the asset's records, or aggregates of them, carry the asset's."""
    return strictest(asset.labels)


def executable(decision: Decision, query: dict[str, Any] | None) -> Decision:
    """The decision, or a denial when one of its obligations cannot be carried out (fail closed)."""
    if not decision.allow:
        return decision
    try:
        require_supported(decision.obligations, KNOWN_KINDS)
        for notify in decision.of_kind("notify"):
            if not notify.params.get("url"):
                raise ObligationError(f"notify {notify.params.get('party')!r} has no address to notify")
        for delete in decision.of_kind("delete_after"):
            deadline(delete, utcnow())
        if decision.of_kind("compute") and not isinstance(query, QueryPlan):
            raise ObligationError("compute-to-data: send a query (tessera query); raw records never leave")
        for rule in decision.of_kind("aggregate"):
            if query is None:
                raise AggregateRefused("aggregate-only data: send an aggregate query; raw records never leave")
            aggregate([], rule, query)  # refuses a query the policy does not allow before a use is counted
    except ObligationError as exc:
        return Decision(allow=False, reasons=(f"obligation cannot be carried out: {exc.detail}",))
    return decision


async def _side_effects(session: AsyncSession, runtime: Runtime, transfer: Transfer, decision: Decision) -> None:
    for log in decision.of_kind("log"):
        await audit.append(
            session,
            actor=runtime.participant_id,
            action="usage.logged",
            subject=transfer.agreement_id,
            transfer=transfer.id,
            event=log.params.get("event"),
        )
    for notify in decision.of_kind("notify"):
        body = {
            "event": notify.params.get("event", "use"),
            "agreement": transfer.agreement_id,
            "transfer": transfer.id,
            "consumer": transfer.counterparty_id,
            "at": rfc3339(),
        }
        # Its own outbox lane: a slow party to notify must not hold up the transfer's protocol messages.
        enqueue(
            session,
            process_id=f"notify:{new_id()}",
            url=str(notify.params["url"]),
            audience=str(notify.params.get("party") or runtime.participant_id),
            body=body,
        )
        timeline.record(session, transfer.id, "queued", "notification", detail=str(notify.params["url"]))


def deadline(delete: Obligation, now: datetime) -> tuple[datetime, str]:
    """When a delete-after obligation falls due, and the header text for it (a given date as given)."""
    try:
        if date := delete.params.get("date"):
            return parse(str(date)), str(date)
        moment = now + timedelta(seconds=int(delete.params.get("seconds", 0)))
    except (TypeError, ValueError) as exc:
        raise ObligationError(f"delete_after {delete.params} names no time: {exc}") from exc
    return moment, rfc3339(moment)


def _headers(decision: Decision, now: datetime, labels: Labels) -> dict[str, str]:
    headers = {LABELS_HEADER: json.dumps(labels.to_dict(), sort_keys=True)}
    deadlines = [deadline(delete, now) for delete in decision.of_kind("delete_after")]
    if deadlines:
        headers[DELETE_AFTER_HEADER] = min(deadlines)[1]  # the earliest
    for next_policy in decision.of_kind("next_policy"):
        headers[NEXT_POLICY_HEADER] = json.dumps(next_policy.params, sort_keys=True)
    if decision.mask:
        headers["Tessera-Masked-Fields"] = ",".join(decision.mask)
    return headers


async def content(runtime: Runtime, use: Use) -> tuple[AsyncIterator[bytes], str]:
    """The data of an allowed use, obligations applied, as a metered byte stream and its media type."""
    asset, decision = use.asset, use.decision
    source = source_of(asset)
    rules = decision.of_kind("aggregate")
    if rules:
        assert use.query is not None
        rows = await _served(runtime, use, shaping.aggregated, source, rules[0], use.query)
        fmt = use.format or "json"  # aggregates are JSON unless the consumer asks for another format
        chunks = iterate_in_threadpool(_aggregate_rows(rows, fmt))
    else:
        fmt = use.format or asset.format
        opened = await _served(runtime, use, sources.opened, source)
        batches = shaping.shaped(opened, decision.obligations, text=asset.format == "csv")  # raises before any batch
        chunks = iterate_in_threadpool(writers.write(batches, fmt))
    return _metered(runtime, use, chunks), MEDIA_TYPES[fmt]


async def _served(runtime: Runtime, use: Use, work: Callable[..., T], *args: Any) -> T:
    """`work(*args)` in a worker thread, before the response starts: a source that fails there (a backend
    down, a SQL table whose columns changed) is the answer, not a broken stream, and the use it could not
    serve is given back."""
    try:
        return await run_in_threadpool(work, *args)
    except TesseraError as exc:
        async with runtime.transaction() as session:
            counter = await session.get(UsageCounter, use.agreement.id)
            if counter is not None and counter.uses > 0:
                counter.uses -= 1
            await audit.append(
                session,
                actor=runtime.participant_id,
                action="usage.returned",
                subject=use.agreement.id,
                transfer=use.transfer.id,
                reason=exc.detail,
            )
        raise


def _aggregate_rows(rows: list[dict[str, Any]], fmt: str) -> Iterator[bytes]:
    if fmt == "json":
        return write_records(rows, "json")  # as before the batch path: one array, metrics as computed
    return writers.write([pa.RecordBatch.from_pylist(rows)], fmt)


def stored_content(runtime: Runtime, use: Use) -> AsyncIterator[bytes]:
    """A fast-path use's stored file as it is, as a metered byte stream (for a push)."""
    assert use.fetch is not None
    return _metered(runtime, use, fast_path.file_bytes(use.fetch.stored))


async def _metered(runtime: Runtime, use: Use, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    sent = 0
    try:
        async for chunk in chunks:
            sent += len(chunk)
            yield chunk
    finally:
        await asyncio.shield(count_bytes(runtime, use, sent))


async def count_bytes(runtime: Runtime, use: Use, sent: int) -> None:
    """Meter the bytes of a use as they went out; a cross-border use's filing learns them in the same
    transaction, and a fast-path answer cut short charges its use only what it sent (`resumes.settle`)."""
    runtime.metrics.bytes_sent.inc(sent)
    async with runtime.transaction() as session:
        counter = await session.get(UsageCounter, use.agreement.id)
        if counter is not None:
            counter.bytes += sent
        if use.fetch is not None:
            await resumes.settle(session, use.transfer.id, use.fetch.stored.etag, use.fetch.length - sent)
        if use.filing is not None:
            await cross_border.sent(
                session,
                actor=runtime.participant_id,
                agreement_id=use.agreement.id,
                filing_id=use.filing,
                sent_bytes=sent,
            )
