"""Two engines, one behaviour: the pattern suite decides the same on regorus and on OPA.

OpaServerEngine talks to tests/policies/opa_rest_server.py, a test fixture serving OPA's REST API
from real OPA (opa-golib-python-bindings); tests/policies/test_opa.py runs a real `opa` binary.
"""

from collections.abc import AsyncIterator

import pytest

from policies import read_pattern
from policies.compiler import compile_agreement
from policies.patterns import PATTERNS, PatternUse, render, render_policy
from tessera.policy import EmbeddedRegoEngine, OpaServerEngine, PolicyModule, create_engine
from tests.policies.test_engine import BROKEN, REQUEST, compile_error

pytest.importorskip("opa_bindings", reason="opa-golib-python-bindings is not installed")

from tests.policies.opa_rest_server import run_opa_rest_server
from tests.policies.ports import unused_port

CALLER = {"sub": "did:web:consumer.example", "roles": ["researcher"], "region": "EU-DE", "jurisdiction": "CH"}
GOOD = {
    **REQUEST,
    "caller": {**REQUEST["caller"], **CALLER, "security_profile": "trust"},
    "connector": {"id": "https://consumer.example/connector"},
    "event": "incident-response",
    "artifact": {"state": "released"},
    "asset": {**REQUEST["asset"], "classification": "general"},
    "request": {"query": {"group_by": ["region"], "metrics": [{"fn": "avg", "field": "age"}, {"fn": "count"}]}},
}
BAD = {
    "caller": {
        "sub": "did:web:other",
        "roles": ["member"],
        "region": "US-CA",
        "jurisdiction": "US",
        "security_profile": "base",
    },
    "purpose": "marketing",
    "uses": 10,
    "now": "2028-01-01T00:00:00Z",
    "agreement": {"timestamp": "2026-01-01T00:00:00Z", "assigner": "did:web:provider"},
    "connector": {"id": "x"},
    "event": "fair",
    "artifact": {"state": "draft"},
    "asset": {"classification": "core"},
    "request": {"query": {"group_by": ["name"], "metrics": [{"fn": "max", "field": "salary"}]}},
}
INPUTS = [GOOD, BAD, {}, {"uses": "3", "now": "2026-06-01T00:00:00+02:00", "caller": {"roles": "researcher"}}]


def without(document: dict, path: tuple[str, ...]) -> dict:
    """`document` with the value at `path` removed."""
    if len(path) == 1:
        return {k: v for k, v in document.items() if k != path[0]}
    return {**document, path[0]: without(document[path[0]], path[1:])}


# GOOD with one value missing at a time, and an unknown security level: OPA and regorus differ on
# negated expressions over missing values, where a compiled agreement must still deny on both.
MISSING = [
    without(GOOD, path)
    for path in [
        ("purpose",),
        ("uses",),
        ("now",),
        ("agreement", "timestamp"),
        ("caller", "sub"),
        ("caller", "region"),
        ("caller", "roles"),
        ("caller", "jurisdiction"),
        ("caller", "security_profile"),
        ("connector",),
        ("event",),
        ("artifact",),
        ("asset", "classification"),
    ]
] + [{**GOOD, "caller": {**GOOD["caller"], "security_profile": "trusted"}}]


def modules() -> list[PolicyModule]:
    found = [PolicyModule(f"lib-{name}", read_pattern(f"usage/{name}")) for name in sorted(PATTERNS)]
    found.append(PolicyModule("research", read_pattern("examples/research_limited")))
    everything = [PatternUse.of(n) for n in sorted(PATTERNS) if n != "masked_fields"]
    found.append(PolicyModule("all", render("tessera.usage.all", everything)))
    alternatives = render_policy(
        "tessera.usage.alternatives",
        [
            [PatternUse.of("purpose", allowed_purposes=["research"]), PatternUse.of("log_usage")],
            [PatternUse.of("max_uses")],
        ],
        [([PatternUse.of("regions", allowed_regions=["US-CA"])], "prohibited: region US-CA")],
    )
    found.append(PolicyModule("alternatives", alternatives))
    return found


@pytest.fixture
async def opa() -> AsyncIterator[OpaServerEngine]:
    async with run_opa_rest_server(unused_port()) as url:
        engine = create_engine("opa", opa_url=url)
        assert isinstance(engine, OpaServerEngine)
        yield engine
        await engine.aclose()


async def test_the_pattern_suite_decides_the_same_on_both_engines(opa: OpaServerEngine) -> None:
    embedded = EmbeddedRegoEngine()
    compared = 0
    for module in modules():
        for request in INPUTS:
            mine, theirs = await embedded.decide(module, request), await opa.decide(module, request)
            assert mine == theirs, (module.id, request)
            compared += 1
    assert compared == len(INPUTS) * (len(PATTERNS) + 3)


async def test_opa_compile_errors_name_the_line(opa: OpaServerEngine) -> None:
    assert await opa.compile(read_pattern("usage/purpose")) == "data.tessera.usage.purpose"
    assert (await compile_error(opa, BROKEN)).line == 4


async def test_opa_evaluates_raw_queries(opa: OpaServerEngine) -> None:
    module = PolicyModule("research", read_pattern("examples/research_limited"))
    rows = await opa.evaluate([module], "x := data.tessera.usage.research_limited.mask", input=REQUEST)
    assert rows == [{"expressions": [], "bindings": {"x": ["email"]}}]


def agreements() -> list[PolicyModule]:
    """Compiled agreements over every operand the compiler knows, plus a prohibition, a duty and alternatives."""
    t = "https://w3id.org/tessera/v1/"
    checks = [
        ("purpose", "isAnyOf", ["research"]),
        ("count", "lteq", "3"),
        ("dateTime", "lt", "2027-01-01T00:00:00Z"),
        ("elapsedTime", "lteq", "P30D"),
        ("spatial", "isAnyOf", ["EU-DE"]),
        ("recipient", "eq", "did:web:consumer.example"),
        ("system", "eq", "https://consumer.example/connector"),
        ("event", "isAnyOf", ["incident-response"]),
        (t + "role", "isAnyOf", ["researcher"]),
        (t + "jurisdiction", "isNoneOf", ["US"]),
        (t + "securityLevel", "gteq", "trust"),
        (t + "classification", "isNoneOf", ["core"]),
        (t + "artifactState", "eq", "released"),
    ]
    every = [{"leftOperand": left, "operator": op, "rightOperand": right} for left, op, right in checks]
    mask = {
        "action": "anonymize",
        "constraint": [{"leftOperand": t + "field", "operator": "isAnyOf", "rightOperand": ["email"]}],
    }
    documents = [
        {"permission": [{"action": "use", "constraint": every}], "assignee": "did:web:consumer.example"},
        {"permission": [{"action": "use", "constraint": every, "duty": [mask]}]},
        {
            "permission": [{"action": "use", "constraint": every[:3]}, {"action": "use", "constraint": every[3:6]}],
            "prohibition": [{"action": "use", "constraint": [every[4]]}],
        },
        {
            "permission": [
                {
                    "action": "use",
                    "constraint": [{"leftOperand": "moonPhase", "operator": "eq", "rightOperand": "full"}],
                }
            ]
        },
    ]
    return [
        compile_agreement({"@type": "Agreement", "timestamp": "2026-12-01T00:00:00Z", **d}).module for d in documents
    ]


async def test_compiled_agreements_with_bound_modules_decide_the_same_on_both_engines(opa: OpaServerEngine) -> None:
    embedded = EmbeddedRegoEngine()
    bound = [m for m in modules() if m.id in ("lib-purpose", "lib-max_uses", "research", "all", "alternatives")]
    compared = 0
    for law in agreements():
        for module in bound:
            for request in INPUTS:
                mine = await embedded.decide_all([law, module], request)
                theirs = await opa.decide_all([law, module], request)
                assert mine == theirs, (law.id, module.id, request)
                compared += 1
    assert compared == 4 * len(bound) * len(INPUTS)


async def test_a_compiled_agreement_denies_a_missing_value_on_both_engines(opa: OpaServerEngine) -> None:
    embedded = EmbeddedRegoEngine()
    for law in agreements()[:2]:
        assert (await embedded.decide(law, GOOD)).allow, law.source
        for request in MISSING:
            mine, theirs = await embedded.decide(law, request), await opa.decide(law, request)
            assert mine == theirs, (law.id, request)
            assert not mine.allow and all(r.startswith("agreement: ") for r in mine.reasons), (law.id, request)
