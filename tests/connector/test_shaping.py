"""Obligations on record batches (`connector.shaping`) and the writers (`connector.writers`) give what the
kernel's record functions (`tessera.policy.obligations`) give, for every file format; and through HTTP,
the consumer chooses the format of what it pulls, on Parquet assets too."""

import copy
import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from connector.shaping import aggregated, shaped
from connector.sources import FileSource
from connector.writers import write
from tessera.policy import Obligation
from tessera.policy.obligations import AggregateRefused, ObligationError, aggregate, apply_record_obligations
from tests.dataspace import PEOPLE, Dataspace, Site, as_json, negotiate, publish, rows, start_transfer

NAMES = ["a", "b", "c"]
OPS = ["eq", "neq", "lt", "lte", "gt", "gte", "in", "not_in"]
TEXT = st.one_of(
    st.sampled_from(["", "40", "41", " 40 ", "40.0", "-0", "1e2", "abc", "nan", "inf", "1_0", "٤٠", "x,y", 'q"t', "é"]),
    st.text(st.characters(exclude_categories=["Cs", "Cc"]), max_size=6),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([40, 40.5, 0, "40", "abc", ""]),
    TEXT,
)
TYPED = {
    "int": st.integers(-(2**53), 2**53),
    "float": st.floats(allow_nan=False, allow_infinity=False),
    "str": TEXT,
    "bool": st.booleans(),
}


@st.composite
def obligations(draw: st.DrawFn) -> list[Obligation]:
    field = st.sampled_from([*NAMES, "zz"])
    one = st.one_of(
        st.builds(lambda f: Obligation("mask", {"fields": f}), st.lists(field, min_size=1, max_size=2)),
        st.builds(lambda f, v: Obligation("replace", {"path": f, "value": v}), field, SCALARS),
        st.builds(
            lambda f, op, v, vs: Obligation("filter_rows", {"field": f, "op": op, "value": vs if "in" in op else v}),
            field,
            st.sampled_from(OPS),
            SCALARS,
            st.lists(SCALARS, max_size=3),
        ),
    )
    return draw(st.lists(one, max_size=4))


@st.composite
def typed_records(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Records as a JSON or Parquet file holds them: one type per column, nulls anywhere."""
    kinds = {name: draw(st.sampled_from(sorted(TYPED))) for name in NAMES}
    value = {name: st.one_of(st.none(), TYPED[kind]) for name, kind in kinds.items()}
    return draw(st.lists(st.fixed_dictionaries(value), max_size=25))


TEXT_RECORDS = st.lists(st.fixed_dictionaries(dict.fromkeys(NAMES, TEXT)), max_size=25)


def _write_source(tmp: Path, records: list[dict[str, Any]], fmt: str) -> FileSource:
    path = tmp / f"data.{fmt}"
    if fmt == "csv":
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=NAMES, lineterminator="\n")
            writer.writeheader()
            writer.writerows(records)
    elif fmt == "json":
        path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    else:
        pq.write_table(pa.Table.from_pylist(records) if records else pa.table({n: pa.nulls(0) for n in NAMES}), path)
    return FileSource(path, fmt)


def _read_back(data: bytes, fmt: str) -> list[dict[str, Any]]:
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))
    if fmt == "json":
        found: list[dict[str, Any]] = json.loads(data)
        return found
    if fmt == "jsonl":
        return [json.loads(line) for line in data.decode("utf-8").splitlines()]
    return pq.read_table(pa.BufferReader(data)).to_pylist()


def _as_csv_text(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What csv.DictWriter makes of the reference's records, read back."""
    if not records:
        return []
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(records[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return list(csv.DictReader(io.StringIO(buffer.getvalue(), newline="")))


def _shaped_out(source: FileSource, rules: list[Obligation], fmt: str) -> list[dict[str, Any]]:
    return _read_back(b"".join(write(shaped(source, rules, text=source.format == "csv"), fmt)), fmt)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=TEXT_RECORDS, rules=obligations())
@example(  # text Python's float reads and Arrow's cast does not: other scripts' digits, spaces, underscores
    records=[{"a": "٤٠", "b": " 40 ", "c": "4_0"}, {"a": "40", "b": "nan", "c": "-inf"}],
    rules=[Obligation("filter_rows", {"field": f, "op": "eq", "value": 40}) for f in ("a", "b", "c")][:1],
)
@example(
    records=[{"a": " 40 ", "b": "4_0", "c": "x"}, {"a": "nan", "b": "40", "c": "x"}],
    rules=[
        Obligation("filter_rows", {"field": "b", "op": "in", "value": [40]}),
        Obligation("filter_rows", {"field": "a", "op": "neq", "value": 40}),
    ],
)
def test_csv_batches_are_shaped_as_the_record_path_shapes_them(
    tmp_path: Path, records: list[dict[str, Any]], rules: list[Obligation]
) -> None:
    source = _write_source(tmp_path, records, "csv")
    expected = list(apply_record_obligations(copy.deepcopy(records), rules))
    assert _shaped_out(source, rules, "csv") == _as_csv_text(expected)


@pytest.mark.parametrize("fmt", ["json", "jsonl", "parquet"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=typed_records(), rules=obligations())
def test_typed_batches_are_shaped_as_the_record_path_shapes_them(
    tmp_path: Path, fmt: str, records: list[dict[str, Any]], rules: list[Obligation]
) -> None:
    source = _write_source(tmp_path, records, fmt)
    expected = list(apply_record_obligations(copy.deepcopy(records), rules))
    if fmt == "parquet" and not any(expected):
        expected = []  # Parquet holds no rows without columns: every field masked leaves an empty file
    assert _shaped_out(source, rules, fmt) == expected


QUERIES = st.fixed_dictionaries(
    {
        "group_by": st.lists(st.sampled_from(NAMES), max_size=2, unique=True),
        "metrics": st.lists(
            st.fixed_dictionaries(
                {"fn": st.sampled_from(["count", "sum", "avg", "min", "max"]), "field": st.sampled_from([*NAMES, "*"])}
            ).filter(lambda m: m["field"] != "*" or m["fn"] == "count"),
            min_size=1,
            max_size=3,
        ),
    }
)


def _same_rows(ours: list[dict[str, Any]], reference: list[dict[str, Any]]) -> None:
    assert [list(row) for row in ours] == [list(row) for row in reference]
    for mine, theirs in zip(ours, reference, strict=True):
        for name, value in theirs.items():
            if isinstance(value, float):  # the reference sums with math.fsum; Arrow's sum may differ in the last bits
                assert math.isclose(mine[name], value, rel_tol=1e-9, abs_tol=1e-300), (name, mine, theirs)
            else:
                assert mine[name] == value, (name, mine, theirs)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), query=QUERIES, k=st.integers(1, 3))
def test_aggregates_on_batches_are_the_record_paths(
    tmp_path: Path, fmt: str, data: st.DataObject, query: Any, k: int
) -> None:
    records = data.draw(TEXT_RECORDS if fmt == "csv" else typed_records())
    records = [r | {"a": str(i % 3)} for i, r in enumerate(records)] if fmt == "csv" else records
    spec = {"group_by": NAMES, "functions": ["count", "sum", "avg", "min", "max"], "fields": NAMES, "min_group_size": k}
    source = _write_source(tmp_path, records, fmt)
    reference = aggregate(copy.deepcopy(records), spec, query)
    _same_rows(aggregated(source, spec, query), reference)


def test_aggregate_refuses_more_groups_than_allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("connector.shaping.MAX_GROUPS", 5)
    source = _write_source(tmp_path, [{"a": str(i), "b": "1", "c": ""} for i in range(6)], "csv")
    spec = {"group_by": ["a"], "functions": ["count"], "fields": [], "min_group_size": 1}
    with pytest.raises(AggregateRefused, match="more than 5 groups"):
        aggregated(source, spec, {"group_by": ["a"], "metrics": [{"fn": "count"}]})


def test_a_malformed_obligation_raises_before_any_batch_is_read(tmp_path: Path) -> None:
    source = FileSource(tmp_path / "missing.csv", "csv")  # reading it would fail with a SourceError
    with pytest.raises(ObligationError, match="filter_rows op"):
        shaped(source, [Obligation("filter_rows", {"field": "a", "op": "like", "value": 1})], text=True)
    with pytest.raises(ObligationError, match="aggregate-only"):
        shaped(source, [Obligation("aggregate", {"min_group_size": 1})], text=True)


def test_nested_paths_take_the_record_path_a_batch_at_a_time(tmp_path: Path) -> None:
    records = [{"id": i, "address": {"city": "Berlin", "street": f"S{i}"}, "phones": ["1", "2"]} for i in range(3)]
    path = tmp_path / "nested.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    rules = [
        Obligation("mask", {"fields": ["$.address.street"]}),
        Obligation("replace", {"path": "$.phones[*]", "value": "x"}),
    ]
    out = _shaped_out(FileSource(path, "jsonl"), rules, "jsonl")
    assert out == [{"id": i, "address": {"city": "Berlin"}, "phones": ["x", "x"]} for i in range(3)]


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl", "parquet"])
def test_every_format_is_written_from_every_source(tmp_path: Path, fmt: str) -> None:
    for source_format in ("csv", "json", "jsonl", "parquet"):
        source = _write_source(
            tmp_path, [{"a": "é,1", "b": 'q"t', "c": "3"}, {"a": "x", "b": "", "c": "4"}], source_format
        )
        assert _shaped_out(source, [Obligation("mask", {"fields": ["b"]})], fmt) == [
            {"a": "é,1", "c": "3"},
            {"a": "x", "c": "4"},
        ]


def test_csv_is_written_with_its_header_once_and_json_unescaped(tmp_path: Path) -> None:
    batches = [pa.record_batch({"name": ["Zoë", "a,b"]}), pa.record_batch({"name": ["c"]})]
    assert b"".join(write(batches, "csv")) == '"name"\n"Zoë"\n"a,b"\n"c"\n'.encode()
    assert b"".join(write(batches, "json")) == '[{"name":"Zoë"},{"name":"a,b"},{"name":"c"}]'.encode()
    empty = _write_source(tmp_path, [], "csv")
    assert b"".join(write(shaped(empty, [Obligation("mask", {"fields": ["b"]})], text=True), "csv")) == b'"a","c"\n'


# -- through HTTP ------------------------------------------------------------------------------------------

FILTER_POLICY = """package tessera.usage.shaped
default allow := false
allow if input.purpose == "research"
mask contains "email"
obligations contains {"kind": "filter_rows", "field": "age", "op": "gt", "value": 40}
"""


def _people_file(tmp_path: Path, fmt: str) -> Path:
    path = tmp_path / f"people.{fmt}"
    if fmt == "csv":
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(PEOPLE[0]))
            writer.writeheader()
            writer.writerows(PEOPLE)
    elif fmt == "json":
        path.write_text(json.dumps(PEOPLE))
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(p) + "\n" for p in PEOPLE))
    else:
        pq.write_table(pa.Table.from_pylist(PEOPLE), path)
    return path


async def _started(provider: Site, consumer: Site, data: Path, policy: str = FILTER_POLICY) -> str:
    offer = await publish(provider, data, policy=policy)
    negotiation = await negotiate(consumer, provider, offer)
    transfer = await start_transfer(consumer, negotiation["agreement_id"])
    return f"/transfers/{transfer['id']}/data"


@pytest.mark.parametrize("stored", ["csv", "json", "jsonl", "parquet"])
async def test_each_format_is_masked_and_filtered_and_served_as_asked(
    provider: Site, consumer: Site, tmp_path: Path, stored: str
) -> None:
    data = await _started(provider, consumer, _people_file(tmp_path, stored))
    expected = [{"name": p["name"], "country": p["country"], "age": p["age"]} for p in PEOPLE if int(p["age"]) <= 40]
    as_stored = await consumer.api.get(data, params={"purpose": "research"})
    assert as_stored.status_code == 200, as_stored.text
    assert as_stored.headers["content-type"].split(";")[0] == _MEDIA[stored]
    assert _read_back(as_stored.content, stored) == expected
    for wanted in ("csv", "jsonl", "parquet"):
        pulled = await consumer.api.get(data, params={"purpose": "research", "format": wanted})
        assert pulled.status_code == 200, pulled.text
        assert pulled.headers["content-type"].split(";")[0] == _MEDIA[wanted]
        assert _read_back(pulled.content, wanted) == expected, wanted


_MEDIA = {
    "csv": "text/csv",
    "json": "application/json",
    "jsonl": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
}


async def test_an_unknown_format_is_refused_naming_the_allowed_ones_and_counts_no_use(
    provider: Site, consumer: Site, tmp_path: Path
) -> None:
    data = await _started(provider, consumer, _people_file(tmp_path, "csv"))
    refused = await consumer.api.get(data, params={"purpose": "research", "format": "xlsx"})
    assert refused.status_code == 400
    assert "csv, json, jsonl, parquet" in refused.json()["detail"]
    assert (await provider.api.get("/usage")).json()["items"] == []
    assert rows(await consumer.api.get(data, params={"purpose": "research", "format": "csv"}))[0]["name"] == "Ada"


async def test_a_parquet_asset_is_offered_with_its_media_type_and_pulled(
    space: Dataspace, provider: Site, consumer: Site, tmp_path: Path
) -> None:
    offer = await publish(provider, _people_file(tmp_path, "parquet"))  # the research policy: e-mail masked
    catalog = await consumer.post(
        "/catalog/request", {"provider_url": provider.dsp_url, "provider_id": provider.id}, 200
    )
    (dataset,) = catalog["dataset"]
    assert dataset["distribution"][0]["mediaType"] == "application/vnd.apache.parquet"
    assert (await provider.api.get(f"/assets/{offer['asset_id']}")).json()["format"] == "parquet"
    negotiation = await negotiate(consumer, provider, offer)
    transfer = await start_transfer(consumer, negotiation["agreement_id"])
    pulled = await consumer.api.get(
        f"/transfers/{transfer['id']}/data", params={"purpose": "research", "format": "json"}
    )
    assert as_json(pulled) == [{k: v for k, v in p.items() if k != "email"} for p in PEOPLE]


async def test_a_parquet_asset_must_be_a_readable_parquet_file(provider: Site, tmp_path: Path) -> None:
    fake = tmp_path / "people.parquet"
    fake.write_text("name,age\nAda,36\n")
    refused = await provider.api.post("/assets", json={"title": "People", "format": "parquet", "path": str(fake)})
    assert refused.status_code == 400
    assert "not a readable Parquet file" in refused.text
    wrong = await provider.api.post("/assets", json={"title": "People", "format": "xlsx", "path": str(fake)})
    assert wrong.status_code == 400
    assert "parquet" in wrong.text
    assert (await provider.api.get("/assets")).json()["items"] == []


AGGREGATE_POLICY = """package tessera.usage.counted
default allow := false
allow if input.purpose == "research"
obligations contains {"kind": "aggregate", "group_by": ["country"], "functions": ["count", "avg"],
    "fields": ["age"], "min_group_size": 1}
"""


@pytest.mark.parametrize("stored", ["csv", "parquet"])
async def test_aggregates_are_json_unless_another_format_is_asked(
    provider: Site, consumer: Site, tmp_path: Path, stored: str
) -> None:
    data = await _started(provider, consumer, _people_file(tmp_path, stored), AGGREGATE_POLICY)
    query = json.dumps({"group_by": ["country"], "metrics": [{"fn": "avg", "field": "age"}, {"fn": "count"}]})
    expected = [{"country": p["country"], "avg_age": float(p["age"]), "count": 1} for p in PEOPLE]
    expected.sort(key=lambda row: row["country"])
    as_json_rows = await consumer.api.get(data, params={"purpose": "research", "query": query})
    assert as_json_rows.headers["content-type"].startswith("application/json")
    assert as_json(as_json_rows) == expected
    as_csv = await consumer.api.get(data, params={"purpose": "research", "query": query, "format": "csv"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    numbers = [
        {"country": r["country"], "avg_age": float(r["avg_age"]), "count": int(r["count"])} for r in rows(as_csv)
    ]
    assert numbers == expected  # Arrow writes 36.0 as 36


def test_a_csv_value_may_hold_a_line_break_and_keeps_it_when_masked(tmp_path: Path) -> None:
    path = tmp_path / "notes.csv"
    path.write_text('id,note,email\n1,"first line\nsecond, line",a@example.com\n2,plain,b@example.com\n')
    masked = shaped(FileSource(path, "csv"), [Obligation("mask", {"fields": ["email"]})], text=True)
    written = b"".join(write(masked, "csv")).decode()
    assert list(csv.reader(io.StringIO(written))) == [["id", "note"], ["1", "first line\nsecond, line"], ["2", "plain"]]


def _typed_parquet(path: Path, rows: list[dict[str, Any]]) -> FileSource:
    schema = pa.schema([("region", pa.string()), ("year", pa.int64()), ("age", pa.float64()), ("n", pa.int32())])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=3)
    return FileSource(path, "parquet")


def test_a_typed_parquet_aggregate_scanned_whole_is_the_record_paths(tmp_path: Path) -> None:
    nan, inf = float("nan"), float("inf")
    rows = [
        {"region": r, "year": y, "age": a, "n": n}
        for r, y, a, n in [
            ("north", 2024, 30.0, 1),
            ("north", 2024, nan, 2),
            ("north", 2025, inf, 3),
            ("south", 2024, -12.5, None),
            ("south", None, 40.0, 5),
            (None, 2024, None, 6),
            ("华东", 2025, 1e300, 7),
            ("华东", 2025, 1e300, 8),
        ]
    ]
    source = _typed_parquet(tmp_path / "typed.parquet", rows)
    spec = {
        "group_by": ["region", "year"],
        "functions": ["count", "sum", "avg", "min", "max"],
        "fields": ["age", "n"],
        "min_group_size": 1,
    }
    metrics = [{"fn": fn, "field": f} for fn in ("count", "sum", "avg", "min", "max") for f in ("age", "n")] + [
        {"fn": "count"}
    ]
    for group_by in ([], ["region"], ["region", "year"], ["year"]):
        query = {"group_by": group_by, "metrics": metrics}
        _same_rows(aggregated(source, spec, query), aggregate(copy.deepcopy(rows), spec, query))


def test_a_scanned_parquet_aggregate_refuses_more_groups_than_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("connector.shaping.MAX_GROUPS", 5)
    rows = [{"region": str(i), "year": i, "age": 1.0, "n": 1} for i in range(6)]
    source = _typed_parquet(tmp_path / "many.parquet", rows)
    spec = {"group_by": ["year"], "functions": ["count"], "fields": [], "min_group_size": 1}
    with pytest.raises(AggregateRefused, match="more than 5 groups"):
        aggregated(source, spec, {"group_by": ["year"], "metrics": [{"fn": "count"}]})
