"""Record batches written out as CSV, JSON Lines, a JSON array or Parquet, a batch at a time.

Each writer yields the bytes of one batch before it reads the next, so memory stays bounded by a
batch whatever the data's size. CSV goes through pyarrow's writer (the header once, quoting
where a value needs it; nested values as JSON text), Parquet through pyarrow's, JSON through
polars (UTF-8 as it is, one object per record).
"""

import io
import json
from collections.abc import Callable, Iterable, Iterator

import polars as pl
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from connector.sources import MEDIA_TYPES

__all__ = ["FORMATS", "write"]

FORMATS = tuple(MEDIA_TYPES)  # csv, json, jsonl, parquet


def write(batches: Iterable[pa.RecordBatch], fmt: str) -> Iterator[bytes]:
    """The batches in `fmt`, as chunks of bytes (one or more per batch)."""
    writers: dict[str, Callable[[Iterable[pa.RecordBatch]], Iterator[bytes]]] = {
        "csv": _csv,
        "jsonl": _json_lines,
        "json": _json_array,
        "parquet": _parquet,
    }
    return writers[fmt](batches)


def _csv(batches: Iterable[pa.RecordBatch]) -> Iterator[bytes]:
    sink = io.BytesIO()
    writer: pa_csv.CSVWriter | None = None
    schema = pa.schema([])
    options = pa_csv.WriteOptions(quoting_style="needed")
    for batch in batches:
        batch = _flat_for_csv(batch)
        if writer is None:
            schema = batch.schema
            writer = pa_csv.CSVWriter(sink, schema, write_options=options)
        writer.write_batch(_conformed(batch, schema))
        yield _drain(sink)
    if writer is not None:
        writer.close()
    if chunk := _drain(sink):
        yield chunk


def _flat_for_csv(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Nested columns as JSON text: a CSV cell holds one value."""
    for i, column in enumerate(batch.columns):
        if pa.types.is_nested(column.type):
            text = [None if v is None else json.dumps(v, ensure_ascii=False) for v in column.to_pylist()]
            batch = batch.set_column(i, batch.schema.field(i).name, pa.array(text, pa.string()))
    return batch


def _conformed(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """A later batch in the first one's columns (a JSON source may read a column with another type)."""
    if batch.schema.equals(schema):
        return batch
    columns = [
        batch.column(f.name).cast(f.type) if f.name in batch.schema.names else pa.nulls(batch.num_rows, f.type)
        for f in schema
    ]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _json_lines(batches: Iterable[pa.RecordBatch]) -> Iterator[bytes]:
    for batch in batches:
        if batch.num_rows:
            yield _lines(batch)


def _json_array(batches: Iterable[pa.RecordBatch]) -> Iterator[bytes]:
    yield b"["
    first = True
    for batch in batches:
        if batch.num_rows:
            # A newline inside a JSON value is escaped, so each one ends a record.
            yield (b"" if first else b",") + _lines(batch).rstrip(b"\n").replace(b"\n", b",")
            first = False
    yield b"]"


def _lines(batch: pa.RecordBatch) -> bytes:
    if not batch.num_columns:  # every field masked: the records are still there, empty
        return b"{}\n" * batch.num_rows
    frame = pl.from_arrow(batch)
    assert isinstance(frame, pl.DataFrame)
    return frame.write_ndjson().encode()


def _parquet(batches: Iterable[pa.RecordBatch]) -> Iterator[bytes]:
    sink = io.BytesIO()
    writer: pq.ParquetWriter | None = None
    schema = pa.schema([])
    for batch in batches:
        if writer is None:
            schema = batch.schema
            writer = pq.ParquetWriter(sink, schema)
        if batch.num_rows:
            writer.write_batch(_conformed(batch, schema))
            yield _drain(sink)
    if writer is None:
        writer = pq.ParquetWriter(sink, pa.schema([]))
    writer.close()
    yield _drain(sink)


def _drain(sink: io.BytesIO) -> bytes:
    data = sink.getvalue()
    sink.seek(0)
    sink.truncate()
    return data
