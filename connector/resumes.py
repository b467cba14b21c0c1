"""Resumed pulls: which request continues a use already counted, so an interrupted pull costs one use.

The provider records per transfer the counted use its stored file was last sent under (`CountedUse`):
the file's ETag and size, the uses the decision saw, and the bytes sent under it, the first response
and its resumes together. A request continues that use (`continues`) when it asks for one range that
starts after byte 0 of the same file version (same ETag; an `If-Range` naming another sends the whole
file) and the bytes sent under the use stay within the file's size plus `RESUME_ALLOWANCE` (what a
broken connection can have lost in flight, at most the file's size again). Anything else is a new use.
So a consumer can resume as often as it likes but never gets a second copy for free: `Range: bytes=0-`
is a full pull, and `bytes=1-` over and over soon exhausts the allowance. Every request is still
decided by the agreement and its policy (`usage.decide_use`); a continuation is decided as its use was,
on the uses before it.
"""

from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from connector.fast_path import Fetch
from connector.ranges import ByteRange
from tessera.policy import Decision
from tessera.policy.obligations import RECORD_KINDS

RESUME_ALLOWANCE = 16 * 1024 * 1024  # bytes a use may re-send across its resumes (in-flight losses)
SHAPING_KINDS = RECORD_KINDS | {"aggregate"}  # obligations that change the bytes: no fast path


class CountedUse(SQLModel, table=True):
    """The counted use a transfer's stored file was last sent under (provider side)."""

    __tablename__ = "counted_use"

    transfer_id: str = Field(primary_key=True)
    etag: str
    size: int
    uses_before: int  # the `input.uses` the counted use was decided on
    sent: int = 0  # bytes sent, or on their way, under this use


def untouched(decision: Decision) -> bool:
    """Whether an allowed use sends the data as it is stored: no obligation reshapes its records."""
    return not any(obligation.kind in SHAPING_KINDS for obligation in decision.obligations)


def continues(record: CountedUse | None, fetch: Fetch | None) -> bool:
    """Whether a request resumes the transfer's counted use (see the module's rule)."""
    if record is None or fetch is None or not isinstance(fetch.wanted, ByteRange) or fetch.wanted.start == 0:
        return False
    allowance = min(record.size, RESUME_ALLOWANCE)
    return record.etag == fetch.stored.etag and record.sent + fetch.length <= record.size + allowance


async def note(
    session: AsyncSession, transfer_id: str, fetch: Fetch, *, counted: bool, uses_before: int
) -> CountedUse | None:
    """Record what an allowed fast-path answer will send: a new counted use, or more bytes under one."""
    record = await session.get(CountedUse, transfer_id)
    if counted:
        stored = fetch.stored
        record = record or CountedUse(transfer_id=transfer_id, etag=stored.etag, size=stored.size, uses_before=0)
        record.etag, record.size, record.uses_before, record.sent = stored.etag, stored.size, uses_before, 0
    if record is None:
        return None
    record.sent += fetch.length
    session.add(record)
    return record


async def forget(session: AsyncSession, transfer_id: str) -> None:
    """A new use that is not sent as stored: there is nothing to resume any more."""
    if (record := await session.get(CountedUse, transfer_id)) is not None:
        await session.delete(record)


async def settle(session: AsyncSession, transfer_id: str, etag: str, unsent: int) -> None:
    """An answer ended early: the bytes it did not send are not charged to its use."""
    record = await session.get(CountedUse, transfer_id)
    if record is not None and record.etag == etag and unsent > 0:
        record.sent = max(0, record.sent - unsent)
        session.add(record)
