"""Obligations: the Decision shape, and the executor the data plane runs on records."""

import pytest

from tessera.errors import PolicyError, PolicyEvaluationError
from tessera.policy import Decision, EmbeddedRegoEngine, Obligation, PolicyModule
from tessera.policy.base import decision_from_document
from tessera.policy.obligations import (
    MAX_GROUPS,
    MAX_QUERY_TERMS,
    AggregateRefused,
    ObligationError,
    UnsupportedObligation,
    aggregate,
    apply_record_obligations,
    parse_path,
    require_supported,
)

PEOPLE = [
    {"name": "Ada", "age": "36", "region": "EU-DE", "email": "ada@x", "address": {"street": "A 1", "city": "B"}},
    {"name": "Bob", "age": "17", "region": "EU-DE", "email": "bob@x", "address": {"street": "B 2", "city": "B"}},
    {"name": "Cy", "age": "52", "region": "EU-FR", "email": "cy@x", "address": {"street": "C 3", "city": "P"}},
    {"name": "Di", "age": "44", "region": "EU-DE", "email": "di@x", "address": {"street": "D 4", "city": "M"}},
]


def people() -> list[dict]:
    return [{**p, "address": dict(p["address"])} for p in PEOPLE]


def test_decision_keeps_the_first_interface() -> None:
    decision = Decision(allow=True, mask=("phone", "email"))
    assert decision.mask == ("email", "phone")
    assert decision.obligations == (Obligation("mask", {"fields": ["email", "phone"]}),)
    assert decision == Decision(True, (), (Obligation("mask", {"fields": ["email", "phone"]}),))


def test_decision_orders_and_deduplicates_obligations() -> None:
    log = Obligation("log", {})
    notify = Obligation("notify", {"party": "p", "event": "use"})
    decision = Decision(True, obligations=[notify, log, notify])
    assert decision.obligations == (log, notify)
    assert decision.to_dict() == {
        "allow": True,
        "reasons": [],
        "obligations": [{"kind": "log"}, {"kind": "notify", "party": "p", "event": "use"}],
        "mask": [],
    }
    assert decision.of_kind("log") == (log,)


def test_decision_from_document_reads_obligations_and_mask() -> None:
    document = {
        "allow": True,
        "deny": [],
        "mask": ["email"],
        "obligations": [{"kind": "mask", "fields": ["$.address.street"]}, {"kind": "custom", "x": 1}],
    }
    decision = decision_from_document(document)
    assert decision.mask == ("$.address.street", "email")
    assert Obligation("custom", {"x": 1}) in decision.obligations  # unknown kinds pass through


def test_a_denied_decision_carries_no_obligations() -> None:
    document = {"allow": False, "deny": ["no"], "obligations": [{"kind": "log"}]}
    assert decision_from_document(document) == Decision(False, ("no",))


@pytest.mark.parametrize("obligations", [3, [{"fields": []}], ["log"], [{"kind": ""}]])
def test_malformed_obligations_fail_closed(obligations: object) -> None:
    with pytest.raises(PolicyEvaluationError):
        decision_from_document({"allow": True, "obligations": obligations})


async def test_engine_returns_rego_obligations() -> None:
    source = """package o

default allow := true

obligations contains {"kind": "delete_after", "seconds": 86400}

obligations contains {"kind": "notify", "party": "did:web:p", "event": "use"}
"""
    decision = await EmbeddedRegoEngine().decide(PolicyModule(id="o", source=source), {})
    assert decision == Decision(
        True,
        obligations=(
            Obligation("delete_after", {"seconds": 86400}),
            Obligation("notify", {"party": "did:web:p", "event": "use"}),
        ),
    )


@pytest.mark.parametrize(
    ("path", "segments"),
    [
        ("email", ("email",)),
        ("$.email", ("email",)),
        ("$.address.street", ("address", "street")),
        ("$.items[*].sku", ("items", None, "sku")),
        ("$.phones[0]", ("phones", 0)),
        ("$['odd key']", ("odd key",)),
    ],
)
def test_parse_path(path: str, segments: tuple) -> None:
    assert parse_path(path) == segments


@pytest.mark.parametrize("path", ["", "$", "$.", "$[x]", "$..a"])
def test_parse_path_rejects_bad_paths(path: str) -> None:
    with pytest.raises(ObligationError):
        parse_path(path)


def test_mask_removes_names_and_nested_paths() -> None:
    mask = Obligation("mask", {"fields": ["email", "$.address.street", "$.nope.x"]})
    (first, *_) = apply_record_obligations(people(), [mask])
    assert first == {"name": "Ada", "age": "36", "region": "EU-DE", "address": {"city": "B"}}


def test_mask_under_a_wildcard() -> None:
    records = [{"items": [{"sku": 1, "price": 2}, {"sku": 3, "price": 4}]}]
    mask = Obligation("mask", {"fields": ["$.items[*].price"]})
    assert list(apply_record_obligations(records, [mask])) == [{"items": [{"sku": 1}, {"sku": 3}]}]


def test_replace_sets_existing_fields_only() -> None:
    replace = Obligation("replace", {"path": "$.address.street", "value": "***"})
    records = list(apply_record_obligations([*people(), {"name": "no address"}], [replace]))
    assert [r.get("address", {}).get("street") for r in records] == ["***"] * 4 + [None]
    assert records[-1] == {"name": "no address"}


@pytest.mark.parametrize(
    ("condition", "kept"),
    [
        ({"field": "age", "op": "lt", "value": 18}, ["Ada", "Cy", "Di"]),  # CSV text compared as numbers
        ({"field": "region", "op": "neq", "value": "EU-DE"}, ["Ada", "Bob", "Di"]),
        ({"field": "region", "op": "in", "value": ["EU-FR"]}, ["Ada", "Bob", "Di"]),
        ({"field": "name", "op": "not_in", "value": ["Ada"]}, ["Ada"]),
        ({"field": "$.address.city", "op": "eq", "value": "B"}, ["Cy", "Di"]),
        ({"field": "age", "op": "gte", "value": 44}, ["Ada", "Bob"]),
        ({"field": "missing", "op": "eq", "value": 1}, []),  # cannot tell: dropped
    ],
)
def test_filter_rows_drops_matching_records(condition: dict, kept: list[str]) -> None:
    records = apply_record_obligations(people(), [Obligation("filter_rows", condition)])
    assert [r["name"] for r in records] == kept


def test_filters_see_values_before_they_are_masked() -> None:
    obligations = [
        Obligation("mask", {"fields": ["region"]}),
        Obligation("filter_rows", {"field": "region", "op": "eq", "value": "EU-FR"}),
    ]
    records = list(apply_record_obligations(people(), obligations))
    assert [r["name"] for r in records] == ["Ada", "Bob", "Di"]
    assert all("region" not in r for r in records)


def test_side_effect_obligations_are_left_to_their_owners() -> None:
    obligations = [Obligation("log", {}), Obligation("delete_after", {"seconds": 60})]
    assert list(apply_record_obligations(people(), obligations)) == PEOPLE


@pytest.mark.parametrize(
    ("obligation", "error"),
    [
        (Obligation("watermark", {}), UnsupportedObligation),
        (Obligation("aggregate", {"min_group_size": 2}), UnsupportedObligation),
        (Obligation("mask", {"fields": "email"}), ObligationError),
        (Obligation("replace", {"path": "email"}), ObligationError),
        (Obligation("filter_rows", {"field": "a", "op": "like", "value": 1}), ObligationError),
        (Obligation("filter_rows", {"field": "a", "op": "in", "value": 1}), ObligationError),
    ],
)
def test_unexecutable_obligations_raise_before_any_record(obligation: Obligation, error: type) -> None:
    with pytest.raises(error) as caught:
        apply_record_obligations(iter(()), [obligation])
    assert isinstance(caught.value, PolicyError)


def test_require_supported_names_the_missing_kinds() -> None:
    with pytest.raises(UnsupportedObligation, match="notify, watermark"):
        require_supported([Obligation("notify", {}), Obligation("watermark", {}), Obligation("log", {})], {"log"})


SPEC = {"group_by": ["region"], "functions": ["count", "avg"], "fields": ["age"], "min_group_size": 2}


def test_aggregate_drops_groups_smaller_than_k() -> None:
    query = {"group_by": ["region"], "metrics": [{"fn": "count"}, {"fn": "avg", "field": "age"}]}
    assert aggregate(people(), SPEC, query) == [{"region": "EU-DE", "count": 3, "avg_age": 97 / 3}]


def test_aggregate_without_group_by_is_one_group() -> None:
    query = {"metrics": [{"fn": "count"}]}
    assert aggregate(people(), Obligation("aggregate", SPEC), query) == [{"count": 4}]
    assert aggregate(people()[:1], SPEC, query) == []


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"group_by": ["name"], "metrics": [{"fn": "count"}]}, "group_by 'name'"),
        ({"metrics": [{"fn": "max", "field": "age"}]}, "function 'max'"),
        ({"metrics": [{"fn": "avg", "field": "email"}]}, "field 'email'"),
        ({"group_by": ["region"], "metrics": []}, "at least one metric"),
        ("select *", "must be an object"),
    ],
)
def test_aggregate_refuses_queries_the_policy_does_not_allow(query: object, message: str) -> None:
    with pytest.raises(AggregateRefused, match=message) as caught:
        aggregate(people(), SPEC, query)  # type: ignore[arg-type]
    assert caught.value.status_code == 403


def test_aggregate_needs_k() -> None:
    with pytest.raises(ObligationError):
        aggregate(people(), {**SPEC, "min_group_size": 0}, {"metrics": [{"fn": "count"}]})


def test_aggregate_work_is_bounded() -> None:
    many = {"metrics": [{"fn": "count"}] * (MAX_QUERY_TERMS + 1)}
    with pytest.raises(AggregateRefused, match=f"at most {MAX_QUERY_TERMS}"):
        aggregate(people(), SPEC, many)
    rows = ({"id": str(i), "age": "30"} for i in range(MAX_GROUPS + 10))  # a group per record
    spec = {**SPEC, "group_by": ["id"]}
    with pytest.raises(AggregateRefused, match=f"more than {MAX_GROUPS} groups"):
        aggregate(rows, spec, {"group_by": ["id"], "metrics": [{"fn": "count"}]})
