"""Record obligations on Arrow record batches: what the data plane does to the data of a use.

`shaped` carries out mask, replace and filter_rows on a source's batches, a batch at a time, so
memory stays bounded whatever the data's size; `aggregated` runs an allowed aggregate query over
them. The kernel's record functions (`tessera.policy.obligations`) are the reference semantics and
these give the same results: filters first; a row leaves only when its condition can be evaluated
and does not match; a text value is compared as a number when the condition's value is one (as
Python's `float` reads it); Python's equality across types (`True == 1`, `"1" != 1`). Nested JSON
paths (`$.a.b`, `[*]`, `[0]`) and values of nested types take the record functions, a batch at a time.

Arrow holds a table: a field missing from a JSON record is null here.
"""

import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeAlias, cast

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from connector.sources import MEDIA_TYPES, Source, SourceError
from tessera.json import JSON, JSONObject
from tessera.policy import Obligation
from tessera.policy.obligations import (
    MAX_GROUPS,
    AggregateRefused,
    Metric,
    Record,
    aggregate_query,
    apply_record_obligations,
    parse_path,
)

__all__ = ["aggregated", "shaped"]

# Decimal numbers Arrow's cast reads exactly as Python's `float`; other text that `float` may read
# (spaces, `1_000`, `inf`, `nan`, other scripts' digits) holds a digit, "inf" or "nan", and is read by `float`.
_PLAIN_NUMBER = r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
_MAYBE_NUMBER = r"(?i)\p{Nd}|inf|nan"
Column: TypeAlias = "pa.Array[Any]"  # a batch's column, of any type
# An aggregate's own scan of a Parquet asset. The SQL is ours alone (the consumer picks keys and fields from
# the policy's allow-list; they are quoted) and names the provider's file as a parameter, so the scan may
# read that file with DuckDB's own parallel reader; no extension is loaded and the memory is bounded.
SCAN_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "memory_limit": "512MB",
    "threads": 2,
}
_ORDERING = {"lt": "less", "lte": "less_equal", "gt": "greater", "gte": "greater_equal"}


def shaped(source: Source, obligations: Sequence[Obligation], *, text: bool) -> Iterator[pa.RecordBatch]:
    """The source's batches with mask, replace and filter_rows carried out, lazily.

    Raises ObligationError at the call, before a batch is read, for an obligation that cannot be
    carried out (as `apply_record_obligations` does). `text`: the source's columns are text (CSV),
    so a replacement is written as the record path writes it (`str(value)`, "" for null).
    """
    apply_record_obligations([], obligations)  # checks every obligation now
    record = [o for o in obligations if o.kind in ("mask", "replace", "filter_rows")]
    if any(_nested(o) for o in record):
        return _by_records(source.batches(), record)
    steps = [_step(o, text) for o in sorted(record, key=lambda o: o.kind != "filter_rows")]
    return _run(source, steps)


def _nested(obligation: Obligation) -> bool:
    params = obligation.params
    if obligation.kind == "mask":
        fields = params["fields"]
        assert isinstance(fields, list)
    else:
        fields = [params["path" if obligation.kind == "replace" else "field"]]
    return any(not _flat(parse_path(f)) for f in fields)


def _flat(path: tuple[str | int | None, ...]) -> bool:
    return len(path) == 1 and isinstance(path[0], str)


_BatchStep = Callable[[pa.RecordBatch], pa.RecordBatch]


def _run(source: Source, steps: list[_BatchStep]) -> Iterator[pa.RecordBatch]:
    any_batch = False
    for batch in source.batches():
        any_batch = True
        for step in steps:
            batch = step(batch)
        yield batch
    if not any_batch:  # an empty source still has columns, for a CSV header
        empty = source.schema().empty_table().to_batches() or [pa.RecordBatch.from_pylist([], source.schema())]
        for step in steps:
            empty = [step(b) for b in empty]
        yield from empty


def _by_records(batches: Iterable[pa.RecordBatch], obligations: list[Obligation]) -> Iterator[pa.RecordBatch]:
    """The kernel's record functions, a batch at a time: nested paths need them."""
    for batch in batches:
        records = list(apply_record_obligations(batch.to_pylist(), obligations))
        if records:
            yield pa.RecordBatch.from_pylist(records)


def _step(obligation: Obligation, text: bool) -> _BatchStep:
    params = obligation.params
    if obligation.kind == "mask":
        return _mask([str(parse_path(f)[0]) for f in params["fields"]])
    if obligation.kind == "replace":
        return _replace(str(parse_path(params["path"])[0]), params["value"], text)
    return _filter(str(parse_path(params["field"])[0]), str(params["op"]), params.get("value"))


def _mask(names: list[str]) -> _BatchStep:
    def mask(batch: pa.RecordBatch) -> pa.RecordBatch:
        return batch.drop_columns([name for name in dict.fromkeys(names) if name in batch.schema.names])

    return mask


def _replace(name: str, value: JSON, text: bool) -> _BatchStep:
    if text and not isinstance(value, str):
        # What csv.DictWriter writes for the value, as the record path did (nested values as JSON).
        value = "" if value is None else json.dumps(value) if isinstance(value, (dict, list)) else str(value)

    def replace(batch: pa.RecordBatch) -> pa.RecordBatch:
        if name not in batch.schema.names:
            return batch
        values: list[Any] = [value] * batch.num_rows
        column = pa.array(values) if isinstance(value, (dict, list)) else pa.repeat(value, batch.num_rows)
        return batch.set_column(batch.schema.get_field_index(name), name, column)

    return replace


# -- filter_rows -----------------------------------------------------------------------------------------


def _filter(name: str, op: str, value: JSON) -> _BatchStep:
    def keep(batch: pa.RecordBatch) -> pa.RecordBatch:
        if name not in batch.schema.names:
            return batch.slice(0, 0)  # no row can be evaluated
        return batch.filter(pc.invert(_drops(batch.column(name), op, value)))

    return keep


def _drops(column: Column, op: str, value: JSON) -> Column:
    """Where the reference drops the row: the condition matches, or cannot be evaluated."""
    if not _simple(column.type):
        return _drops_by_records(column, op, value)
    sample = value[0] if isinstance(value, list) and value else value
    coerce = isinstance(sample, (int, float)) and not isinstance(sample, bool)
    numbers, strings = _kinds(column, coerce)
    if op in ("in", "not_in"):
        assert isinstance(value, list)
        drop_num, drop_str, drop_null = _membership(numbers, strings, value, op == "in")
    else:
        drop_num, drop_str, drop_null = _comparison(numbers, strings, op, value)
    is_num = pc.is_valid(numbers)
    is_str = pc.and_(pc.is_valid(strings), pc.invert(is_num))
    dropped = pc.if_else(is_num, drop_num, pc.if_else(is_str, drop_str, drop_null))
    return cast(Column, pc.fill_null(dropped, True))  # fail closed


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)


def _simple(kind: pa.DataType) -> bool:
    return (
        _is_text(kind)
        or pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_null(kind)
    )


def _kinds(column: Column, coerce: bool) -> tuple[Column, Column]:
    """The column as numbers (float64, null where none) and text (null where none); Python compares
    bools as numbers. A text that reads as a number counts as one when `coerce`."""
    kind = column.type
    no_text = pa.nulls(len(column), pa.string())
    if pa.types.is_null(kind):
        return pa.nulls(len(column), pa.float64()), no_text
    if _is_text(kind):
        text = pc.cast(column, pa.string())
        return (_numbers(text) if coerce else pa.nulls(len(column), pa.float64())), text
    return pc.cast(column, pa.float64()), no_text


def _numbers(text: Column) -> Column:
    """Text read as Python's `float` reads it: float64, null where it is no number."""
    numbers: Any
    try:  # the common case, a column of numbers: Arrow's parser reads what `float` reads, but for `nan(…)`
        numbers = pc.cast(text, pa.float64())
        if not pc.any(pc.is_nan(numbers)).as_py():
            return cast(Column, numbers)
    except pa.ArrowInvalid:
        pass
    matched: Any = pc.match_substring_regex(text, _PLAIN_NUMBER)
    plain: Any = pc.fill_null(matched, False)
    numbers = pc.cast(pc.if_else(plain, text, None), pa.float64())
    odd: Any = pc.fill_null(pc.and_(pc.invert(plain), pc.match_substring_regex(text, _MAYBE_NUMBER)), False)
    if not pc.any(odd).as_py():
        return cast(Column, numbers)
    read = [_float(s) for s in pc.filter(text, odd).to_pylist()]
    return cast(Column, pc.replace_with_mask(numbers, odd, pa.array(read, pa.float64())))


def _float(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _comparison(numbers: Column, strings: Column, op: str, value: JSON) -> tuple[Any, Any, bool]:
    """(drop a number, drop a text, drop a null) for eq, neq, lt, lte, gt, gte against `value`."""
    number = float(value) if isinstance(value, (int, float)) else None  # bools too: Python compares True as 1
    text = value if isinstance(value, str) else None
    if op in ("eq", "neq"):
        function = "equal" if op == "eq" else "not_equal"
        differ = op == "neq"  # what a value of another type gives: never equal
        drop_num = differ if number is None else pc.call_function(function, [numbers, number])
        drop_str = differ if text is None else pc.call_function(function, [strings, text])
        return drop_num, drop_str, (value is None) != differ
    function = _ORDERING[op]  # another type than the value's raises TypeError: the row does not leave
    drop_num = True if number is None else pc.call_function(function, [numbers, number])
    drop_str = True if text is None else pc.call_function(function, [strings, text])
    return drop_num, drop_str, True


def _membership(numbers: Column, strings: Column, value: list[JSON], member: bool) -> tuple[Any, Any, bool]:
    """(drop a number, drop a text, drop a null) for in / not_in `value`, with Python's equality."""
    number_set = pa.array([float(v) + 0.0 for v in value if isinstance(v, (int, float))], pa.float64())
    text_set = pa.array([v for v in value if isinstance(v, str)], pa.string())
    found_num = pc.is_in(pc.add(numbers, 0.0), value_set=number_set)  # + 0.0: -0.0 is 0.0
    found_str = pc.is_in(strings, value_set=text_set)
    has_null = any(v is None for v in value)
    if member:
        return found_num, found_str, has_null
    return pc.invert(found_num), pc.invert(found_str), not has_null


def _drops_by_records(column: Column, op: str, value: JSON) -> Column:
    """Values of other types (nested, dates, binary) are compared by the kernel's record function."""
    condition = Obligation("filter_rows", {"field": "v", "op": op, "value": value})
    records: list[Record] = [{"v": v} for v in column.to_pylist()]
    kept = {id(r) for r in apply_record_obligations(records, [condition])}
    return pa.array([id(r) not in kept for r in records], pa.bool_())


# -- aggregate -------------------------------------------------------------------------------------------


def aggregated(source: Source, spec: Obligation | JSONObject, query: JSON) -> list[Record]:
    """The rows `tessera.policy.obligations.aggregate` gives, computed on batches (pyarrow's group_by
    per batch, partial results merged), never more than MAX_GROUPS groups held. Raises AggregateRefused."""
    group_by, metrics, k = aggregate_query(spec, query)
    fields = _fields(metrics)
    partial = _scanned(source, group_by, fields)
    if partial is None:
        for batch in source.batches([*group_by, *fields]):  # a columnar file reads these columns alone
            table = _prepared(batch, group_by, fields)
            partial = _merge(partial, _partial(table, group_by, fields))
            _bounded(partial)
    rows = []
    groups = partial.to_pylist() if partial is not None else []
    for group in sorted(groups, key=lambda g: [str(g[f"k{i}"]) for i in range(len(group_by))]):
        if group["n"] < k:
            continue
        row: Record = {name: group[f"k{i}"] for i, name in enumerate(group_by)}
        for metric in metrics:
            row[metric.name] = _metric(group, metric.fn, metric.field, fields)
        rows.append(row)
    return rows


def _bounded(partial: pa.Table) -> None:
    if partial.num_rows > MAX_GROUPS:  # a group per record is no aggregate, and would hold them all
        raise AggregateRefused(f"aggregate: more than {MAX_GROUPS} groups; group by fewer or coarser fields")


def _scanned(source: Source, group_by: list[str], fields: list[str]) -> pa.Table | None:
    """The merged partial result straight from a Parquet file, when its types make the reference's rules
    plain SQL (keys of text or integers, numeric measures): DuckDB scans the file in parallel, reading only
    these columns, with a memory limit (`SCAN_CONFIG`). None: take the batches."""
    stored = source.stored()
    if stored is None or stored.media_type != MEDIA_TYPES["parquet"]:
        return None
    schema = pq.read_schema(stored.path)
    keys_plain = all(name in schema.names and _plain_key(schema.field(name).type) for name in group_by)
    numeric = all(name in schema.names and _numeric(schema.field(name).type) for name in fields)
    if not (keys_plain and numeric):
        return None
    connection = duckdb.connect(config=SCAN_CONFIG)
    try:
        connection.execute("SET lock_configuration = true")
        partial: pa.Table = connection.sql(_scan_sql(group_by, fields), params=[str(stored.path)]).to_arrow_table()
    except duckdb.Error as exc:
        raise SourceError(f"the asset's parquet file cannot be aggregated: {str(exc).splitlines()[0][:200]}") from exc
    finally:
        connection.close()
    _bounded(partial)
    return partial


def _scan_sql(group_by: list[str], fields: list[str]) -> str:
    """What `_partial` and `_merge` compute, as one query: per group its record count and, per measured
    field, the sum, count, min and max of its finite values (the reference's `_number`)."""
    keys = [f"{_identifier(name)} AS k{i}" for i, name in enumerate(group_by)]
    values = [f"CASE WHEN isfinite({v}) THEN {v} END AS m{i}" for i, v in enumerate(_doubles(fields))]
    outer = [f"k{i}" for i in range(len(group_by))]
    measures = ["count(*) AS n"] + [
        f"{fn}(m{i}) AS m{i}_{fn}" for i in range(len(fields)) for fn in ("sum", "count", "min", "max")
    ]
    inner = ", ".join([*keys, *values]) or "1 AS one"
    grouping = f" GROUP BY {', '.join(outer)}" if outer else ""
    selected = ", ".join([*outer, *measures])
    return f"SELECT {selected} FROM (SELECT {inner} FROM read_parquet(?)){grouping} LIMIT {MAX_GROUPS + 1}"


def _doubles(fields: list[str]) -> list[str]:
    return [f"CAST({_identifier(name)} AS DOUBLE)" for name in fields]


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _plain_key(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_integer(kind)


def _numeric(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind)


def _fields(metrics: list[Metric]) -> list[str]:
    return sorted({str(m.field) for m in metrics if m.field not in (None, "*")})


def _prepared(batch: pa.RecordBatch, group_by: list[str], fields: list[str]) -> pa.Table:
    """Group keys as the reference keys them (k0, k1 …) and each metric field as finite numbers (m0 …)."""
    columns: dict[str, Column] = {}
    for i, name in enumerate(group_by):
        columns[f"k{i}"] = _key(batch.column(name)) if name in batch.schema.names else pa.nulls(batch.num_rows)
    for i, name in enumerate(fields):
        columns[f"m{i}"] = (
            _metric_values(batch.column(name)) if name in batch.schema.names else pa.nulls(batch.num_rows, pa.float64())
        )
    columns["one"] = pa.repeat(1, batch.num_rows).cast(pa.int64())
    return pa.table(columns)


def _key(column: Column) -> Column:
    if _simple(column.type):
        return column
    return pa.array([v if isinstance(v, (str, int, float, bool)) or v is None else str(v) for v in column.to_pylist()])


def _metric_values(column: Column) -> Column:
    """What the reference's `_number` reads: finite numbers, and text that is a finite number; not bools."""
    kind = column.type
    if pa.types.is_integer(kind):
        return pc.cast(column, pa.float64())
    if pa.types.is_floating(kind):
        numbers: Any = pc.cast(column, pa.float64())
        return cast(Column, pc.if_else(pc.is_finite(numbers), numbers, None))
    if _is_text(kind):
        numbers = _numbers(pc.cast(column, pa.string()))
        return cast(Column, pc.if_else(pc.is_finite(numbers), numbers, None))
    return pa.nulls(len(column), pa.float64())


def _partial(table: pa.Table, group_by: list[str], fields: list[str]) -> pa.Table:
    keys = [f"k{i}" for i in range(len(group_by))]
    wanted: list[Any] = [("one", "sum")] + [
        (f"m{i}", fn) for i in range(len(fields)) for fn in ("sum", "count", "min", "max")
    ]
    return _named(table.group_by(keys, use_threads=False).aggregate(wanted), keys, fields)


def _merge(partial: pa.Table | None, more: pa.Table) -> pa.Table:
    if partial is None:
        return more
    both = pa.concat_tables([partial, more], promote_options="permissive")  # a JSON source's types may vary
    keys = [name for name in both.column_names if name.startswith("k")]
    fields = [name for name in both.column_names if name.startswith("m") and name.endswith("_sum")]
    merged: list[Any] = [("n", "sum")] + [
        (f"{f[:-4]}_{part}", fn)
        for f in fields
        for part, fn in (("sum", "sum"), ("count", "sum"), ("min", "min"), ("max", "max"))
    ]
    return _named(both.group_by(keys, use_threads=False).aggregate(merged), keys, [f[:-4] for f in fields], merged=True)


def _named(result: pa.Table, keys: list[str], fields: list[str], merged: bool = False) -> pa.Table:
    """Columns renamed to n, m0_sum, m0_count … (group_by names them `one_sum`, `m0_sum` …)."""
    names = []
    for name in result.column_names:
        if name in keys:
            names.append(name)
        elif name in ("one_sum", "n_sum"):
            names.append("n")
        else:  # m0_sum (first pass) or m0_sum_sum (merge)
            names.append(name.rsplit("_", 1)[0] if merged else name)
    return result.rename_columns(names)


def _metric(group: dict[str, Any], fn: str, field: JSON, fields: list[str]) -> float | int | None:
    if fn == "count" and field in (None, "*"):
        return int(group["n"])
    prefix = f"m{fields.index(str(field))}"
    count = int(group[f"{prefix}_count"] or 0)
    if fn == "count":
        return count
    if count == 0:
        return None
    if fn in ("sum", "avg"):
        total = float(group[f"{prefix}_sum"])
        if not math.isfinite(total):  # past the float range, as the reference says: no number to release
            return None
        return total if fn == "sum" else total / count
    value = group[f"{prefix}_{fn}"]
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
