"""Several modules, one decision: a compiled agreement and the Rego module it binds, both must allow.

The connector-level half is tests/connector/test_usage_agreement.py (real connectors, every operand it can
feed); here the engine interface itself, and the profile operands whose input the connector cannot fill yet,
in both directions. Parity with OPA is in tests/policies/test_parity.py.
"""

from typing import Any

import pytest

from policies.compiler import compile_agreement
from policies.odrl import offer_from_patterns
from policies.patterns import PatternUse, render
from tessera.policy import Decision, EmbeddedRegoEngine, PolicyModule
from tessera.policy.base import combine

TESSERA = "https://w3id.org/tessera/v1/"
OPEN = PolicyModule("open", "package tessera.usage.open\n\ndefault allow := true\n")


def agreement(*constraints: dict[str, Any], **extra: Any) -> PolicyModule:
    document = {
        "@id": "urn:uuid:agreement-1",
        "@type": "Agreement",
        "target": "people",
        "assigner": "urn:tessera:provider",
        "assignee": "urn:tessera:consumer",
        "timestamp": "2026-01-01T00:00:00Z",
        "permission": [{"action": "use", "constraint": list(constraints)}],
        **extra,
    }
    return compile_agreement(document).module


def constraint(left: str, operator: str, right: Any) -> dict[str, Any]:
    return {"leftOperand": left, "operator": operator, "rightOperand": right}


def module(*uses: PatternUse) -> PolicyModule:
    return PolicyModule("bound", render("tessera.usage.bound", list(uses)))


def request(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "caller": {"sub": "urn:tessera:consumer", "region": "EU-FR", "security_profile": "base"},
        "purpose": "research",
        "uses": 0,
        "now": "2026-01-01T10:00:00Z",
        "agreement": {"timestamp": "2026-01-01T00:00:00Z"},
    }
    return base | fields


@pytest.fixture
async def engine() -> Any:
    engine = EmbeddedRegoEngine()
    yield engine
    await engine.aclose()


def test_combine_allows_only_when_every_decision_allows() -> None:
    masked = Decision(allow=True, mask=["email"])
    assert combine([masked, Decision(allow=True, mask=["phone"])]).mask == ("email", "phone")
    denied = combine([Decision(allow=False, reasons=["a"]), masked, Decision(allow=False, reasons=["b", "a"])])
    assert (denied.allow, denied.reasons, denied.obligations) == (False, ("a", "b"), ())
    assert combine([]).allow is False


async def test_both_modules_must_allow_with_reasons_from_both(engine: EmbeddedRegoEngine) -> None:
    law = agreement(constraint("purpose", "isAnyOf", ["research"]))
    bound = module(PatternUse.of("purpose", allowed_purposes=["statistics"]))
    decision = await engine.decide_all([law, bound], request(purpose="marketing"))
    assert decision.reasons == (
        'agreement: purpose isAnyOf ["research"] does not hold ("marketing")',
        'purpose: "marketing" not in allowed purposes ["statistics"]',
    )
    assert (await engine.decide_all([law, OPEN], request())).allow is True


async def test_obligations_and_masks_come_from_both(engine: EmbeddedRegoEngine) -> None:
    duty = {"action": "anonymize", "constraint": [constraint(TESSERA + "field", "isAnyOf", ["email"])]}
    document = {
        "@type": "Agreement",
        "assignee": "urn:tessera:consumer",
        "permission": [{"action": "use", "duty": [duty]}],
    }
    law = compile_agreement(document).module
    bound = module(PatternUse.of("masked_fields", masked_fields=["phone"]), PatternUse.of("log_usage"))
    decision = await engine.decide_all([law, bound], request())
    assert decision.allow and decision.mask == ("email", "phone")
    assert [o.kind for o in decision.obligations] == ["log", "mask", "mask"]


async def test_one_module_is_decided_as_decide_does(engine: EmbeddedRegoEngine) -> None:
    bound = module(PatternUse.of("max_uses", max_uses=1))
    for uses in (0, 1):
        assert await engine.decide_all([bound], request(uses=uses)) == await engine.decide(bound, request(uses=uses))


async def test_modules_whose_packages_nest_are_refused(engine: EmbeddedRegoEngine) -> None:
    law = agreement()
    package = law.source.split("package ", 1)[1].split("\n", 1)[0]
    intruder = PolicyModule("intruder", f"package {package.rsplit('.', 1)[0]}\n\nallow := true\n")
    with pytest.raises(Exception, match="cannot be decided together"):
        await engine.decide_all([law, intruder], request())


async def test_an_unreadable_agreement_denies_naming_why(engine: EmbeddedRegoEngine) -> None:
    compiled = compile_agreement({"@type": "Agreement", "permission": [{"action": 5}]})
    decision = await engine.decide_all([compiled.module, OPEN], request())
    assert not decision.allow and decision.reasons[0].startswith("agreement: cannot be enforced: the agreement cannot")


async def test_the_assignee_is_bound(engine: EmbeddedRegoEngine) -> None:
    decision = await engine.decide_all([agreement(), OPEN], request(caller={"sub": "urn:tessera:other"}))
    assert decision.reasons == ('agreement: the caller "urn:tessera:other" is not the assignee "urn:tessera:consumer"',)


# The profile operands the connector cannot feed yet: with the input present, each direction.
PROFILE = [
    ("role", "caller", {"roles": ["researcher"]}, PatternUse.of("role", required_roles=["admin"]), ["researcher"]),
    (
        "jurisdiction",
        "caller",
        {"jurisdiction": "CH"},
        PatternUse.of("cross_border", home_jurisdiction="EU", allowed_jurisdictions=["UK"]),
        ["CH"],
    ),
    (
        "artifactState",
        "artifact",
        {"state": "released"},
        PatternUse.of("artifact_state", allowed_states=["draft"]),
        ["released"],
    ),
    ("event", "event", "incident-response", PatternUse.of("event", allowed_events=["fair"]), ["incident-response"]),
]


@pytest.mark.parametrize(("name", "field", "value", "use", "right"), PROFILE, ids=[p[0] for p in PROFILE])
async def test_profile_operand_agreement_denies(
    engine: EmbeddedRegoEngine, name: str, field: str, value: Any, use: PatternUse, right: list[str]
) -> None:
    left = name if name == "event" else TESSERA + name
    law = agreement(constraint(left, "isAnyOf", ["something-else"]))
    admitting = PatternUse.of(use.name, **_admitting(use.name, right))
    decision = await engine.decide_all([law, module(admitting)], _with(field, value))
    assert not decision.allow and all(r.startswith("agreement:") for r in decision.reasons), decision


@pytest.mark.parametrize(("name", "field", "value", "use", "right"), PROFILE, ids=[p[0] for p in PROFILE])
async def test_profile_operand_module_denies(
    engine: EmbeddedRegoEngine, name: str, field: str, value: Any, use: PatternUse, right: list[str]
) -> None:
    left = name if name == "event" else TESSERA + name
    decision = await engine.decide_all(
        [agreement(constraint(left, "isAnyOf", right)), module(use)], _with(field, value)
    )
    assert not decision.allow and not any(r.startswith("agreement:") for r in decision.reasons), decision


async def test_classification_both_ways(engine: EmbeddedRegoEngine) -> None:
    left = TESSERA + "classification"
    core = request(asset={"classification": "core"})
    agreed = await engine.decide_all([agreement(constraint(left, "eq", "general")), OPEN], core)
    assert agreed.reasons == ('agreement: tessera:classification eq "general" does not hold ("core")',)
    bound = module(PatternUse.of("classification", classification_level="core"))
    denied = await engine.decide_all([agreement(constraint(left, "eq", "core")), bound], core)
    assert not denied.allow and not any(r.startswith("agreement:") for r in denied.reasons), denied


def _admitting(pattern: str, right: list[str]) -> dict[str, Any]:
    return {
        "role": {"required_roles": right},
        "cross_border": {"home_jurisdiction": "EU", "allowed_jurisdictions": right},
        "artifact_state": {"allowed_states": right},
        "event": {"allowed_events": right},
    }[pattern]


def _with(field: str, value: Any) -> dict[str, Any]:
    base = request()
    if field == "caller":
        return base | {"caller": base["caller"] | value}
    return base | {field: value}


DUTY_OBLIGATIONS = {
    "delete_after": {"delete_after"},
    "next_policy": {"next_policy"},
    "masked_fields": {"mask"},
    "modify_in_transit": {"mask", "replace", "filter_rows"},
    "aggregate_only": {"aggregate"},
    "notify": {"notify"},
    "log_usage": {"log"},
}


@pytest.mark.parametrize("pattern", sorted(DUTY_OBLIGATIONS))
async def test_every_duty_pattern_in_an_agreement_becomes_its_obligations(
    engine: EmbeddedRegoEngine, pattern: str
) -> None:
    offer = offer_from_patterns("urn:offer", [PatternUse.of(pattern)])
    compiled = compile_agreement(offer | {"@type": "Agreement", "assignee": "urn:tessera:consumer"})
    assert compiled.problems == ()
    query = {"group_by": ["region"], "metrics": [{"fn": "avg", "field": "age"}]}
    decision = await engine.decide_all([compiled.module, OPEN], request(request={"query": query}))
    assert decision.allow, decision
    assert {o.kind for o in decision.obligations} == DUTY_OBLIGATIONS[pattern]
