"""The sandbox a checked query runs in: an in-memory DuckDB with no way out.

Each query gets its own connection: external access (files, network, extensions) disabled, extension
autoloading off, a memory limit and a thread count, then the configuration locked, so nothing the query
says can change them. The agreed asset is the only table: an Arrow RecordBatchReader over the source's
batches, streamed (DuckDB pulls batches as it scans; the asset is never loaded whole). A timer interrupts
the connection at the wall-clock limit. Runs are blocking and bounded: at most `Limits.concurrent` at once,
the rest wait for a slot.
"""

import threading
from collections.abc import Iterator
from typing import Any, TypeGuard

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from sqlglot import exp

from connector.compute.dialect import AGGREGATES, COMPARISONS, TABLE
from connector.config import ComputeLimits as Limits
from connector.sources import MEDIA_TYPES, Source
from tessera.errors import BadRequest

ROW = "__tessera_row"  # the position of a record in the asset as served (for differencing)


class LimitExceeded(BadRequest):
    """A query stopped at the time or memory limit; the detail names the limit."""


_slots: dict[int, threading.BoundedSemaphore] = {}
_slots_lock = threading.Lock()


def _slot(concurrent: int) -> threading.BoundedSemaphore:
    with _slots_lock:
        return _slots.setdefault(concurrent, threading.BoundedSemaphore(concurrent))


def sql_of(tree: exp.Select, schema: pa.Schema) -> str:
    """The SQL that runs, regenerated from the checked tree. CSV columns are strings: where the query reads
    one as a number (an aggregate other than count, a comparison with a number) it is cast, and a value that
    is no number is NULL."""
    strings = {f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)}
    tree = tree.copy()
    for column in list(tree.find_all(exp.Column)):
        if column.name in strings and _numeric_use(column):
            column.replace(exp.TryCast(this=column.copy(), to=exp.DataType.build("DOUBLE")))
    return tree.sql(dialect="duckdb")


def _numeric_use(column: exp.Column) -> bool:
    parent = column.parent
    if isinstance(parent, tuple(AGGREGATES)):
        return not isinstance(parent, exp.Count)
    if isinstance(parent, exp.Add | exp.Sub | exp.Mul | exp.Div | exp.Mod | exp.Neg | exp.Greatest | exp.Least):
        return True
    if parent is not None and isinstance(parent, tuple(COMPARISONS)):
        others = [n for n in parent.iter_expressions() if n is not column]
        others += list(parent.expressions) if isinstance(parent, exp.In) else []
        return any(isinstance(n, exp.Literal) and not n.is_string for n in others)
    return False


def columns_read(tree: exp.Select, schema: pa.Schema) -> list[str]:
    """The asset's columns the query names: the only ones read (a Parquet file reads them alone)."""
    named = {column.name for column in tree.find_all(exp.Column)}
    # `count(*)` alone names none: one column still carries the rows (and their count) to the engine.
    return [name for name in schema.names if name in named] or schema.names[:1]


def run(
    source: Source, sql: str, limits: Limits, *, positions: bool = False, columns: list[str] | None = None
) -> pa.Table:
    """Run `sql` over the asset (as table `data` of `columns`, with `__tessera_row` when `positions`). Blocking."""
    with _slot(limits.concurrent):
        connection = duckdb.connect(
            config={
                "enable_external_access": False,
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
                "memory_limit": limits.memory,
                "threads": limits.threads,
            }
        )
        timer = threading.Timer(limits.seconds, connection.interrupt)
        try:
            connection.register(TABLE, _table(source, positions, columns))
            connection.execute("SET lock_configuration = true")
            timer.start()
            answer: pa.Table = connection.sql(sql).to_arrow_table()
            return answer
        except duckdb.InterruptException as exc:
            raise LimitExceeded(f"the query ran past the time limit of {limits.seconds:g} s and was stopped") from exc
        except duckdb.OutOfMemoryException as exc:
            raise LimitExceeded(f"the query needed more than the memory limit of {limits.memory}") from exc
        except (duckdb.BinderException, duckdb.ParserException, duckdb.InvalidInputException) as exc:
            raise BadRequest(f"sql: the engine refused the query: {str(exc).splitlines()[0][:300]}") from exc
        except duckdb.Error as exc:  # conversion, overflow …: the message may quote a record's value
            raise BadRequest(f"sql: the query failed on the data ({type(exc).__name__}); details withheld") from exc
        finally:
            timer.cancel()
            connection.close()


def known_within(source: Source, bounds: dict[str, tuple[float, float]]) -> frozenset[str]:
    """The columns whose every value the source's own statistics place inside their bounds: a Parquet
    file's row-group minimum and maximum, for numeric columns, in every row group. Anything unknown is
    not within (and is clamped)."""
    stored = source.stored()
    if stored is None or stored.media_type != MEDIA_TYPES["parquet"]:
        return frozenset()
    metadata = pq.ParquetFile(stored.path).metadata
    names = metadata.schema.to_arrow_schema().names
    within = set()
    for name, (lo, hi) in bounds.items():
        if name in names and _row_groups_within(metadata, names.index(name), lo, hi):
            within.add(name)
    return frozenset(within)


def _row_groups_within(metadata: pq.FileMetaData, column: int, lo: float, hi: float) -> bool:
    for group in range(metadata.num_row_groups):
        stats = metadata.row_group(group).column(column).statistics
        if stats is None or not stats.has_min_max:
            return False
        low, high = stats.min, stats.max
        if not (_number(low) and _number(high) and lo <= low and high <= hi):
            return False
    return True


def _number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _table(source: Source, positions: bool, columns: list[str] | None) -> pa.RecordBatchReader | ds.Dataset:
    """What the engine scans as `data`. A Parquet file the source names is an Arrow dataset: the engine scans
    it in parallel, reading only the columns the query uses (registered from here, so external access stays
    off for the query). Anything else, and a scan that needs record positions, streams the source's batches."""
    stored = source.stored()
    if stored is not None and stored.media_type == MEDIA_TYPES["parquet"] and not positions:
        return ds.dataset(stored.path, format="parquet")
    return _reader(source, positions, columns)


def _reader(source: Source, positions: bool, columns: list[str] | None) -> pa.RecordBatchReader:
    schema = source.schema()
    if columns is not None:
        schema = pa.schema([field for field in schema if field.name in set(columns)])
    if positions:
        schema = schema.append(pa.field(ROW, pa.int64()))
    return pa.RecordBatchReader.from_batches(schema, _batches(source, schema, positions, columns))


def _batches(source: Source, schema: pa.Schema, positions: bool, columns: list[str] | None) -> Iterator[pa.RecordBatch]:
    at = 0
    for batch in source.batches(columns):
        if positions:
            batch = batch.append_column(ROW, pa.array(range(at, at + batch.num_rows), pa.int64()))
            at += batch.num_rows
        yield batch if batch.schema == schema else _conform(batch, schema)


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """A JSON batch whose inferred types differ from the first batch's, in the first batch's types."""
    rows: list[dict[str, Any]] = batch.to_pylist()
    return pa.RecordBatch.from_pylist(rows, schema=schema)
