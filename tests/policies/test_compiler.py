"""The ODRL-to-Rego compiler (policies/compiler.py), decided by the real embedded engine.

Each operand of the agreement vocabulary is tested both ways: a use that keeps the constraint is
allowed, one that breaks it is denied with a reason naming the constraint.
"""

from typing import Any

import pytest

from policies.compiler import compile_policy, duration_seconds
from tessera.odrl import TESSERA, parse_policy
from tessera.policy import EmbeddedRegoEngine, PolicyModule

BASE: dict[str, Any] = {
    "agreement": {"id": "urn:uuid:a", "timestamp": "2026-12-01T00:00:00Z"},
    "caller": {"sub": "urn:tessera:c", "region": "CN", "jurisdiction": "CN", "roles": ["analyst"]},
    "connector": {"id": "urn:connector:c"},
    "purpose": "research",
    "uses": 0,
    "now": "2026-12-01T01:00:00Z",
    "event": "monthly-report",
    "asset": {"id": "ds", "classification": "important"},
    "artifact": {"state": "published"},
}


def constraint(left: str, operator: str, right: Any) -> dict[str, Any]:
    return {"leftOperand": left, "operator": operator, "rightOperand": right}


def agreement(*constraints: dict[str, Any], **extra: Any) -> dict[str, Any]:
    permission: dict[str, Any] = {"action": "use", "constraint": list(constraints)}
    return {"@id": "urn:uuid:a", "@type": "Agreement", "permission": [permission], **extra}


async def decide(document: dict[str, Any], **changes: Any) -> tuple[bool, tuple[str, ...], Any]:
    compiled = compile_policy(parse_policy(document))
    decision = await EmbeddedRegoEngine().decide(PolicyModule("agreement", compiled.source), {**BASE, **changes})
    return decision.allow, decision.reasons, decision


CASES = [
    ("purpose", constraint("purpose", "isAnyOf", ["research"]), {}, {"purpose": "marketing"}),
    ("purpose eq", constraint("purpose", "eq", "research"), {}, {"purpose": "marketing"}),
    ("purpose isNoneOf", constraint("purpose", "isNoneOf", ["marketing"]), {}, {"purpose": "marketing"}),
    ("count", constraint("count", "lteq", "2"), {"uses": 1}, {"uses": 2}),
    ("count lt", constraint("count", "lt", {"@value": "2", "@type": "xsd:integer"}), {"uses": 0}, {"uses": 1}),
    ("dateTime", constraint("dateTime", "lt", "2026-12-02T00:00:00Z"), {}, {"now": "2026-12-02T00:00:00Z"}),
    ("dateTime gteq", constraint("dateTime", "gteq", "2026-12-01T00:30:00Z"), {}, {"now": "2026-12-01T00:10:00Z"}),
    ("elapsedTime", constraint("elapsedTime", "lteq", "P1D"), {}, {"now": "2026-12-03T00:00:00Z"}),
    ("elapsedTime seconds", constraint("elapsedTime", "lt", "PT7200S"), {}, {"now": "2026-12-01T02:00:00Z"}),
    ("spatial", constraint("spatial", "isAnyOf", ["CN", "HK"]), {}, {"caller": {"region": "US"}}),
    ("recipient", constraint("recipient", "eq", "urn:tessera:c"), {}, {"caller": {"sub": "urn:tessera:x"}}),
    ("assignee", constraint("assignee", "isAnyOf", ["urn:tessera:c"]), {}, {"caller": {"sub": "urn:tessera:x"}}),
    ("system", constraint("system", "eq", "urn:connector:c"), {}, {"connector": {"id": "urn:connector:x"}}),
    ("event", constraint("event", "isAnyOf", ["monthly-report"]), {}, {"event": "ad-hoc"}),
    ("role", constraint(TESSERA + "role", "isAnyOf", ["analyst"]), {}, {"caller": {"roles": ["guest"]}}),
    ("jurisdiction", constraint("tessera:jurisdiction", "eq", "CN"), {}, {"caller": {"jurisdiction": "SG"}}),
    (
        "security level",
        constraint(TESSERA + "securityLevel", "gteq", "trust"),
        {"caller": {"security_profile": "trust_plus"}},
        {"caller": {"security_profile": "base"}},
    ),
    (
        "classification",
        constraint(TESSERA + "classification", "eq", "important"),
        {},
        {"asset": {"classification": "core"}},
    ),
    ("artifact state", constraint(TESSERA + "artifactState", "eq", "published"), {}, {"artifact": {"state": "draft"}}),
]


@pytest.mark.parametrize(("name", "rule", "kept", "broken"), CASES, ids=[c[0] for c in CASES])
async def test_each_operand_allows_when_kept_and_denies_when_broken(
    name: str, rule: dict[str, Any], kept: dict[str, Any], broken: dict[str, Any]
) -> None:
    allowed, reasons, _ = await decide(agreement(rule), **kept)
    assert (allowed, reasons) == (True, ())
    allowed, reasons, _ = await decide(agreement(rule), **broken)
    assert not allowed
    assert len(reasons) == 1 and reasons[0].startswith("agreement: ") and "does not hold" in reasons[0]


async def test_one_reason_per_failed_constraint() -> None:
    document = agreement(constraint("purpose", "eq", "research"), constraint("count", "lteq", "1"))
    allowed, reasons, _ = await decide(document, purpose="marketing", uses=1)
    assert not allowed
    assert reasons == (
        'agreement: count lteq "1" does not hold (this would be use 2)',
        'agreement: purpose eq "research" does not hold ("marketing")',
    )


async def test_a_missing_input_denies() -> None:
    allowed, reasons, _ = await decide(agreement(constraint("elapsedTime", "lteq", "P1D")), agreement={})
    assert not allowed and "elapsedTime" in reasons[0]


@pytest.mark.parametrize(
    ("logical", "changes", "allowed"),
    [
        ("and", {}, True),
        ("and", {"purpose": "x"}, False),
        ("or", {"purpose": "x"}, True),
        ("or", {"purpose": "x", "caller": {"region": "US"}}, False),
        ("xone", {}, False),
        ("xone", {"purpose": "x"}, True),
    ],
)
async def test_logical_constraints(logical: str, changes: dict[str, Any], allowed: bool) -> None:
    members = [constraint("purpose", "eq", "research"), constraint("spatial", "eq", "CN")]
    assert (await decide(agreement({logical: members}), **changes))[0] is allowed


async def test_permissions_are_alternatives_and_prohibitions_override() -> None:
    document = {
        "@type": "Agreement",
        "permission": [
            {"action": "use", "constraint": [constraint("purpose", "eq", "research")]},
            {"action": "use", "constraint": [constraint("purpose", "eq", "audit")]},
        ],
        "prohibition": [{"action": "use", "constraint": [constraint("spatial", "eq", "US")]}],
    }
    assert (await decide(document, purpose="audit"))[0]
    allowed, reasons, _ = await decide(document, purpose="marketing")
    assert not allowed and [r[:14] for r in reasons] == ["permission 1: ", "permission 2: "]
    allowed, reasons, _ = await decide(document, caller={"region": "US"})
    assert not allowed and reasons == ('agreement: prohibited: spatial eq "US"',)


async def test_duties_become_obligations() -> None:
    field = constraint(TESSERA + "field", "isAnyOf", ["email"])
    delay = {
        "leftOperand": "delayPeriod",
        "operator": "eq",
        "rightOperand": {"@value": "PT60S", "@type": "xsd:duration"},
    }
    document = agreement()
    document["permission"][0]["duty"] = [
        {"action": "anonymize", "constraint": [field]},
        {"action": "delete", "constraint": [delay]},
    ]
    allowed, _, decision = await decide(document)
    assert allowed and decision.mask == ("email",)
    assert {o.kind: o.params for o in decision.obligations}["delete_after"] == {"seconds": 60}


@pytest.mark.parametrize(
    ("document", "named"),
    [
        (agreement(constraint("shoeSize", "eq", "42")), "shoeSize"),
        (agreement(constraint("purpose", "lteq", "research")), "operator lteq"),
        (agreement(constraint("count", "lteq", "many")), "not a number"),
        (agreement(constraint("elapsedTime", "lteq", "one day")), "not an ISO 8601 duration"),
        ({"@type": "Agreement", "permission": [{"action": "fly"}]}, "unknown action fly"),
        ({"@type": "Agreement", "permission": [{"action": "use", "duty": [{"action": "dance"}]}]}, "duty dance"),
    ],
)
async def test_what_cannot_be_enforced_denies_and_is_named(document: dict[str, Any], named: str) -> None:
    compiled = compile_policy(parse_policy(document))
    assert any(named in problem for problem in compiled.problems), compiled.problems
    allowed, reasons, _ = await decide(document)
    assert not allowed and reasons


async def test_a_permission_for_another_action_grants_no_pull() -> None:
    allowed, reasons, _ = await decide({"@type": "Agreement", "permission": [{"action": "print"}]})
    assert not allowed and reasons == ("agreement: permission grants print, not use",)


def test_durations() -> None:
    assert duration_seconds("P1D") == 86400
    assert duration_seconds("PT1H30M") == 5400
    assert duration_seconds("P1W") == 604800
    assert duration_seconds("P") is None
    assert duration_seconds("1 day") is None
