"""`tessera policy`: eval and test (like `opa eval` and `opa test`), explain a decision, scaffold a policy.

Exit codes follow `connector.cli`: 0 success, 1 an error or a failing test, 2 a usage or input error.
"""

import asyncio
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, NotRequired, TypedDict

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from policies.compiler import compile_agreement
from policies.explain import Explanation, explain
from policies.loader import Loaded, LoadError, load_paths
from policies.patterns import PATTERNS, PatternError, PatternUse, get_pattern, render
from policies.testing import Outcome, TestReport, TestResult, run_tests
from tessera.errors import PolicyCompileError, PolicyError
from tessera.json import JSON, JSONObject
from tessera.policy.base import PolicyModule, QueryRow
from tessera.policy.embedded import EmbeddedRegoEngine

__all__ = ["policy_app", "register"]

# With this many tests or more, and a terminal on stderr, `policy test` shows a progress bar.
PROGRESS_THRESHOLD = 200

policy_app = typer.Typer(
    name="policy",
    help="Evaluate Rego queries and run Rego tests (like `opa eval` and `opa test`).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(policy_app)


class OutputFormat(StrEnum):
    json = "json"
    pretty = "pretty"


class ErrorLocation(TypedDict):
    row: int
    col: int | None


class ErrorObject(TypedDict):
    """An error as `opa eval --format json` prints it."""

    message: str
    code: str
    location: NotRequired[ErrorLocation]


@policy_app.command("eval")
def eval_command(
    query: Annotated[str, typer.Argument(help="The Rego query, e.g. data.tessera.usage.purpose.allow")],
    data: Annotated[
        list[str] | None,
        typer.Option("--data", "-d", help="A .rego or .json file, or a directory of them (repeatable)."),
    ] = None,
    input: Annotated[Path | None, typer.Option("--input", "-i", help="A JSON file with the input.")] = None,
    format: Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")] = OutputFormat.json,
    strict_builtin_errors: Annotated[
        bool,
        typer.Option("--strict-builtin-errors", help="Accepted for OPA compatibility; builtin errors always raise."),
    ] = False,
) -> None:
    """Evaluate QUERY against the modules and data in --data, with --input."""
    try:
        loaded = load_paths(data or [])
        input_value = _read_input(input) if input is not None else None
    except LoadError as exc:
        _print_errors([{"message": exc.detail, "code": "invalid_argument"}], format)
        raise typer.Exit(2) from exc
    try:
        rows = asyncio.run(_evaluate(loaded.modules, query, input_value, loaded.data))
    except PolicyError as exc:
        _print_errors([_error_object(exc)], format)
        raise typer.Exit(1) from exc
    _print_rows(rows, format)


@policy_app.command("test")
def test_command(
    paths: Annotated[list[str], typer.Argument(help="Files or directories with .rego modules and .json data.")],
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Print one line per test.")] = False,
    run: Annotated[str | None, typer.Option("--run", "-r", help="Only run tests whose name matches a regex.")] = None,
) -> None:
    """Run every rule named test_* in every package; exit 1 if any fails."""
    console = Console(highlight=False, soft_wrap=True)
    try:
        loaded = load_paths(paths)
        report = _run_with_progress(loaded, run)
    except PolicyCompileError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(2) from exc
    except (LoadError, PolicyError) as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(2) from exc
    except Exception as exc:  # a bad --run regex
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if not report.results:
        typer.echo("no tests found", err=True)
        raise typer.Exit(2)
    _print_report(console, report, verbose)
    raise typer.Exit(0 if report.ok else 1)


async def _evaluate(modules: list[PolicyModule], query: str, input: JSON, data: JSONObject) -> list[QueryRow]:
    engine = EmbeddedRegoEngine()
    try:
        return await engine.evaluate(modules, query, input=input, data=data)
    finally:
        await engine.aclose()


def _read_input(path: Path) -> JSON:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise LoadError(f"{path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise LoadError(f"{path}: not JSON: {exc}") from exc


def _error_object(exc: PolicyError) -> ErrorObject:
    if isinstance(exc, PolicyCompileError):
        error: ErrorObject = {"message": exc.detail, "code": "rego_compile_error"}
        if exc.line is not None:
            error["location"] = {"row": exc.line, "col": exc.column}
        return error
    return {"message": exc.detail, "code": "eval_error"}


def _print_errors(errors: list[ErrorObject], format: OutputFormat) -> None:
    if format is OutputFormat.json:
        typer.echo(json.dumps({"errors": errors}, indent=2))
    else:
        for error in errors:
            typer.echo(f"{error['code']}: {error['message']}", err=True)


def _print_rows(results: list[QueryRow], format: OutputFormat) -> None:
    # Like OPA: no "bindings" key when the query binds no variables, `{}` when undefined.
    rows: list[JSONObject] = [{k: v for k, v in row.items() if k != "bindings" or v} for row in results]
    if format is OutputFormat.json:
        typer.echo(json.dumps({"result": rows} if rows else {}, indent=2, ensure_ascii=False))
        return
    console = Console(highlight=False, soft_wrap=True)
    if not rows:
        console.print("undefined")
    elif not any("bindings" in row for row in rows) and len(rows) == 1:
        for expression in rows[0]["expressions"]:
            console.print_json(json.dumps(expression["value"]))
    else:
        table = Table(*sorted({name for row in rows for name in row.get("bindings", {})}))
        for row in rows:
            values = [json.dumps(row.get("bindings", {}).get(c.header)) for c in table.columns]
            table.add_row(*values)
        console.print(table)


def _run_with_progress(loaded: Loaded, run: str | None) -> TestReport:
    if not sys.stderr.isatty():
        return run_tests(loaded, run=run)
    with Progress(console=Console(stderr=True), transient=True) as progress:
        task = None

        def advance(result: TestResult, total: int) -> None:
            nonlocal task
            if total < PROGRESS_THRESHOLD:
                return
            if task is None:
                task = progress.add_task("testing", total=total)
            progress.advance(task)

        return run_tests(loaded, run=run, on_result=advance)


def _print_report(console: Console, report: TestReport, verbose: bool) -> None:
    shown = [r for r in report.results if verbose or r.outcome is not Outcome.PASS]
    file = None
    for result in shown:
        if result.file != file:
            if file is not None:
                console.print()
            file = result.file
            console.print(f"{file}:")
        console.print(f"{result.name}: {result.outcome.value} ({result.duration})", markup=False)
        if result.outcome is Outcome.ERROR:
            console.print(f"  {result.message}", markup=False)
    if shown:
        console.print("-" * 80)
    total = len(report.results)
    for outcome, count in report.counts.items():
        if count or outcome is Outcome.PASS:
            console.print(f"{outcome.value}: {count}/{total}")


@policy_app.command("explain")
def explain_command(
    input: Annotated[Path, typer.Option("--input", "-i", help="A JSON file with the request (the input document).")],
    data: Annotated[
        list[str] | None, typer.Option("--data", "-d", help="The policy module (.rego); test files are skipped.")
    ] = None,
    agreement: Annotated[
        Path | None,
        typer.Option("--agreement", "-a", help="An ODRL agreement (JSON), decided with the module as data planes do."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the explanation as JSON.")] = False,
) -> None:
    """Explain the decision for one request, constraint by constraint. Exit 0 allowed, 1 denied, 2 error."""
    try:
        modules = [m for m in load_paths(data).modules if not m.id.endswith("_test.rego")] if data else []
        request = _read_input(input)
        if len(modules) > 1 or not (modules or agreement) or not isinstance(request, dict):
            raise LoadError("explain needs one policy module and/or an agreement, and an input object")
        if agreement is not None:
            modules.insert(0, compile_agreement(_read_agreement(agreement)).module)
        explanation = asyncio.run(_explain(modules, request))
    except (LoadError, PolicyError) as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(2) from exc
    if as_json:
        typer.echo(json.dumps(explanation.to_dict(), indent=2, ensure_ascii=False))
    else:
        _print_explanation(Console(highlight=False, soft_wrap=True), explanation)
    raise typer.Exit(0 if explanation.decision.allow else 1)


def _read_agreement(path: Path) -> JSONObject:
    document = _read_input(path)
    if not isinstance(document, dict):
        raise LoadError(f"{path}: an agreement must be a JSON object")
    return document


async def _explain(modules: list[PolicyModule], request: JSONObject) -> Explanation:
    engine = EmbeddedRegoEngine()
    try:
        return await explain(engine, modules, request)
    finally:
        await engine.aclose()


def _print_explanation(console: Console, explanation: Explanation) -> None:
    decision = explanation.decision
    console.print("ALLOWED" if decision.allow else "DENIED", markup=False)
    for reason in decision.reasons:
        console.print(f"  - {reason}", markup=False)
    for obligation in decision.obligations:
        console.print(f"  obligation: {json.dumps(obligation.to_dict())}", markup=False)
    if explanation.patterns:
        table = Table("pattern", "result", "input compared", "reasons / obligations")
        for part in explanation.patterns:
            inputs = ", ".join(f"{k}={json.dumps(v)}" for k, v in part.inputs.items()) or "-"
            notes = [*part.reasons, *(json.dumps(o) for o in part.obligations)]
            table.add_row(part.name, "allow" if part.allow else "deny", inputs, "\n".join(notes) or "-")
        console.print(table)


@policy_app.command("new")
def new_command(
    pattern: Annotated[str, typer.Argument(help=f"A library pattern: {', '.join(sorted(PATTERNS))}.")],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="NAME=VALUE, VALUE as JSON (or a bare string).")
    ] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory to write the files to.")] = Path("."),
) -> None:
    """Scaffold a policy from a library pattern, with the pattern's Rego tests beside it."""
    try:
        spec = get_pattern(pattern)
        use = PatternUse.of(pattern, **dict(_param(p) for p in param or []))
    except PatternError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(2) from exc
    output.mkdir(parents=True, exist_ok=True)
    policy, tests = output / f"{pattern}.rego", output / f"{pattern}_test.rego"
    policy.write_text(render(f"tessera.usage.{pattern}", [use]), encoding="utf-8")
    note = "" if use.params == spec.resolve({}) else _CHANGED_PARAMS
    tests.write_text(note + spec.tests, encoding="utf-8")
    typer.echo(f"wrote {policy} and {tests}; run: tessera policy test {output}")


_CHANGED_PARAMS = "# These are the library's tests, written for its default parameters: adapt the expected values.\n"


def _param(text: str) -> tuple[str, JSON]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise PatternError(f"--param must be NAME=VALUE, got {text!r}")
    try:
        return name, json.loads(value)
    except ValueError:
        return name, value
