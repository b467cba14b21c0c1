"""The embedded engine through the PolicyEngine interface (tests/policies/test_opa.py runs OPA)."""

import pytest

from policies import read_pattern
from tessera.errors import PolicyCompileError, PolicyEvaluationError
from tessera.policy import Decision, EmbeddedRegoEngine, Obligation, PolicyEngine, PolicyModule, create_engine

REQUEST = {
    "agreement": {
        "id": "urn:uuid:6c7f1a52-4c1e-4b8a-9d0e-2f3a4b5c6d7e",
        "assigner": "provider",
        "assignee": "consumer",
        "target": "patients-2026",
        "timestamp": "2026-11-01T09:00:00Z",
    },
    "caller": {"sub": "consumer", "org": "ACME", "region": "EU-DE", "security_profile": "base"},
    "purpose": "research",
    "uses": 2,
    "now": "2026-11-23T10:00:00Z",
    "asset": {"id": "patients-2026", "format": "csv"},
}
BROKEN = "package broken\n\nallow if {\n    input.x == = 1\n}\n"  # a parse error at line 4, column 16


async def compile_error(engine: PolicyEngine, source: str) -> PolicyCompileError:
    """The error `engine` raises compiling `source` (which must not compile)."""
    with pytest.raises(PolicyCompileError) as caught:
        await engine.compile(source)
    return caught.value


@pytest.fixture
def research() -> PolicyModule:
    return PolicyModule(id="research-limited", source=read_pattern("examples/research_limited"))


@pytest.fixture
async def engine():
    engine = create_engine("embedded")
    yield engine
    await engine.aclose()


def test_module_hash_is_sha256_of_source() -> None:
    module = PolicyModule(id="m", source="package m\n")
    assert module.hash == "sha256:4aa8b7c674470695884aab61a414c5a11c9e2e283df176cad2013bd4a059a7b5"


async def test_compile_returns_the_package(engine: EmbeddedRegoEngine, research: PolicyModule) -> None:
    assert await engine.compile(research.source) == "data.tessera.usage.research_limited"


async def test_compile_error_names_line_and_column(engine: EmbeddedRegoEngine) -> None:
    error = await compile_error(engine, BROKEN)
    assert (error.line, error.column) == (4, 16)
    assert error.status_code == 400


@pytest.mark.parametrize(
    ("body", "column", "message"),
    [("y", 10, "unsafe"), ("nofn(1)", 14, "could not find function")],
)
async def test_compile_finds_errors_regorus_reports_late(
    engine: EmbeddedRegoEngine, body: str, column: int, message: str
) -> None:
    error = await compile_error(engine, f"package late\n\nallow if {body}\n")
    assert (error.line, error.column) == (3, column)
    assert message in error.detail


async def test_compile_accepts_a_module_that_fails_only_on_some_input(engine: EmbeddedRegoEngine) -> None:
    assert await engine.compile("package div\n\nallow if 10 / 0 > 1\n") == "data.div"


async def test_decide_allows_research_and_masks_email(engine: EmbeddedRegoEngine, research: PolicyModule) -> None:
    decision = await engine.decide(research, REQUEST)
    assert decision == Decision(allow=True, reasons=(), mask=("email",))
    assert decision.to_dict() == {
        "allow": True,
        "reasons": [],
        "obligations": [{"kind": "mask", "fields": ["email"]}],
        "mask": ["email"],
    }


async def test_decide_denies_with_sorted_reasons(engine: EmbeddedRegoEngine, research: PolicyModule) -> None:
    decision = await engine.decide(research, {**REQUEST, "purpose": "marketing", "uses": 3})
    assert decision == Decision(
        allow=False,
        reasons=(
            'purpose "marketing" is not allowed (allowed: "research")',
            "use limit reached: 3 of 3 uses consumed",
        ),
    )


async def test_decide_is_cached_per_module_hash(engine: EmbeddedRegoEngine, research: PolicyModule) -> None:
    await engine.decide(research, REQUEST)
    await engine.decide(PolicyModule(id="other-id", source=research.source), REQUEST)
    assert len(engine._prepared) == 1


@pytest.mark.parametrize(
    "source",
    [
        "package p\n\nallow if input.x\n",  # allow undefined
        "package p\n\nallow := 1\n",  # allow not a boolean
        "package p\n\nnothing := true\n",  # no allow rule at all
    ],
)
async def test_decide_denies_unless_allow_is_true(engine: EmbeddedRegoEngine, source: str) -> None:
    decision = await engine.decide(PolicyModule(id="p", source=source), {"x": False})
    assert decision == Decision(allow=False, reasons=("no rule allowed the request",))


async def test_decide_denies_when_deny_is_not_empty_even_if_allow_is_true(engine: EmbeddedRegoEngine) -> None:
    source = 'package p\n\nallow := true\n\ndeny contains "no"\n\nmask contains "email"\n'
    decision = await engine.decide(PolicyModule(id="p", source=source), {})
    assert decision == Decision(allow=False, reasons=("no",))


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # A complete rule with no default that is undefined for this input reads as absent.
        ('package p\n\nallow := true\n\nmask := ["email"] if input.hide\n', Decision(allow=True)),
        ('package p\n\nallow := true\n\nmask := ["email"] if input.x\n', Decision(allow=True, mask=("email",))),
        ('package p\n\nallow := true\n\ndeny := {"no"} if input.x\n', Decision(allow=False, reasons=("no",))),
        # Sets of objects: deny reasons are their JSON; obligations are objects with a kind.
        ('package p\n\nallow := true\n\ndeny contains {"why": 1}\n', Decision(allow=False, reasons=('{"why": 1}',))),
        (
            'package p\n\nallow := true\n\nobligations contains {"kind": "log", "level": 1}\n',
            Decision(allow=True, obligations=(Obligation("log", {"level": 1}),)),
        ),
        # Rules of another name, and functions named like the convention, are not read.
        ("package p\n\ndeny(x) := x\n\nallow := true\n", Decision(allow=True)),
    ],
)
async def test_decide_reads_the_convention_rules_whatever_their_kind(
    engine: EmbeddedRegoEngine, source: str, expected: Decision
) -> None:
    assert await engine.decide(PolicyModule(id="p", source=source), {"x": True}) == expected


async def test_a_module_may_not_take_the_decision_modules_package(engine: EmbeddedRegoEngine) -> None:
    with pytest.raises(PolicyEvaluationError, match="cannot be decided together"):
        await engine.decide(PolicyModule(id="p", source="package tessera_decision\n\nallow := true\n"), {})


async def test_decide_error_raises_evaluation_error(engine: EmbeddedRegoEngine) -> None:
    module = PolicyModule(id="div", source="package div\n\nallow if 10 / input.n > 1\n")
    with pytest.raises(PolicyEvaluationError) as caught:
        await engine.decide(module, {"n": 0})
    assert "divide by zero" in caught.value.detail


async def test_decide_on_broken_module_raises_evaluation_error(engine: EmbeddedRegoEngine) -> None:
    with pytest.raises(PolicyEvaluationError):
        await engine.decide(PolicyModule(id="broken", source="package broken\nallow if {"), {})


async def test_decide_fails_closed_on_a_mask_that_is_not_field_names(engine: EmbeddedRegoEngine) -> None:
    module = PolicyModule(id="m", source="package m\n\nallow := true\n\nmask := 3\n")
    with pytest.raises(PolicyEvaluationError):
        await engine.decide(module, {})


async def test_evaluate_returns_opa_rows(engine: EmbeddedRegoEngine, research: PolicyModule) -> None:
    rows = await engine.evaluate([research], "x := data.tessera.usage.research_limited.mask", input=REQUEST)
    assert rows == [
        {
            "expressions": [
                {
                    "value": True,
                    "text": "x := data.tessera.usage.research_limited.mask",
                    "location": {"row": 1, "col": 1},
                }
            ],
            "bindings": {"x": ["email"]},
        }
    ]


async def test_evaluate_with_data_and_undefined(engine: EmbeddedRegoEngine) -> None:
    assert await engine.evaluate([], "data.limits.max", data={"limits": {"max": 3}}) == [
        {"expressions": [{"value": 3, "text": "data.limits.max", "location": {"row": 1, "col": 1}}], "bindings": {}}
    ]
    assert await engine.evaluate([], "data.limits.min", data={"limits": {"max": 3}}) == []


async def test_evaluate_compile_error(engine: EmbeddedRegoEngine) -> None:
    with pytest.raises(PolicyCompileError):
        await engine.evaluate([PolicyModule(id="bad.rego", source="package bad\nallow if {")], "data.bad")


def test_create_engine_rejects_unknown_kinds() -> None:
    from tessera.errors import BadRequest

    with pytest.raises(BadRequest):
        create_engine("wasm")
    with pytest.raises(BadRequest):
        create_engine("opa")
