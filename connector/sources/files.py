"""Local files: CSV, a JSON array, JSON Lines and Parquet.

CSV columns are read as strings, the values exactly as stored (as `csv.DictReader` gives them).
"""

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from connector.assets import MEDIA_TYPES
from connector.sources.base import CSV_PARSE, SourceError, Stored, json_array_batches, project

BLOCK_BYTES = 1 << 20  # what a reader parses at a time: memory stays bounded whatever the file's size
PROJECTED_BATCH_ROWS = 1 << 18


class FileSource:
    def __init__(self, path: Path, format: str) -> None:
        self.path = path
        self.format = format

    def stored(self) -> Stored | None:
        try:
            status = self.path.stat()
        except OSError as exc:
            raise SourceError(f"the asset's file cannot be read: {exc.strerror}") from exc
        # Size, modification time and inode change when the file is rewritten: a strong enough validator.
        tag = hashlib.sha256(f"{status.st_size}:{status.st_mtime_ns}:{status.st_ino}".encode()).hexdigest()[:32]
        return Stored(self.path, status.st_size, f'"{tag}"', MEDIA_TYPES[self.format])

    def schema(self) -> pa.Schema:
        if self.format == "parquet":
            return pq.read_schema(self.path)
        if self.format == "csv":
            return self._csv_reader().schema
        first = next(self.batches(), None)
        return first.schema if first is not None else pa.schema([])

    def batches(self, columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        try:
            if self.format == "csv":
                yield from self._csv_reader(columns)
            elif self.format == "parquet":
                yield from self._parquet(columns)
            elif self.format == "jsonl":
                if self._blank():
                    return  # Arrow's reader refuses a stream without records; the record path read none
                options = pa_json.ReadOptions(block_size=BLOCK_BYTES)
                yield from (project(batch, columns) for batch in pa_json.open_json(self.path, read_options=options))
            else:
                yield from (project(batch, columns) for batch in self._json_array())
        except (OSError, pa.ArrowInvalid) as exc:
            raise SourceError(f"the asset's {self.format} file cannot be read: {exc}") from exc

    def _blank(self) -> bool:
        with self.path.open("rb") as fh:
            return not fh.read(BLOCK_BYTES).strip() and not fh.read(1)

    def _parquet(self, columns: Sequence[str] | None) -> Iterator[pa.RecordBatch]:
        data = pq.ParquetFile(self.path)
        if columns is None:
            yield from data.iter_batches()
            return
        wanted = set(columns)
        names = [name for name in data.schema_arrow.names if name in wanted]
        # Few columns: larger batches, as memory allows, for fewer rounds of per-batch work.
        yield from data.iter_batches(batch_size=PROJECTED_BATCH_ROWS, columns=names)

    def _csv_reader(self, columns: Sequence[str] | None = None) -> pa_csv.CSVStreamingReader:
        names = pa_csv.open_csv(self.path, parse_options=CSV_PARSE).schema.names
        wanted = None if columns is None else [name for name in names if name in set(columns)]
        return pa_csv.open_csv(
            self.path,
            read_options=pa_csv.ReadOptions(block_size=BLOCK_BYTES),
            parse_options=CSV_PARSE,
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=False, include_columns=wanted
            ),
        )

    def _json_array(self) -> Iterator[pa.RecordBatch]:
        with self.path.open("rb") as fh:
            yield from json_array_batches(fh, "the asset's")
