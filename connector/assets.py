"""Assets: datasets a provider offers, and how their records are streamed out.

An asset is a file on the provider's side (CSV, a JSON array, or JSON Lines). Records are read
lazily and written out in batches, so a large file never sits whole in memory; masked fields are
dropped from every record on the way.
"""

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import ijson
from pydantic import BaseModel, Field, field_validator
from sqlmodel import Field as Column
from sqlmodel import SQLModel

Format = Literal["csv", "json", "jsonl"]
MEDIA_TYPES: dict[str, str] = {"csv": "text/csv", "json": "application/json", "jsonl": "application/x-ndjson"}
BATCH_RECORDS = 500


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


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
    id: str = Column(primary_key=True)
    title: str
    description: str = ""
    keywords: str = "[]"  # JSON array
    format: str
    path: str
    created_at: str = Column(default_factory=utcnow)

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "keywords": json.loads(self.keywords),
            "format": self.format,
            "created_at": self.created_at,
        }


def stream_records(asset: Asset, mask: Iterable[str] = ()) -> Iterator[bytes]:
    """The asset's content in its own format, without the masked fields, in batches of bytes."""
    masked = set(mask)
    path = Path(asset.path)
    if asset.format == "csv":
        yield from _csv(path, masked)
    elif asset.format == "json":
        yield from _json_array(path, masked)
    else:
        yield from _json_lines(path, masked)


def _csv(path: Path, masked: set[str]) -> Iterator[bytes]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            return
        keep = [i for i, name in enumerate(header) if name not in masked]
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([header[i] for i in keep])
        for n, row in enumerate(reader, start=1):
            writer.writerow([row[i] for i in keep if i < len(row)])
            if n % BATCH_RECORDS == 0:
                yield _drain(buffer)
        yield _drain(buffer)


def _json_array(path: Path, masked: set[str]) -> Iterator[bytes]:
    with path.open("rb") as fh:
        yield b"["
        chunk: list[str] = []
        first = True
        for record in ijson.items(fh, "item", use_float=True):
            chunk.append(json.dumps(_without(record, masked), ensure_ascii=False))
            if len(chunk) == BATCH_RECORDS:
                yield (("" if first else ",") + ",".join(chunk)).encode()
                first, chunk = False, []
        if chunk:
            yield (("" if first else ",") + ",".join(chunk)).encode()
        yield b"]"


def _json_lines(path: Path, masked: set[str]) -> Iterator[bytes]:
    with path.open(encoding="utf-8") as fh:
        chunk: list[str] = []
        for line in fh:
            if line.strip():
                chunk.append(json.dumps(_without(json.loads(line), masked), ensure_ascii=False) + "\n")
            if len(chunk) == BATCH_RECORDS:
                yield "".join(chunk).encode()
                chunk = []
        if chunk:
            yield "".join(chunk).encode()


def _without(record: Any, masked: set[str]) -> Any:
    if isinstance(record, dict) and masked:
        return {k: v for k, v in record.items() if k not in masked}
    return record


def _drain(buffer: io.StringIO) -> bytes:
    data = buffer.getvalue().encode()
    buffer.seek(0)
    buffer.truncate()
    return data
