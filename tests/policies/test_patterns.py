"""Rendering patterns with parameters (policies/patterns.py), and explaining decisions."""

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from policies.explain import explain, patterns_in
from policies.patterns import PATTERNS, PatternError, PatternUse, render
from tessera.policy import Decision, EmbeddedRegoEngine, Obligation, PolicyModule


def test_defaults_come_from_the_template() -> None:
    assert PATTERNS["purpose"].defaults == {"allowed_purposes": ["research", "statistics"]}
    assert PatternUse.of("max_uses").params == {"max_uses": 10}


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("purpose", {"allowed_purposes": "research"}, "list of non-empty strings"),
        ("purpose", {"purposes": ["x"]}, "has no parameter purposes"),
        ("max_uses", {"max_uses": -1}, "non-negative integer"),
        ("time_window", {"not_before": "2026-01-01"}, "zone"),
        ("security_profile", {"minimum_security_profile": "gold"}, "one of base"),
        ("modify_in_transit", {"drop_rows": [{"field": "a", "op": "like", "value": 1}]}, "op must be"),
        ("aggregate_only", {"min_group_size": 0}, "at least 1"),
        ("nope", {}, "no pattern"),
    ],
)
def test_bad_parameters_are_named(name: str, params: dict, message: str) -> None:
    with pytest.raises(PatternError, match=message):
        PatternUse.of(name, **params)


def test_a_pattern_may_appear_once() -> None:
    with pytest.raises(PatternError):
        render("tessera.usage.x", [PatternUse.of("purpose"), PatternUse.of("purpose")])


def test_rendering_is_deterministic_so_the_hash_is_stable() -> None:
    a = render("tessera.usage.x", [PatternUse.of("purpose", allowed_purposes=["b", "a", "a"])])
    b = render("tessera.usage.x", [PatternUse.of("purpose", allowed_purposes=["a", "b"])])
    assert a == b
    assert 'allowed_purposes := ["a", "b"]' in a


async def test_a_combined_policy_is_a_conjunction_with_the_union_of_obligations() -> None:
    source = render(
        "tessera.usage.combined",
        [
            PatternUse.of("purpose", allowed_purposes=["research"]),
            PatternUse.of("max_uses", max_uses=3),
            PatternUse.of("modify_in_transit", masked_paths=["$.address.street"], replacements=[], drop_rows=[]),
            PatternUse.of("log_usage"),
        ],
    )
    engine, module = EmbeddedRegoEngine(), PolicyModule("combined", source)
    assert await engine.decide(module, {"purpose": "research", "uses": 0}) == Decision(
        True, obligations=[Obligation("log", {"event": "use"}), Obligation("mask", {"fields": ["$.address.street"]})]
    )
    denied = await engine.decide(module, {"purpose": "ads", "uses": 3})
    assert denied.reasons == ('purpose: "ads" not in allowed purposes ["research"]', "uses: 3 uses consumed, limit 3")


async def test_every_pattern_renders_alone_and_together() -> None:
    engine = EmbeddedRegoEngine()
    for name in PATTERNS:
        await engine.compile(render(f"tessera.usage.{name}", [PatternUse.of(name)]))
    everything = [PatternUse.of(n) for n in PATTERNS]
    assert await engine.compile(render("tessera.usage.all", everything)) == "data.tessera.usage.all"


async def test_explain_names_each_pattern_with_the_values_compared() -> None:
    uses = [PatternUse.of("purpose", allowed_purposes=["research"]), PatternUse.of("regions")]
    module = PolicyModule("p", render("tessera.usage.p", uses))
    assert patterns_in(module.source) == uses
    explanation = await explain(EmbeddedRegoEngine(), module, {"purpose": "ads", "caller": {"region": "EU-DE"}})
    assert not explanation.decision.allow
    purpose, regions = explanation.patterns
    assert (purpose.name, purpose.allow, purpose.inputs) == ("purpose", False, {"purpose": "ads"})
    assert purpose.reasons == ('purpose: "ads" not in allowed purposes ["research"]',)
    assert (regions.allow, regions.inputs) == (True, {"caller.region": "EU-DE"})
    assert explanation.to_dict()["patterns"][0]["pattern"] == "purpose"


async def test_explain_a_hand_written_module() -> None:
    module = PolicyModule("m", "package m\n\ndefault allow := false\n")
    explanation = await explain(EmbeddedRegoEngine(), module, {})
    assert explanation.patterns == ()
    assert explanation.decision.reasons == ("no rule allowed the request",)


def test_cli_new_and_explain(tessera: typer.Typer, runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(tessera, ["policy", "new", "max_uses", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert runner.invoke(tessera, ["policy", "test", str(tmp_path)]).exit_code == 0
    request = tmp_path / "in.json"
    request.write_text(json.dumps({"uses": 10}))
    denied = runner.invoke(tessera, ["policy", "explain", "-d", str(tmp_path), "-i", str(request), "--json"])
    assert denied.exit_code == 1
    assert json.loads(denied.stdout)["patterns"][0]["reasons"] == ["uses: 10 uses consumed, limit 10"]
    request.write_text(json.dumps({"uses": 1}))
    allowed = runner.invoke(tessera, ["policy", "explain", "-d", str(tmp_path), "-i", str(request)])
    assert allowed.exit_code == 0 and allowed.stdout.startswith("ALLOWED")


def test_cli_explain_decides_an_agreement_with_its_bound_module(
    tessera: typer.Typer, runner: CliRunner, tmp_path: Path
) -> None:
    runner.invoke(tessera, ["policy", "new", "max_uses", "-p", "max_uses=5", "-o", str(tmp_path)])
    agreement = tmp_path / "agreement.json"
    count = {"leftOperand": "count", "operator": "lteq", "rightOperand": "1"}
    agreement.write_text(json.dumps({"@type": "Agreement", "permission": [{"action": "use", "constraint": [count]}]}))
    request = tmp_path / "in.json"
    request.write_text(json.dumps({"uses": 1}))
    both = ["policy", "explain", "-d", str(tmp_path / "max_uses.rego"), "-a", str(agreement), "-i", str(request)]
    denied = runner.invoke(tessera, [*both, "--json"])
    assert denied.exit_code == 1, denied.output
    assert json.loads(denied.stdout)["reasons"] == ['agreement: count lteq "1" does not hold (this would be use 2)']
    alone = runner.invoke(tessera, ["policy", "explain", "-a", str(agreement), "-i", str(request)])
    assert alone.exit_code == 1 and alone.stdout.startswith("DENIED")
    request.write_text(json.dumps({"uses": 0}))
    assert runner.invoke(tessera, both).exit_code == 0


def test_cli_new_with_params_and_errors(tessera: typer.Typer, runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(tessera, ["policy", "new", "purpose", "-p", 'allowed_purposes=["x"]', "-o", str(tmp_path)])
    assert result.exit_code == 0
    assert 'allowed_purposes := ["x"]' in (tmp_path / "purpose.rego").read_text()
    assert runner.invoke(tessera, ["policy", "new", "nope"]).exit_code == 2
    assert runner.invoke(tessera, ["policy", "explain", "-d", str(tmp_path / "x.rego"), "-i", "y"]).exit_code == 2
