"""Assets: datasets a provider offers, and how their records are read and written.

An asset is a file on the provider's side (CSV, a JSON array, or JSON Lines). Records are read
lazily and written out in batches, so a large file never sits whole in memory; the data plane
applies a decision's obligations to the records in between.
"""

import csv
import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import ijson
import sqlmodel
from pydantic import BaseModel, Field, field_validator
from sqlmodel import SQLModel

from tessera.clock import rfc3339, utcnow
from tessera.store import Json, Timestamp, UtcDateTime

Format = Literal["csv", "json", "jsonl"]
MEDIA_TYPES: dict[str, str] = {"csv": "text/csv", "json": "application/json", "jsonl": "application/x-ndjson"}
BATCH_RECORDS = 500


class AssetCreate(BaseModel):
    id: str | None = Field(default=None, min_length=1, max_length=200)
    title: str = Field(min_length=1, max_length=500)
    description: str = ""
    keywords: list[str] = []
    format: Format
    path: str = Field(min_length=1)

    @field_validator("path")
    @classmethod
    def _readable_file(cls, value: str) -> str:
        path = Path(value)
        if not path.is_file():
            raise ValueError(f"no readable file at {value}")
        return str(path.resolve())


class Asset(SQLModel, table=True):
    id: str = sqlmodel.Field(primary_key=True)
    title: str
    description: str = ""
    keywords: list[str] = sqlmodel.Field(default_factory=list, sa_type=Json)
    format: str
    path: str
    created_at: Timestamp = sqlmodel.Field(default_factory=utcnow, sa_type=UtcDateTime)

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "keywords": list(self.keywords),
            "format": self.format,
            "created_at": rfc3339(self.created_at),
        }


def read_records(asset: Asset) -> Iterator[dict[str, Any]]:
    """The asset's records, one at a time (CSV rows as dicts of strings)."""
    path = Path(asset.path)
    if asset.format == "csv":
        with path.open(newline="", encoding="utf-8") as fh:
            yield from csv.DictReader(fh)
    elif asset.format == "json":
        with path.open("rb") as fh:
            yield from ijson.items(fh, "item", use_float=True)
    else:
        with path.open(encoding="utf-8") as fh:
            yield from (json.loads(line) for line in fh if line.strip())


def csv_header(asset: Asset) -> list[str]:
    with Path(asset.path).open(newline="", encoding="utf-8") as fh:
        return next(csv.reader(fh), [])


def write_records(records: Iterable[dict[str, Any]], fmt: str, header: list[str] | None = None) -> Iterator[bytes]:
    """Records serialized in `fmt`, in batches of bytes; CSV keeps the given column order."""
    if fmt == "csv":
        yield from _csv(records, header or [])
    elif fmt == "json":
        yield from _json_array(records)
    else:
        yield from _json_lines(records)


def _csv(records: Iterable[dict[str, Any]], header: list[str]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=header, extrasaction="ignore", restval="", lineterminator="\n")
    writer.writeheader()
    for n, record in enumerate(records, start=1):
        writer.writerow(record)
        if n % BATCH_RECORDS == 0:
            yield _drain(buffer)
    yield _drain(buffer)


def _json_array(records: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    yield b"["
    chunk: list[str] = []
    first = True
    for record in records:
        chunk.append(json.dumps(record, ensure_ascii=False))
        if len(chunk) == BATCH_RECORDS:
            yield (("" if first else ",") + ",".join(chunk)).encode()
            first, chunk = False, []
    if chunk:
        yield (("" if first else ",") + ",".join(chunk)).encode()
    yield b"]"


def _json_lines(records: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    chunk: list[str] = []
    for record in records:
        chunk.append(json.dumps(record, ensure_ascii=False) + "\n")
        if len(chunk) == BATCH_RECORDS:
            yield "".join(chunk).encode()
            chunk = []
    if chunk:
        yield "".join(chunk).encode()


def _drain(buffer: io.StringIO) -> bytes:
    data = buffer.getvalue().encode()
    buffer.seek(0)
    buffer.truncate()
    return data
