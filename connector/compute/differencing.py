"""Differencing protection for answers without noise: no two released groups may differ by 1 to k-1 records.

Each group an un-noised answer releases is kept, per agreement and version of the asset (the source's
etag), as the set of its records' positions in the asset as served: sorted, delta-encoded and
compressed. A new query is refused when one of its groups differs from an earlier released group
(symmetric difference) by at least 1 and fewer than k records: the two answers together would
describe those few records. What this does and does not guarantee is in docs/compute.md.
"""

import zlib

import numpy as np
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


def encode(positions: np.ndarray) -> bytes:
    ordered = np.sort(positions.astype(np.int64))
    return zlib.compress(np.diff(ordered, prepend=0).tobytes())


def decode(blob: bytes) -> np.ndarray:
    return np.cumsum(np.frombuffer(zlib.decompress(blob), dtype=np.int64))


def difference(a: np.ndarray, b: np.ndarray) -> int:
    """The size of the symmetric difference of two sets of positions (each without repeats)."""
    return int(a.size + b.size - 2 * np.intersect1d(a, b, assume_unique=True).size)


async def refusals(
    session: AsyncSession, agreement_id: str, version: str, groups: list[np.ndarray], k: int
) -> list[str]:
    """Why the groups may not be released beside the earlier ones (empty: they may)."""
    found: list[str] = []
    for group in groups:
        near = select(ReleasedGroup).where(
            col(ReleasedGroup.agreement_id) == agreement_id,
            col(ReleasedGroup.version) == version,
            col(ReleasedGroup.size) > group.size - k,
            col(ReleasedGroup.size) < group.size + k,
        )
        ordered = np.sort(group)
        for earlier in (await session.exec(near)).all():
            if 0 < (apart := difference(ordered, decode(earlier.positions))) < k:
                found.append(
                    f"differencing: a group of {group.size} records differs by {apart} from a group of "
                    f"{earlier.size} released before under this agreement (at least {k} needed)"
                )
                break
    return found


def record(session: AsyncSession, agreement_id: str, version: str, groups: list[np.ndarray]) -> None:
    for group in groups:
        session.add(ReleasedGroup(agreement_id=agreement_id, version=version, size=group.size, positions=encode(group)))
