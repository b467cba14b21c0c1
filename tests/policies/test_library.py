"""The pattern library: every module follows the decision convention and its tests pass."""

import pytest

from policies import LIBRARY, read_pattern
from policies.loader import load_paths
from policies.patterns import PATTERNS as REGISTRY
from policies.testing import Outcome, run_tests
from tessera.policy import EmbeddedRegoEngine, PolicyModule

PATTERNS = sorted(
    str(p.relative_to(LIBRARY).with_suffix("")) for p in LIBRARY.rglob("*.rego") if not p.name.endswith("_test.rego")
)

OBLIGATIONS_ONLY = {"masked_fields", "modify_in_transit", "log_usage", "notify", "next_policy", "delete_after"}


def test_library_tests_pass() -> None:
    report = run_tests(load_paths([str(LIBRARY)]))
    assert report.counts[Outcome.PASS] == len(report.results) >= 20
    assert report.ok


def test_every_pattern_has_a_test_file() -> None:
    assert ["examples/research_limited", *(f"usage/{name}" for name in sorted(REGISTRY))] == PATTERNS
    for name in PATTERNS:
        assert (LIBRARY / f"{name}_test.rego").is_file()


@pytest.mark.parametrize("name", PATTERNS)
async def test_pattern_denies_an_empty_request(name: str) -> None:
    decision = await EmbeddedRegoEngine().decide(PolicyModule(id=name, source=read_pattern(name)), {})
    expected_package = f"tessera.usage.{name.rsplit('/', 1)[1]}"
    assert f"package {expected_package}\n" in read_pattern(name)
    if name.removeprefix("usage/") in OBLIGATIONS_ONLY:
        assert decision.allow and decision.obligations
    else:
        assert not decision.allow and decision.reasons


def test_read_pattern_refuses_paths_outside_the_library() -> None:
    with pytest.raises(FileNotFoundError):
        read_pattern("../connector/cli")
