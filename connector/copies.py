"""The consumer's copies of received data, and the delete-after obligation on them.

Every pull the consumer makes through its connector, and every push it receives, is kept as a copy
in the connector's `received/` directory. The consumer carries out the agreement's own duties: it
compiles them (`policies.compiler.compile_duties`, the library's duty patterns) when a copy arrives;
a `delete` duty and the provider's delete-after obligation (the `Tessera-Delete-After` header) both
set a deadline and the earlier wins; a `nextPolicy` duty is recorded with the copy (audit) as the
policy any onward transfer must carry. Duties the consumer cannot carry out mean it may not keep the
copy: it is due at once. The header is checked where it is received (`deadline`: RFC 3339 with a zone,
within 2000 and a hundred years from now); one we cannot read makes the copy due at once too, and the
copy says why (`due_now_because`). The sweeper deletes a copy when it falls due, records that in the
audit log and reports it to the provider, which records it too. It handles each copy on its own: one
that cannot be deleted is marked with the error (`sweep_error`) and tried again with backoff, never
given up on, and never holds up the others.

A copy keeps the labels the provider sent with the data (`Tessera-Labels`); offered on as an asset of
ours (`POST /api/assets` with `copy_id`, or the copy's path), it carries them on and may not be
labelled lower (`republished_labels`).
"""

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
from sqlmodel import Field, SQLModel, col, func, or_, select
from sqlmodel.ext.asyncio.session import AsyncSession

from connector import timeline, usage
from connector.agreements import Agreement
from connector.assets import LabelsIn
from connector.outbox import enqueue
from connector.runtime import Runtime
from connector.transfers import Transfer
from policies.compiler import compile_duties
from tessera import audit
from tessera.clock import parse, rfc3339, utcnow
from tessera.errors import BadRequest, Gone, NotFound, PeerError, PolicyEvaluationError
from tessera.ids import new_id
from tessera.json import JSONObject, load_object
from tessera.labels import Labels
from tessera.leases import POLL_SECONDS
from tessera.policy.obligations import ObligationError
from tessera.store import Json, Timestamp, UtcDateTime

logger = logging.getLogger("tessera.copies")
LEASE = "sweep:copies"
SWEEP_AT_LEAST_EVERY = 60.0  # seconds; copies due earlier wake the sweeper themselves
FIRST_RETRY = 1.0  # seconds before a copy that could not be deleted is tried again; doubles per failure
LONGEST_RETRY = 600.0  # seconds between attempts at most: a copy due for deletion is never given up on
EARLIEST_DELETE_AFTER = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_DELETE_AFTER = timedelta(days=36525)  # a hundred years from now
SUFFIX = {
    "text/csv": ".csv",
    "application/json": ".json",
    "application/x-ndjson": ".jsonl",
    "application/vnd.apache.parquet": ".parquet",
}


class ReceivedCopy(SQLModel, table=True):
    __tablename__ = "received_copy"

    id: str = Field(primary_key=True)
    transfer_id: str = Field(index=True)
    agreement_id: str
    path: str
    bytes: int = 0
    received_at: Timestamp = Field(default_factory=utcnow, sa_type=UtcDateTime)
    delete_at: Timestamp | None = Field(default=None, index=True, sa_type=UtcDateTime)  # the provider's obligation
    due_now_because: str | None = None  # why the copy was due at once (an unreadable deadline or duty)
    deleted_at: Timestamp | None = Field(default=None, sa_type=UtcDateTime)
    # A deletion that failed: why, how often, and when the sweeper tries again.
    sweep_error: str | None = None
    sweep_failures: int = 0
    retry_at: Timestamp | None = Field(default=None, sa_type=UtcDateTime)
    labels: JSONObject | None = Field(default=None, sa_type=Json)  # the provider's labels; None: it sent none

    @property
    def source_labels(self) -> Labels | None:
        return Labels.from_dict(self.labels) if self.labels is not None else None

    def public(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


@dataclass(frozen=True)
class DeleteAfter:
    """The provider's delete-after obligation as received: when, or why the copy is due at once."""

    at: datetime | None = None  # None: the provider set none
    problem: str | None = None  # why `at` is the time it was received: the header could not be read


def deadline(header: str | None, now: datetime | None = None) -> DeleteAfter:
    """The time a provider's `Tessera-Delete-After` header names, checked where it is received: RFC 3339
    with a zone, between 2000 and `LATEST_DELETE_AFTER` from now. One we cannot read makes the copy due
    now (fail closed: a copy whose deadline we cannot read is never kept for ever)."""
    if header is None:
        return DeleteAfter()
    now = now or utcnow()
    try:
        at = rfc3339_time(header)
    except ValueError as exc:
        return DeleteAfter(now, f"the provider's delete-after {header[:80]!r} is not an RFC 3339 time: {exc}")
    if not EARLIEST_DELETE_AFTER <= at <= now + LATEST_DELETE_AFTER:
        return DeleteAfter(now, f"the provider's delete-after {header!r} is out of range (2000 to 100 years from now)")
    return DeleteAfter(at)


_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")


def rfc3339_time(text: str) -> datetime:
    """An RFC 3339 date-time with a zone offset, as an aware UTC datetime; ValueError naming what is wrong."""
    if not _RFC3339.fullmatch(text):
        raise ValueError("expected YYYY-MM-DDTHH:MM:SS[.fraction] and Z or an offset ±HH:MM")
    try:
        return parse(text.upper())
    except (ValueError, OverflowError) as exc:
        raise ValueError(str(exc)) from exc


def labels_of(header: str | None) -> Labels | None:
    """The labels a provider's `Tessera-Labels` header names; PeerError if it names none."""
    if header is None:
        return None
    try:
        return Labels.from_dict(load_object(header, "the provider's labels", PeerError))
    except ValueError as exc:
        raise PeerError(f"the provider's labels {header!r} are not labels: {exc}") from exc


async def source_of(runtime: Runtime, *, copy_id: str | None, path: str | None) -> ReceivedCopy | None:
    """The received copy an asset is made of (named, or found by its path), or None for a file of ours."""
    async with runtime.db.session() as session:
        if copy_id is not None:
            copy = await session.get(ReceivedCopy, copy_id)
            if copy is None:
                raise NotFound(f"no received copy {copy_id}")
        else:
            copy = (await session.exec(select(ReceivedCopy).where(ReceivedCopy.path == path))).first()
    if copy is not None and copy.deleted_at is not None:
        raise Gone(f"copy {copy.id} was deleted at {rfc3339(copy.deleted_at)}, as its delete-after obligation required")
    return copy


def republished_labels(copy: ReceivedCopy, given: LabelsIn, default: Labels) -> Labels:
    """A copy offered on keeps its source's labels: `given` may make them stricter, never laxer."""
    source = copy.source_labels
    given_fields = given.model_dump(include=set(LabelsIn.model_fields), exclude_none=True)
    labels = Labels(**((source or default).to_dict() | given_fields))
    if source is not None and (laxer := labels.lower_than(source)):
        raise BadRequest(f"copy {copy.id} is offered on with its source's labels: " + "; ".join(laxer), reasons=laxer)
    return labels


@dataclass(frozen=True)
class Duties:
    """What the agreement obliges the consumer to do with a copy received at a given time."""

    delete_at: datetime | None = None
    next_policies: tuple[JSONObject, ...] = ()
    problems: tuple[str, ...] = ()


async def agreed_duties(runtime: Runtime, agreement_id: str, received_at: datetime) -> Duties:
    """The agreement's duties for a copy, decided on the consumer's engine; cannot-carry-out means due now."""
    async with runtime.db.session() as session:
        agreement = await session.get(Agreement, agreement_id)
    compiled = compile_duties(agreement.document) if agreement is not None else None
    if agreement is None or compiled is None:
        return Duties()
    caller = {"sub": runtime.participant_id}
    request = {"now": rfc3339(received_at), "caller": caller, "agreement": {"id": agreement.id}}
    try:
        decision = await runtime.engine.decide(compiled.module, request)
        deadlines = [usage.deadline(o, received_at)[0] for o in decision.of_kind("delete_after")]
    except (PolicyEvaluationError, ObligationError) as exc:
        return Duties(received_at, problems=(exc.detail,))
    if not decision.allow:
        return Duties(received_at, problems=decision.reasons)
    next_policies = tuple(o.params for o in decision.of_kind("next_policy"))
    return Duties(min(deadlines, default=None), next_policies)


def stricter(*deadlines: datetime | None) -> datetime | None:
    """The earliest of the deadlines that are set."""
    return min((d for d in deadlines if d is not None), default=None)


def new_path(runtime: Runtime, media_type: str) -> tuple[str, Path]:
    folder = (runtime.config.directory / "received").resolve()  # absolute, as an asset's path is
    folder.mkdir(exist_ok=True)
    copy_id = new_id()
    suffix = SUFFIX.get(media_type.split(";")[0].strip(), ".bin")
    return copy_id, folder / (copy_id.removeprefix("urn:uuid:") + suffix)


async def keep(
    runtime: Runtime,
    transfer: Transfer,
    chunks: AsyncIterator[bytes],
    media_type: str,
    delete_after: DeleteAfter,
    labels: Labels | None,
) -> AsyncIterator[bytes]:
    """Pass `chunks` on while writing them to a new copy; the copy is recorded once complete, and a pull
    cut short leaves none (its resumed remainder is passed on, not kept: we keep whole copies only)."""
    copy_id, path = new_path(runtime, media_type)
    partial = path.with_suffix(path.suffix + ".part")
    size = 0
    try:
        async with await anyio.open_file(partial, "wb") as fh:
            async for chunk in chunks:
                size += len(chunk)
                await fh.write(chunk)
                yield chunk
        await anyio.Path(partial).replace(path)  # a reader never sees half the data
    finally:
        partial.unlink(missing_ok=True)  # blocking, but short: an aclose() may come while the loop winds down
    await record(runtime, transfer, copy_id, path, size, delete_after, labels)


async def store(
    runtime: Runtime,
    transfer: Transfer,
    chunks: AsyncIterator[bytes],
    media_type: str,
    delete_after: DeleteAfter,
    labels: Labels | None,
) -> None:
    """Write `chunks` to a new copy (pushed data)."""
    async for _chunk in keep(runtime, transfer, chunks, media_type, delete_after, labels):
        pass


async def latest(runtime: Runtime, transfer_id: str) -> ReceivedCopy | None:
    async with runtime.db.session() as session:
        query = select(ReceivedCopy).where(ReceivedCopy.transfer_id == transfer_id)
        return (await session.exec(query.order_by(col(ReceivedCopy.received_at).desc()))).first()


async def record(
    runtime: Runtime,
    transfer: Transfer,
    copy_id: str,
    path: Path,
    size: int,
    delete_after: DeleteAfter,
    labels: Labels | None,
) -> ReceivedCopy:
    """Record a complete copy; its deadline is the stricter of the provider's header and the agreement's duty."""
    received_at = utcnow()
    duties = await agreed_duties(runtime, transfer.agreement_id, received_at)
    delete_at = delete_after.at
    due_now = [*([delete_after.problem] if delete_after.problem else []), *duties.problems]
    copy = ReceivedCopy(
        id=copy_id,
        transfer_id=transfer.id,
        agreement_id=transfer.agreement_id,
        path=str(path),
        bytes=size,
        received_at=received_at,
        delete_at=stricter(delete_at, duties.delete_at, received_at if due_now else None),
        due_now_because="; ".join(due_now) or None,
        labels=labels.to_dict() if labels is not None else None,
    )
    async with runtime.transaction() as session:
        session.add(copy)
        detail = f"copy {copy_id}, {size} bytes, delete at {_text(copy.delete_at) or 'no deadline'}"
        why = f": due now, {copy.due_now_because}" if copy.due_now_because else ""
        timeline.record(session, transfer.id, "copy", None, detail=detail + why)
        await audit.append(
            session,
            actor=runtime.participant_id,
            action="copy.received",
            subject=transfer.agreement_id,
            copy=copy_id,
            transfer=transfer.id,
            bytes=size,
            delete_at=_text(copy.delete_at),
            provider_delete_at=_text(delete_at),
            provider_delete_at_problem=delete_after.problem,
            agreement_delete_at=_text(duties.delete_at),
            next_policy=list(duties.next_policies),
            duty_problems=list(duties.problems),
            labels=copy.labels,
        )
    runtime.wake_sweeper()
    return copy


class Sweeper:
    """Deletes copies whose delete-after time has come, and tells their providers."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._wakeup = asyncio.Event()

    def wake(self) -> None:
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            self._wakeup.clear()
            try:
                async with self._runtime.leases.holding(LEASE) as held:  # one replica per sweep
                    delay = await self.sweep() if held else POLL_SECONDS
            except Exception:  # keep sweeping; the copies stay recorded
                logger.exception("sweeping expired copies failed")
                delay = SWEEP_AT_LEAST_EVERY
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=delay)

    async def sweep(self) -> float:
        """Delete what is due, each copy on its own; return the seconds until the next copy falls due.

        A copy that cannot be deleted is marked with why and tried again later (backing off up to
        `LONGEST_RETRY`); it never stops the others.
        """
        for copy_id in await self._due(utcnow()):
            await self._sweep_one(copy_id)
        return await self._next_wait(utcnow())

    async def _sweep_one(self, copy_id: str) -> None:
        try:
            await self._delete(copy_id)
        except Exception as exc:  # a bad file or record: this copy waits for its retry, the others go on
            logger.exception("could not delete copy %s", copy_id)
            try:
                await self._failed(copy_id, exc)
            except Exception:
                logger.exception("could not mark copy %s as failed either", copy_id)

    def _pending(self) -> Any:
        return select(ReceivedCopy.id).where(
            col(ReceivedCopy.delete_at).is_not(None), col(ReceivedCopy.deleted_at).is_(None)
        )

    async def _due(self, now: datetime) -> list[str]:
        """The copies due for deletion and not waiting for a retry (ids only: each is read on its own)."""
        query = self._pending().where(
            col(ReceivedCopy.delete_at) <= now,
            or_(col(ReceivedCopy.retry_at).is_(None), col(ReceivedCopy.retry_at) <= now),
        )
        async with self._runtime.db.session() as session:
            return list(await session.exec(query))

    async def _next_wait(self, now: datetime) -> float:
        """Until the soonest deadline or retry of a copy not yet deleted, at most `SWEEP_AT_LEAST_EVERY`."""
        soonest_of = func.min(func.coalesce(ReceivedCopy.retry_at, ReceivedCopy.delete_at), type_=UtcDateTime)
        query = select(soonest_of).where(
            col(ReceivedCopy.delete_at).is_not(None), col(ReceivedCopy.deleted_at).is_(None)
        )
        async with self._runtime.db.session() as session:
            soonest: datetime | None = (await session.exec(query)).one()
        wait = SWEEP_AT_LEAST_EVERY if soonest is None else (soonest - now).total_seconds()
        return max(0.05, min(SWEEP_AT_LEAST_EVERY, wait))

    async def _failed(self, copy_id: str, exc: Exception) -> None:
        async with self._runtime.transaction() as session:
            copy = await session.get(ReceivedCopy, copy_id)
            if copy is None:
                return
            backoff = min(LONGEST_RETRY, FIRST_RETRY * 2**copy.sweep_failures)
            copy.sweep_failures += 1
            copy.sweep_error = f"{type(exc).__name__}: {exc}"[:1000]
            copy.retry_at = utcnow() + timedelta(seconds=backoff)
            await audit.append(
                session,
                actor=self._runtime.participant_id,
                action="copy.delete_failed",
                subject=copy.agreement_id,
                copy=copy.id,
                error=copy.sweep_error,
                failures=copy.sweep_failures,
                retry_at=rfc3339(copy.retry_at),
            )

    async def _delete(self, copy_id: str) -> None:
        runtime = self._runtime
        async with runtime.db.session() as session:
            copy = await session.get(ReceivedCopy, copy_id)
        if copy is None or copy.deleted_at is not None:
            return
        await anyio.Path(copy.path).unlink(missing_ok=True)
        async with runtime.transaction() as session:
            stored = await session.get(ReceivedCopy, copy.id)
            if stored is None or stored.deleted_at:
                return
            stored.deleted_at = utcnow()
            stored.retry_at = None
            await audit.append(
                session,
                actor=runtime.participant_id,
                action="copy.deleted",
                subject=copy.agreement_id,
                copy=copy.id,
                deleted_at=rfc3339(stored.deleted_at),
                obligation="delete_after",
                due=_text(copy.delete_at),
                due_now_because=copy.due_now_because,
            )
            if (transfer := await session.get(Transfer, copy.transfer_id)) is not None:
                _report(session, transfer, stored)
        logger.info(
            "deleted copy %s of agreement %s (delete-after %s)", copy.id, copy.agreement_id, _text(copy.delete_at)
        )


def _report(session: AsyncSession, transfer: Transfer, copy: ReceivedCopy) -> None:
    """Tell the provider that the copy is gone (its data plane records it), and note it on the timeline."""
    assert copy.deleted_at is not None
    report = {
        "copy": copy.id,
        "agreement": copy.agreement_id,
        "deleted_at": rfc3339(copy.deleted_at),
        "due": _text(copy.delete_at),
    }
    url = f"{_data_plane(transfer)}/deletion"
    enqueue(session, process_id=f"deletion:{copy.id}", url=url, audience=transfer.counterparty_id, body=report)
    timeline.record(session, transfer.id, "copy", None, detail=f"copy {copy.id} deleted (due {report['due']})")


def _text(moment: datetime | None) -> str | None:
    return None if moment is None else rfc3339(moment)


def _data_plane(transfer: Transfer) -> str:
    """The provider's data endpoint of this transfer: its pull address, or `<provider>/data/<providerPid>`."""
    if transfer.data_address:
        return str(transfer.data_address["endpoint"]).rstrip("/")
    base = transfer.counterparty_address.rstrip("/").removesuffix("/dsp")
    return f"{base}/data/{transfer.provider_pid}"
