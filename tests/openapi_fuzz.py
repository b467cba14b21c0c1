"""Schemathesis against a running service, from its served OpenAPI document: every operation with a few
derandomized examples, each answer checked for a 5xx, an undocumented status and a body that does not
match its schema. Runs in a thread (schemathesis is synchronous; the servers run on the test's loop)."""

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


def _check(case: Any, base_url: str, headers: Mapping[str, str]) -> None:
    response = case.call(base_url=base_url, headers=dict(headers), timeout=15)
    case.validate_response(response, checks=CHECKS, headers=dict(headers))


def _fuzz(spec_url: str, base_url: str, headers: Mapping[str, str], skip: set[str], examples: int) -> list[str]:
    schema = schemathesis.openapi.from_url(spec_url)
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if f"{operation.method.upper()} {operation.path}" in skip:
            continue

        @settings(
            max_examples=examples,
            derandomize=True,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            _check(case, base_url, headers)

        try:
            run()
        except Exception as exc:  # every operation is tried; all failures are reported together
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    return failures


async def fuzz(
    spec_url: str, base_url: str, headers: Mapping[str, str], *, skip: Iterable[str] = (), examples: int = 4
) -> list[str]:
    """The failures of every operation of the document at `spec_url` not in `skip` ("METHOD /path")."""
    return await asyncio.to_thread(_fuzz, spec_url, base_url, headers, set(skip), examples)


async def check_case(
    spec_url: str, base_url: str, headers: Mapping[str, str], method: str, path: str, **case: Any
) -> None:
    """One given request (`path_parameters`, `query`, `body`) checked as `fuzz` checks generated ones."""

    def run() -> None:
        schema = schemathesis.openapi.from_url(spec_url)
        operation = schema[path][method]
        _check(operation.Case(**case), base_url, headers)

    await asyncio.to_thread(run)
