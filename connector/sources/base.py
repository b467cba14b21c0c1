"""What every source of an asset's data offers the data plane.

A `Source` gives its data as Arrow record batches, in bounded memory, for the data plane to shape
under a decision's obligations; a source whose data is a file that may go out as it is also names
that file (`stored`), so an allowed use without record obligations streams the bytes untouched, with
`Range` for resumed pulls.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

import ijson
import pyarrow as pa
import pyarrow.csv as pa_csv

from tessera.errors import TesseraError

JSON_BATCH_RECORDS = 10_000
CSV_PARSE = pa_csv.ParseOptions(newlines_in_values=True)  # a quoted value may hold a line break, as CSV allows


class SourceError(TesseraError, status=502, title="The data source failed"):
    """A source could not give its data. The text never names a backend's address or secret."""


@dataclass(frozen=True)
class Stored:
    """A file whose bytes are the data as served."""

    path: Path
    size: int
    etag: str  # a strong validator: it changes when the bytes do
    media_type: str


class Source(Protocol):
    format: str  # how the data is served by default: csv, json, jsonl or parquet

    def stored(self) -> Stored | None:
        """The file to send as it is, or None when the data must be read to be sent."""
        ...

    def schema(self) -> pa.Schema:
        """The columns, as `batches` gives them."""
        ...

    def batches(self, columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        """The records, a batch at a time; only `columns` (those of them the data has) when given, which
        a columnar file reads alone. Blocking: call it in a worker thread."""
        ...


def project(batch: pa.RecordBatch, columns: Sequence[str] | None) -> pa.RecordBatch:
    """Only `columns` of `batch`, those it has, in its order; all of it when `columns` is None."""
    if columns is None:
        return batch
    wanted = set(columns)
    return batch.select([name for name in batch.schema.names if name in wanted])


def json_array_batches(stream: IO[bytes], whose: str) -> Iterator[pa.RecordBatch]:
    """The records of a JSON array, a batch at a time (Arrow's reader cannot split an array; ijson walks it).
    `whose` names the data in the error for an item that is no record ("the asset's")."""
    batch: list[dict[str, Any]] = []
    for item in ijson.items(stream, "item", use_float=True):
        if not isinstance(item, dict):
            raise SourceError(f"{whose} JSON array holds an item that is no record (object)")
        batch.append(item)
        if len(batch) == JSON_BATCH_RECORDS:
            yield pa.RecordBatch.from_pylist(batch)
            batch = []
    if batch:
        yield pa.RecordBatch.from_pylist(batch)
