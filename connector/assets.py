"""Assets: datasets a provider offers, and how their records are read and written.

An asset is a file on the provider's side (CSV, a JSON array, JSON Lines or Parquet), read by
`connector.sources` in record batches, so a large file never sits whole in memory; the data plane
applies a decision's obligations to the batches (`connector.shaping`). Every asset carries its labels
(`tessera.labels`: grade, category, personal information, home jurisdiction) and a lifecycle state;
policies read them as `input.asset` and `input.artifact`.
"""

import csv
import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
import sqlmodel
from pydantic import AfterValidator, BaseModel, Field, field_validator, model_validator
from sqlmodel import SQLModel

from connector.source_specs import SourceSpec
from connector.source_specs import public as public_source
from tessera import labels
from tessera.clock import rfc3339, utcnow
from tessera.json import JSONObject
from tessera.labels import Labels, Level, State
from tessera.store import Json, Timestamp, UtcDateTime

Format = Literal["csv", "json", "jsonl", "parquet"]
MEDIA_TYPES: dict[str, str] = {
    "csv": "text/csv",
    "json": "application/json",
    "jsonl": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
}
BATCH_RECORDS = 500
Jurisdiction = Annotated[str, AfterValidator(labels.jurisdiction)]
Category = Annotated[str, AfterValidator(labels.category)]


class LabelsIn(BaseModel):
    """An asset's labels as the API takes them; a field left out is unset (see `AssetCreate`)."""

    classification: Level | None = None
    category: Category | None = None
    personal_information: bool | None = None
    home_jurisdiction: Jurisdiction | None = None


MAX_PATH_LENGTH = 4096  # PATH_MAX on Linux


class AssetCreate(LabelsIn):
    """A new asset. Labels left out are general, no category, no personal information, and the
    connector's default home jurisdiction; from a received copy (`copy_id`), the copy's."""

    id: str | None = Field(default=None, min_length=1, max_length=200)
    title: str = Field(min_length=1, max_length=500)
    description: str = ""
    keywords: list[str] = []
    format: Format
    path: str | None = Field(default=None, min_length=1)
    source: SourceSpec | None = Field(default=None, description="an HTTP backend or a SQL database, not a file")
    copy_id: str | None = Field(default=None, min_length=1, description="offer a received copy on")
    state: State = "released"

    def labels_over(self, default: Labels) -> Labels:
        """The labels given, the rest from `default`."""
        given = self.model_dump(include=set(LabelsIn.model_fields), exclude_none=True)
        return Labels(**(default.to_dict() | given))

    @field_validator("path")
    @classmethod
    def _readable_file(cls, value: str | None) -> str | None:
        if value is None:
            return None
        path = Path(value)
        try:  # a name past the file system's limits raises (ENAMETOOLONG) rather than answering False
            readable = len(value) <= MAX_PATH_LENGTH and path.is_file()
        except (OSError, ValueError):
            readable = False
        if not readable:
            raise ValueError(f"no readable file at {value[:200]}")
        return str(path.resolve())

    @model_validator(mode="after")
    def _one_source(self) -> "AssetCreate":
        if [self.path, self.copy_id, self.source].count(None) != 2:
            raise ValueError("give one of path (a file), source (a backend) or copy_id (a received copy)")
        if self.format == "parquet" and self.path is not None:
            _require_parquet(Path(self.path))
        return self


def _require_parquet(path: Path) -> None:
    """A Parquet asset's file must be one pyarrow can read: its footer and schema, checked now."""
    try:
        pq.read_schema(path)
    except (OSError, pa.ArrowException) as exc:
        raise ValueError(f"the file at {str(path)[:200]} is not a readable Parquet file: {str(exc)[:200]}") from exc


class AssetChange(BaseModel):
    """What may change on an asset: its lifecycle state."""

    state: State


class Asset(SQLModel, table=True):
    id: str = sqlmodel.Field(primary_key=True)
    title: str
    description: str = ""
    keywords: list[str] = sqlmodel.Field(default_factory=list, sa_type=Json)
    format: str
    path: str = ""  # a local file's; empty for an asset read from a backend (`source`)
    source: dict[str, Any] | None = sqlmodel.Field(default=None, sa_type=Json)  # a source_specs spec, secrets and all
    classification: str = "general"
    category: str | None = None
    personal_information: bool = False
    home_jurisdiction: str | None = None
    state: str = "released"
    created_at: Timestamp = sqlmodel.Field(default_factory=utcnow, sa_type=UtcDateTime)

    @property
    def labels(self) -> Labels:
        return Labels.from_dict(
            {
                "classification": self.classification,
                "category": self.category,
                "personal_information": self.personal_information,
                "home_jurisdiction": self.home_jurisdiction,
            }
        )

    def policy_input(self) -> JSONObject:
        """`input.asset`: what a policy knows of the asset."""
        return {"id": self.id, "format": self.format, **self.labels.to_dict()}

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "keywords": list(self.keywords),
            "format": self.format,
            **({"source": public_source(self.source)} if self.source is not None else {}),
            **self.labels.to_dict(),
            "state": self.state,
            "created_at": rfc3339(self.created_at),
        }


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
