"""Differencing protection for answers without noise: no two released groups may differ by 1 to k-1 records.

Each group an un-noised answer releases is kept, per agreement and version of the asset (the source's
etag), as the set of its records' positions in the asset as served: sorted, delta-encoded and
compressed. A new query is refused when one of its groups differs from an earlier released group
(symmetric difference) by at least 1 and fewer than k records: the two answers together would
describe those few records. What this does and does not guarantee is in docs/compute.md.
"""

import itertools
import zlib
from array import array

import pyarrow as pa
import pyarrow.compute as pc
from sqlmodel import Field, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession


class ReleasedGroup(SQLModel, table=True):
    """The records of one group an agreement's un-noised answers released."""

    __tablename__ = "released_group"

    id: int | None = Field(default=None, primary_key=True)
    agreement_id: str = Field(index=True)
    version: str  # the asset's etag when the group was released
    size: int = Field(index=True)
    positions: bytes  # sorted record positions, delta-encoded int64, zlib-compressed


def encode(positions: pa.Int64Array) -> bytes:
    ordered = sorted(int(p) for p in positions.to_pylist() if p is not None)
    return zlib.compress(array("q", [b - a for a, b in zip([0, *ordered], ordered, strict=False)]).tobytes())


def decode(blob: bytes) -> pa.Int64Array:
    deltas = array("q")
    deltas.frombytes(zlib.decompress(blob))
    return pa.array(itertools.accumulate(deltas), pa.int64())


def difference(a: pa.Int64Array, b: pa.Int64Array) -> int:
    """The size of the symmetric difference of two sets of positions (each without repeats)."""
    shared = int(pc.sum(pc.cast(pc.is_in(a, value_set=b), pa.int64())).as_py() or 0)
    return len(a) + len(b) - 2 * shared


async def refusals(
    session: AsyncSession, agreement_id: str, version: str, groups: list[pa.Int64Array], k: int
) -> list[str]:
    """Why the groups may not be released beside the earlier ones (empty: they may)."""
    found: list[str] = []
    for group in groups:
        near = select(ReleasedGroup).where(
            col(ReleasedGroup.agreement_id) == agreement_id,
            col(ReleasedGroup.version) == version,
            col(ReleasedGroup.size) > len(group) - k,
            col(ReleasedGroup.size) < len(group) + k,
        )
        for earlier in (await session.exec(near)).all():
            if 0 < (apart := difference(group, decode(earlier.positions))) < k:
                found.append(
                    f"differencing: a group of {len(group)} records differs by {apart} from a group of "
                    f"{earlier.size} released before under this agreement (at least {k} needed)"
                )
                break
    return found


def record(session: AsyncSession, agreement_id: str, version: str, groups: list[pa.Int64Array]) -> None:
    for group in groups:
        session.add(ReleasedGroup(agreement_id=agreement_id, version=version, size=len(group), positions=encode(group)))
