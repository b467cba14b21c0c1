"""Run Rego unit tests like `opa test`: every rule named `test_*` in every package is a test.

A test passes when its rule evaluates to `true`; undefined or any other value is a failure, and an
evaluation error is an error.

```python
loaded = load_paths(["policies"])
report = run_tests(loaded, run=r"purpose")
assert report.ok, report.counts
```
"""

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

import regorus

from policies.loader import Loaded
from tessera.policy.embedded import load_engine, module_rules, regorus_error

__all__ = ["Outcome", "TestReport", "TestResult", "run_tests"]


class Outcome(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    ERROR = "ERROR"


@dataclass(frozen=True)
class TestResult:
    name: str  # the full rule path, e.g. data.tessera.usage.purpose_test.test_allowed
    file: str
    outcome: Outcome
    duration_ns: int
    message: str = ""

    @property
    def duration(self) -> str:
        """Like Go's durations in `opa test` output: `512µs`, `1.204ms`."""
        if self.duration_ns < 1_000_000:
            return f"{self.duration_ns / 1000:.0f}µs"
        return f"{self.duration_ns / 1_000_000:.3f}ms"


@dataclass
class TestReport:
    results: list[TestResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.outcome is Outcome.PASS for r in self.results)

    @property
    def counts(self) -> dict[Outcome, int]:
        return {o: sum(r.outcome is o for r in self.results) for o in Outcome}


@dataclass(frozen=True)
class _Test:
    name: str
    file: str


def run_tests(
    loaded: Loaded,
    *,
    run: str | None = None,
    on_result: Callable[[TestResult, int], None] | None = None,
) -> TestReport:
    """Run the tests in `loaded` whose full name matches the regex `run`.

    Raises PolicyCompileError when a module does not compile; `on_result(result, total)` is called
    after each test (for progress output).
    """
    engine = load_engine(loaded.modules, loaded.data)
    tests = discover(engine, run)
    report = TestReport()
    for test in tests:
        report.results.append(_run_one(engine, test))
        if on_result is not None:
            on_result(report.results[-1], len(tests))
    return report


def discover(engine: regorus.Engine, run: str | None = None) -> list[_Test]:
    pattern = re.compile(run) if run else None
    tests: dict[str, _Test] = {}
    for module in module_rules(engine):
        for rule in module.names:
            name = f"{module.package}.{rule}"
            # A test defined in two files of one package is one rule: run it once.
            if rule.startswith("test_") and name not in tests and (not pattern or pattern.search(name)):
                tests[name] = _Test(name, module.file)
    return list(tests.values())


def _run_one(engine: regorus.Engine, test: _Test) -> TestResult:
    start = time.perf_counter_ns()
    try:
        value = engine.eval_rule(test.name)
    except Exception as exc:  # regorus raises RuntimeError; any failure is this test's error
        elapsed = time.perf_counter_ns() - start
        return TestResult(test.name, test.file, Outcome.ERROR, elapsed, str(regorus_error(exc)))
    elapsed = time.perf_counter_ns() - start
    outcome = Outcome.PASS if value is True else Outcome.FAIL
    message = "" if value is True else "undefined" if value is None else f"got {value!r}"
    return TestResult(test.name, test.file, outcome, elapsed, message)
