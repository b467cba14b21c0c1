"""Carry out a decision's obligations on records (dicts): mask, replace, filter_rows and aggregate.

The data plane calls these on the records it streams; the other kinds (`log`, `notify`,
`delete_after`, `next_policy`) are side effects their owners carry out. An obligation that cannot
be executed raises `ObligationError` before any record is released: fail closed.

```python
records = apply_record_obligations(read_csv(path), decision.obligations)   # lazy, one record at a time
rows = aggregate(read_csv(path), spec, {"group_by": ["region"], "metrics": [{"fn": "avg", "field": "age"}]})
```

Fields are names (`email`) or JSON paths on nested dicts (`$.address.street`, `$.items[*].sku`,
`$.phones[0]`). `filter_rows` DROPS every record that matches its condition; a record where the
condition cannot be evaluated (missing field, values that do not compare) is dropped too.
`aggregate` drops every group smaller than `min_group_size` (k) from the result; a query without
`group_by` is one group.

* PolicyError
  x ObligationError            - an obligation is malformed or of a kind this executor cannot carry out (500)
    + UnsupportedObligation    - a kind no executor knows (or one that must run elsewhere)
    + AggregateRefused         - an aggregate query the policy does not allow (403)
"""

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from tessera.errors import PolicyError
from tessera.json import JSON, JSONObject
from tessera.policy.base import Obligation

__all__ = [
    "KNOWN_KINDS",
    "RECORD_KINDS",
    "SIDE_EFFECT_KINDS",
    "AggregateRefused",
    "Metric",
    "ObligationError",
    "UnsupportedObligation",
    "aggregate",
    "aggregate_query",
    "apply_record_obligations",
    "parse_path",
    "require_supported",
]

RECORD_KINDS = frozenset({"mask", "replace", "filter_rows"})
SIDE_EFFECT_KINDS = frozenset({"log", "notify", "delete_after", "next_policy"})
KNOWN_KINDS = RECORD_KINDS | SIDE_EFFECT_KINDS | {"aggregate", "compute"}  # compute: connector.compute
AGGREGATE_FUNCTIONS = frozenset({"count", "sum", "avg", "min", "max"})

_Segment = str | int | None  # a key, an index, or None for `[*]`
Record = JSONObject  # one record as the data plane streams it: a CSV row or a JSON object


class ObligationError(PolicyError, status=500, title="Obligation cannot be executed"):
    """An obligation cannot be carried out; nothing may be released."""


class UnsupportedObligation(ObligationError):
    """An obligation of a kind this executor does not carry out."""


MAX_GROUPS = 100_000  # distinct groups one aggregate query may form
MAX_QUERY_TERMS = 32  # groupings, and metrics, one aggregate query may name


class AggregateRefused(ObligationError, status=403, title="Aggregate query not allowed"):
    """An aggregate query the policy does not allow."""


def require_supported(obligations: Iterable[Obligation], supported: Iterable[str]) -> None:
    """Raise UnsupportedObligation naming every kind not in `supported`."""
    missing = sorted({o.kind for o in obligations} - set(supported))
    if missing:
        raise UnsupportedObligation(f"obligations that cannot be executed here: {', '.join(missing)}")


# -- JSON paths ------------------------------------------------------------------------------------------


def parse_path(path: object) -> tuple[_Segment, ...]:
    """`email` -> ("email",); `$.a.b[0].c[*]` -> ("a", "b", 0, "c", None)."""
    if not isinstance(path, str) or not path:
        raise ObligationError(f"a field must be a non-empty name or JSON path, got {path!r}")
    if not path.startswith("$"):
        return (path,)
    segments: list[_Segment] = []
    rest = path[1:]
    while rest:
        if rest.startswith("."):
            name = rest[1:].split(".")[0].split("[")[0]
            if not name:
                raise ObligationError(f"bad JSON path {path!r}")
            segments.append(name)
            rest = rest[1 + len(name) :]
        elif rest.startswith("["):
            end = rest.find("]")
            inner = rest[1:end] if end > 0 else ""
            segments.append(_bracket(inner, path))
            rest = rest[end + 1 :]
        else:
            raise ObligationError(f"bad JSON path {path!r}")
    if not segments:
        raise ObligationError(f"JSON path {path!r} names no field")
    return tuple(segments)


def _bracket(inner: str, path: str) -> _Segment:
    if inner == "*":
        return None
    if inner.isdigit():
        return int(inner)
    if len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "'\"":
        return inner[1:-1]
    raise ObligationError(f"bad JSON path {path!r}")


def _parents(value: JSON, segments: tuple[_Segment, ...]) -> Iterator[tuple[JSON, _Segment]]:
    """Every (container, last segment) the path reaches in `value`."""
    if len(segments) == 1:
        yield value, segments[0]
        return
    head, rest = segments[0], segments[1:]
    for child in _children(value, head):
        yield from _parents(child, rest)


def _children(value: JSON, segment: _Segment) -> Iterator[JSON]:
    if segment is None:
        yield from (value.values() if isinstance(value, dict) else value if isinstance(value, list) else ())
    elif isinstance(segment, int):
        if isinstance(value, list) and -len(value) <= segment < len(value):
            yield value[segment]
    elif isinstance(value, dict) and segment in value:
        yield value[segment]


def _remove(record: JSON, segments: tuple[_Segment, ...]) -> None:
    for parent, last in _parents(record, segments):
        if last is None and isinstance(parent, (dict, list)):
            parent.clear()
        elif isinstance(parent, dict) and isinstance(last, str):
            parent.pop(last, None)
        elif isinstance(parent, list) and isinstance(last, int) and -len(parent) <= last < len(parent):
            parent[last] = None  # keep the positions of the other items


def _replace(record: JSON, segments: tuple[_Segment, ...], value: JSON) -> None:
    for parent, last in _parents(record, segments):
        if last is None and isinstance(parent, dict):
            for key in parent:
                parent[key] = value
        elif last is None and isinstance(parent, list):
            parent[:] = [value] * len(parent)
        elif _holds(parent, last):
            parent[last] = value


def _holds(parent: JSON, last: _Segment) -> bool:
    """True when `parent[last]` exists: a key of a dict, or an index inside a list."""
    if isinstance(parent, dict):
        return isinstance(last, str) and last in parent
    return isinstance(parent, list) and isinstance(last, int) and -len(parent) <= last < len(parent)


def _values(record: JSON, segments: tuple[_Segment, ...]) -> list[JSON]:
    found = [record]
    for segment in segments:
        found = [child for value in found for child in _children(value, segment)]
    return found


# -- record obligations ----------------------------------------------------------------------------------

_Step = Callable[[Record], Record | None]


def apply_record_obligations(records: Iterable[Record], obligations: Iterable[Obligation]) -> Iterator[Record]:
    """Apply mask, replace and filter_rows to each record, lazily; the input records are modified.

    Obligations are checked before the first record is read: a malformed one, an unknown kind, or an
    `aggregate` (raw rows must then never leave) raises ObligationError at the call. Side-effect
    kinds (log, notify, delete_after, next_policy) are skipped here; their owners execute them.
    """
    built = [(o.kind != "filter_rows", step) for o in obligations if (step := _record_step(o)) is not None]
    # Filters first (a stable sort), so a condition sees the values before they are masked or replaced.
    return _run(records, [step for _, step in sorted(built, key=lambda pair: pair[0])])


def _run(records: Iterable[Record], steps: list[_Step]) -> Iterator[Record]:
    for record in records:
        for step in steps:
            result = step(record)
            if result is None:
                break  # a filter dropped the record
            record = result
        else:
            yield record


def _record_step(obligation: Obligation) -> _Step | None:
    kind, params = obligation.kind, obligation.params
    if kind == "mask":
        return _mask_step(params)
    if kind == "replace":
        return _replace_step(params)
    if kind == "filter_rows":
        return _filter_step(params)
    if kind == "aggregate":
        raise UnsupportedObligation("aggregate-only access: records cannot be released, run aggregate() instead")
    if kind in SIDE_EFFECT_KINDS:
        return None
    raise UnsupportedObligation(f"unknown obligation kind {kind!r}: cannot be executed")


def _mask_step(params: JSONObject) -> _Step:
    fields = params.get("fields")
    if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
        raise ObligationError(f"mask needs fields, a list of names or JSON paths, got {fields!r}")
    paths = [parse_path(f) for f in fields]
    flat = [p[0] for p in paths if len(p) == 1 and isinstance(p[0], str)]
    nested = [p for p in paths if not (len(p) == 1 and isinstance(p[0], str))]

    def mask(record: Record) -> Record:
        for name in flat:
            record.pop(name, None)
        for path in nested:
            _remove(record, path)
        return record

    return mask


def _replace_step(params: JSONObject) -> _Step:
    if "value" not in params:
        raise ObligationError("replace needs a value")
    path, value = parse_path(params.get("path")), params["value"]

    def replace(record: Record) -> Record:
        _replace(record, path, value)
        return record

    return replace


_OPS: dict[str, Callable[[JSON, JSON], bool]] = {
    "eq": lambda a, b: a == b,
    "neq": lambda a, b: a != b,
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "in": lambda a, b: a in b,
    "not_in": lambda a, b: a not in b,
}


def _filter_step(params: JSONObject) -> _Step:
    op, value = params.get("op"), params.get("value")
    if op not in _OPS:
        raise ObligationError(f"filter_rows op must be one of {', '.join(_OPS)}, got {op!r}")
    if op in ("in", "not_in") and not isinstance(value, list):
        raise ObligationError(f"filter_rows {op} needs a list value, got {value!r}")
    path, compare = parse_path(params.get("field")), _OPS[op]

    def keep(record: Record) -> Record | None:
        found = _values(record, path)
        if len(found) != 1:
            return None  # missing (or ambiguous): we cannot tell, so the row does not leave
        try:
            return None if compare(_coerce(found[0], value), value) else record
        except TypeError:
            return None

    return keep


def _coerce(found: JSON, value: JSON) -> JSON:
    # CSV values arrive as text: compare "42" with 40 as a number.
    sample = value[0] if isinstance(value, list) and value else value
    if isinstance(found, str) and isinstance(sample, (int, float)) and not isinstance(sample, bool):
        try:
            return float(found)
        except ValueError:
            return found
    return found


# -- aggregate-only access -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    """One metric of an allowed aggregate query, like `{"fn": "avg", "field": "age"}`."""

    fn: str
    field: JSON = None  # None or "*" with `count`: count the records

    @property
    def name(self) -> str:
        """The result column: `count`, `avg_age`."""
        return self.fn if self.field in (None, "*") else f"{self.fn}_{self.field}"

    def over(self, members: list[Record]) -> float | int | None:
        if self.fn == "count" and self.field in (None, "*"):
            return len(members)
        values = [v for r in members if (v := _number(r.get(self.field))) is not None]
        if self.fn == "count":
            return len(values)
        if not values:
            return None
        if self.fn in ("sum", "avg"):
            try:
                total = math.fsum(values)
            except OverflowError:  # past the float range: no number to release (JSON has no infinity)
                return None
            return total if self.fn == "sum" else total / len(values)
        return min(values) if self.fn == "min" else max(values)


def aggregate(records: Iterable[Record], spec: Obligation | JSONObject, query: JSON) -> list[Record]:
    """Run an aggregate `query` over `records` if the `aggregate` obligation's spec allows it.

    spec: `{"group_by": [fields allowed to group by], "functions": ["count", "avg", ...],
    "fields": [fields metrics may read], "min_group_size": k}`.
    query: `{"group_by": [...], "metrics": [{"fn": "avg", "field": "age"}, {"fn": "count"}]}`.
    Each result row holds the group's values and one column per metric (`count`, `avg_age`).
    Groups with fewer than k records are left out of the result. Raises AggregateRefused.
    """
    group_by, metrics, k = aggregate_query(spec, query)
    groups: dict[tuple[JSON, ...], list[Record]] = {}
    for record in records:
        key = tuple(_group_value(record, field) for field in group_by)
        groups.setdefault(key, []).append(record)
        if len(groups) > MAX_GROUPS:  # a group per record is no aggregate, and would hold them all
            raise AggregateRefused(f"aggregate: more than {MAX_GROUPS} groups; group by fewer or coarser fields")
    rows = []
    for key in sorted(groups, key=lambda key: [str(part) for part in key]):
        members = groups[key]
        if len(members) < k:
            continue
        row: Record = dict(zip(group_by, key, strict=True))
        for metric in metrics:
            row[metric.name] = metric.over(members)
        rows.append(row)
    return rows


def aggregate_query(rule: Obligation | JSONObject, query: JSON) -> tuple[list[str], list[Metric], int]:
    """The query's groupings, its metrics and the minimum group size, if the `aggregate` rule allows the
    query. Raises AggregateRefused (ObligationError for a malformed rule)."""
    params = rule.params if isinstance(rule, Obligation) else rule
    k = params.get("min_group_size")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ObligationError(f"aggregate needs min_group_size >= 1, got {k!r}")
    if not isinstance(query, dict):
        raise AggregateRefused("an aggregate query must be an object with group_by and metrics")
    group_by, metrics = query.get("group_by") or [], query.get("metrics") or []
    if not isinstance(group_by, list) or not isinstance(metrics, list) or not metrics:
        raise AggregateRefused("an aggregate query needs group_by (a list) and at least one metric")
    if len(group_by) > MAX_QUERY_TERMS or len(metrics) > MAX_QUERY_TERMS:
        raise AggregateRefused(f"an aggregate query may name at most {MAX_QUERY_TERMS} groupings and metrics each")
    allowed_groups = set(params.get("group_by") or [])
    for group in group_by:
        if group not in allowed_groups:
            raise AggregateRefused(f"aggregate: group_by {group!r} not in allowed {sorted(allowed_groups)}")
    functions = set(params.get("functions") or []) & AGGREGATE_FUNCTIONS
    fields = set(params.get("fields") or [])
    checked = []
    for metric in metrics:
        spec: JSONObject = metric if isinstance(metric, dict) else {}
        fn: JSON = spec.get("fn")
        field: JSON = spec.get("field")
        if fn not in functions:
            raise AggregateRefused(f"aggregate: function {fn!r} not in allowed {sorted(functions)}")
        if not (fn == "count" and field in (None, "*")) and field not in fields:
            raise AggregateRefused(f"aggregate: field {field!r} not in allowed {sorted(fields)}")
        checked.append(Metric(fn, field))
    return group_by, checked, k


def _group_value(record: Record, field: str) -> JSON:
    value = record.get(field)
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def _number(value: JSON) -> float | None:
    if isinstance(value, bool):
        return None
    if not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):  # no number, or an integer past the float range
        return None
    return number if math.isfinite(number) else None  # NaN and infinity are no amounts to aggregate
