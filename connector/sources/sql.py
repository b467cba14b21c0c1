"""A SQL table or the provider's own named query, on PostgreSQL (psycopg, a server-side cursor) or SQLite
(the standard library, `fetchmany`), streamed into record batches and never loaded whole.

The columns (names and the database's types) are recorded when the asset is created; each read checks
them again before the first row, and a source whose columns changed since is refused (`SchemaChanged`),
so a consumer never gets other columns than were offered. Values keep their type where JSON has one
(integers, floats, booleans, text); others (numeric, dates, times, uuid …) are served as their text.
"""

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any
from urllib.parse import quote

import psycopg
import pyarrow as pa
from psycopg import sql

from connector.source_specs import SqlSpec, sqlite_path, table_parts
from connector.sources.base import SourceError, Stored, project
from tessera.errors import TesseraError

BATCH_ROWS = 10_000
CONNECT_TIMEOUT = 5  # seconds
# PostgreSQL types by name (as psycopg knows them) that keep a JSON type; all others are served as text.
PG_TYPES: dict[str, pa.DataType] = {
    "int2": pa.int64(),
    "int4": pa.int64(),
    "int8": pa.int64(),
    "float4": pa.float64(),
    "float8": pa.float64(),
    "bool": pa.bool_(),
}


class SchemaChanged(TesseraError, status=409, title="The source changed since it was offered"):
    """A SQL source's columns are no longer those recorded when the asset was created."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # the database's name for it: int4, text, INTEGER … ("" where SQLite declares none)

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "type": self.type}


class SqlSource:
    """`SqlSource(spec, "jsonl", columns=recorded).batches()`: the rows, refused if the columns changed."""

    def __init__(self, spec: SqlSpec, format: str, *, columns: Sequence[Column] | None = None) -> None:
        self.spec = spec
        self.format = format
        self.columns = tuple(columns) if columns is not None else None

    def __repr__(self) -> str:
        return f"SqlSource(dialect={self.spec.dialect!r})"  # never the URL: it may hold a password

    def stored(self) -> Stored | None:
        return None

    def probe(self) -> tuple[Column, ...]:
        """The columns as the database describes them now (no row is read)."""
        with self._cursor() as (_, columns):
            return columns

    def schema(self) -> pa.Schema:
        columns = self.columns if self.columns is not None else self.probe()
        return pa.schema([(column.name, self._arrow_type(column)) for column in columns])

    def batches(self, columns: Sequence[str] | None = None) -> Iterator[pa.RecordBatch]:
        with self._cursor() as (cursor, found):
            if self.columns is not None and found != self.columns:
                raise SchemaChanged(_difference(self.columns, found))
            schema = pa.schema([(column.name, self._arrow_type(column)) for column in found])
            while rows := self._fetch(cursor):
                yield project(_batch(rows, schema), columns)

    def _arrow_type(self, column: Column) -> pa.DataType:
        if self.spec.dialect == "postgresql":
            return PG_TYPES.get(column.type, pa.string())
        return _sqlite_affinity(column.type)

    def _fetch(self, cursor: Any) -> list[tuple[Any, ...]]:
        try:
            return list(cursor.fetchmany(BATCH_ROWS))
        except (psycopg.Error, sqlite3.Error) as exc:
            raise SourceError(f"the database failed while reading: {_reason(exc)}") from None

    @contextmanager
    def _cursor(self) -> Iterator[tuple[Any, tuple[Column, ...]]]:
        opener = _postgres if self.spec.dialect == "postgresql" else _sqlite
        with opener(self.spec) as opened:
            yield opened


@contextmanager
def _postgres(spec: SqlSpec) -> Iterator[tuple[Any, tuple[Column, ...]]]:
    try:
        connection = psycopg.connect(spec.url, connect_timeout=CONNECT_TIMEOUT)
    except psycopg.Error as exc:  # an unreadable URL too (ProgrammingError): its text would quote it
        raise SourceError(f"the database could not be reached ({type(exc).__name__})") from None
    with connection:
        connection.read_only = True  # the provider's named query reads; it never writes
        statement: sql.Composable
        if spec.table is not None:
            statement = sql.SQL("SELECT * FROM {}").format(sql.Identifier(*table_parts(spec.table)))
        else:
            statement = sql.SQL(spec.query or "")
        try:
            cursor = connection.cursor(name="tessera_source")  # server-side: rows come a batch at a time
            cursor.itersize = BATCH_ROWS
            cursor.execute(statement)
            described = cursor.description or []
        except psycopg.Error as exc:
            raise SourceError(f"the database refused the read: {_reason(exc)}") from None
        columns = tuple(Column(d.name, _pg_type_name(d.type_code)) for d in described)
        yield cursor, columns


def _pg_type_name(oid: int) -> str:
    known = psycopg.postgres.types.get(oid)
    return known.name if known is not None else f"oid:{oid}"


@contextmanager
def _sqlite(spec: SqlSpec) -> Iterator[tuple[Any, tuple[Column, ...]]]:
    uri = f"file:{quote(sqlite_path(spec.url))}?mode=ro"
    try:
        # A batch may be read on another worker thread than the one that opened it; only one reads at a time.
        connection = sqlite3.connect(uri, uri=True, check_same_thread=False)
    except sqlite3.Error as exc:
        raise SourceError(f"the database could not be opened ({_reason(exc)})") from None
    try:
        declared = _sqlite_declared(connection, spec.table) if spec.table else {}
        if spec.table is not None:
            statement = "SELECT * FROM " + ".".join(_sqlite_quote(part) for part in table_parts(spec.table))
        else:
            statement = spec.query or ""
        cursor = connection.execute(statement)
        columns = tuple(Column(d[0], declared.get(d[0], "")) for d in cursor.description or [])
        yield cursor, columns
    except sqlite3.Error as exc:
        raise SourceError(f"the database refused the read: {_reason(exc)}") from None
    finally:
        connection.close()


def _sqlite_declared(connection: sqlite3.Connection, table: str) -> dict[str, str]:
    """A table's declared column types (SQLite types values, not columns: a query's have none)."""
    parts = table_parts(table)
    schema = _sqlite_quote(parts[0]) + "." if len(parts) == 2 else ""
    rows = connection.execute(f"PRAGMA {schema}table_info({_sqlite_quote(parts[-1])})").fetchall()
    return {str(row[1]): str(row[2]) for row in rows}


def _sqlite_quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _sqlite_affinity(declared: str) -> pa.DataType:
    """SQLite's affinity rules for a declared type; without one (a query's expression), text."""
    upper = declared.upper()
    if "INT" in upper:
        return pa.int64()
    if any(word in upper for word in ("REAL", "FLOA", "DOUB")):
        return pa.float64()
    return pa.string()


def _batch(rows: list[tuple[Any, ...]], schema: pa.Schema) -> pa.RecordBatch:
    arrays = []
    for index, field in enumerate(schema):
        values = [row[index] for row in rows]
        if field.type == pa.string():
            values = [_text(value) for value in values]
        try:
            arrays.append(pa.array(values, type=field.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            raise SourceError(f"column {field.name} holds a value that is no {field.type}") from None
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, (bytes, memoryview)):
        return bytes(value).hex()
    return str(value)


def _difference(offered: Sequence[Column], now: Sequence[Column]) -> str:
    was = ", ".join(f"{c.name} {c.type}".strip() for c in offered)
    is_ = ", ".join(f"{c.name} {c.type}".strip() for c in now)
    return f"the source's columns changed since the asset was offered: were ({was}), are ({is_})"


def _reason(exc: Exception) -> str:
    """A database's own words on what failed, never the connection string (psycopg's connection errors name
    the host, so they are named by class only)."""
    if isinstance(exc, psycopg.OperationalError) and not isinstance(exc, psycopg.errors.QueryCanceled):
        return type(exc).__name__
    if isinstance(exc, psycopg.Error) and exc.diag.message_primary:
        return exc.diag.message_primary
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
