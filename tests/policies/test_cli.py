"""`tessera policy eval` and `tessera policy test`, shaped like `opa eval` and `opa test`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from policies import LIBRARY

RESEARCH = str(LIBRARY / "examples" / "research_limited.rego")
PASSING = """package demo_test

test_one if { 1 == 1 }

test_two if { "a" < "b" }
"""
FAILING = """package demo_failing_test

test_good if { true }

test_bad if { 1 == 2 }

test_error if { 1 / 0 > 0 }
"""


@pytest.fixture
def request_file(tmp_path: Path) -> Path:
    path = tmp_path / "input.json"
    path.write_text(json.dumps({"purpose": "marketing", "uses": 3}))
    return path


def test_eval_prints_opa_result_shape(tessera: typer.Typer, runner: CliRunner, request_file: Path) -> None:
    query = "data.tessera.usage.research_limited.allow"
    result = runner.invoke(tessera, ["policy", "eval", "-d", RESEARCH, "-i", str(request_file), query])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "result": [{"expressions": [{"value": False, "text": query, "location": {"row": 1, "col": 1}}]}]
    }


def test_eval_includes_bindings_when_the_query_binds(
    tessera: typer.Typer, runner: CliRunner, request_file: Path
) -> None:
    query = "reasons := data.tessera.usage.research_limited.deny"
    result = runner.invoke(tessera, ["policy", "eval", "-d", RESEARCH, "-i", str(request_file), query])
    row = json.loads(result.stdout)["result"][0]
    assert row["bindings"]["reasons"] == [
        'purpose "marketing" is not allowed (allowed: "research")',
        "use limit reached: 3 of 3 uses consumed",
    ]


def test_eval_loads_data_files_and_directories(tessera: typer.Typer, runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "limits").mkdir()
    (tmp_path / "limits" / "data.json").write_text('{"max": 3}')
    result = runner.invoke(tessera, ["policy", "eval", "-d", str(tmp_path), "data.limits.max"])
    assert json.loads(result.stdout)["result"][0]["expressions"][0]["value"] == 3


def test_eval_prints_empty_object_when_undefined(tessera: typer.Typer, runner: CliRunner) -> None:
    result = runner.invoke(tessera, ["policy", "eval", "-d", RESEARCH, "data.tessera.usage.research_limited.nope"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {}


def test_eval_reports_compile_errors_as_json(tessera: typer.Typer, runner: CliRunner, tmp_path: Path) -> None:
    broken = tmp_path / "broken.rego"
    broken.write_text("package broken\n\nallow if {\n")
    result = runner.invoke(tessera, ["policy", "eval", "--format", "json", "-d", str(broken), "data.broken"])
    assert result.exit_code == 1
    (error,) = json.loads(result.stdout)["errors"]
    assert error["code"] == "rego_compile_error"
    assert error["location"]["row"] in (3, 4)  # regorus points at the end of the file


def test_eval_reports_evaluation_errors(tessera: typer.Typer, runner: CliRunner) -> None:
    result = runner.invoke(tessera, ["policy", "eval", "--strict-builtin-errors", "x := 1 / 0"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["errors"][0]["code"] == "eval_error"


def test_eval_missing_file_is_a_usage_error(tessera: typer.Typer, runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(tessera, ["policy", "eval", "-d", str(tmp_path / "nope.rego"), "data"])
    assert result.exit_code == 2
    assert "no such file" in json.loads(result.stdout)["errors"][0]["message"]


def test_eval_pretty_prints_the_value(tessera: typer.Typer, runner: CliRunner, request_file: Path) -> None:
    query = "data.tessera.usage.research_limited.mask"
    result = runner.invoke(tessera, ["policy", "eval", "-f", "pretty", "-d", RESEARCH, "-i", str(request_file), query])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == ["email"]


def test_test_passes(tessera: typer.Typer, runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "demo_test.rego").write_text(PASSING)
    result = runner.invoke(tessera, ["policy", "test", str(tmp_path)])
    assert result.exit_code == 0
    assert result.stdout.strip() == "PASS: 2/2"


def test_test_reports_failures_and_errors(tessera: typer.Typer, runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "failing_test.rego").write_text(FAILING)
    result = runner.invoke(tessera, ["policy", "test", str(tmp_path)])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == f"{tmp_path / 'failing_test.rego'}:"
    assert lines[1].startswith("data.demo_failing_test.test_bad: FAIL (")
    assert lines[2].startswith("data.demo_failing_test.test_error: ERROR (")
    assert lines[-3:] == ["PASS: 1/3", "FAIL: 1/3", "ERROR: 1/3"]


def test_test_verbose_prints_every_test(tessera: typer.Typer, runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "demo_test.rego").write_text(PASSING)
    result = runner.invoke(tessera, ["policy", "test", "-v", str(tmp_path)])
    lines = result.stdout.splitlines()
    assert lines[1].startswith("data.demo_test.test_one: PASS (") and lines[1].endswith("s)")
    assert lines[2].startswith("data.demo_test.test_two: PASS (")
    assert lines[-1] == "PASS: 2/2"


def test_test_run_filters_by_regex(tessera: typer.Typer, runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "failing_test.rego").write_text(FAILING)
    result = runner.invoke(tessera, ["policy", "test", "--run", "test_go+d$", str(tmp_path)])
    assert result.exit_code == 0
    assert result.stdout.strip() == "PASS: 1/1"


def test_test_compile_error_exits_2(tessera: typer.Typer, runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "broken_test.rego").write_text("package broken\n\ntest_x if {\n")
    result = runner.invoke(tessera, ["policy", "test", str(tmp_path)])
    assert result.exit_code == 2
    assert "broken_test.rego:" in result.stderr


def test_the_pattern_library_passes_its_own_tests(tessera: typer.Typer, runner: CliRunner) -> None:
    result = runner.invoke(tessera, ["policy", "test", str(LIBRARY)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("PASS: ")


def test_commands_have_help(tessera: typer.Typer, runner: CliRunner) -> None:
    for command in (["policy"], ["policy", "eval"], ["policy", "test"]):
        result = runner.invoke(tessera, [*command, "--help"])
        assert result.exit_code == 0
        assert "Usage" in result.stdout


def test_console_script_runs_policy_eval(request_file: Path) -> None:
    script = Path(sys.executable).with_name("tessera")
    if not script.exists():
        pytest.skip("the tessera console script is not installed in this environment")
    query = "data.tessera.usage.research_limited.allow"
    env = {**os.environ, "RUST_BACKTRACE": "0"}
    proc = subprocess.run(
        [str(script), "policy", "eval", "-d", RESEARCH, "-i", str(request_file), query],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["result"][0]["expressions"][0]["value"] is False
