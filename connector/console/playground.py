"""Policy playground: write Rego (or compose it from the pattern library), give an input, see the decision
explained rule by rule and pattern by pattern, and run Rego tests, as `tessera policy explain` and
`tessera policy test` do.

Nothing is stored and nothing goes through the management API (it has no dry run for a module that is
not uploaded): the trial runs in a bounded child process (`policies.playground`), since the Rego and the
input come from the browser.
"""

import json
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from policies import LIBRARY
from policies.patterns import PATTERNS, PatternError, PatternUse, render
from policies.playground import MAX_INPUT_BYTES, try_policy
from tessera.web.console import Console, text

NAV = [("/playground", "Playground")]
EXAMPLES = LIBRARY / "examples"
PACKAGE = "tessera.usage.playground"
# The usage input a connector's data plane decides with (docs/policies.md, "The input document").
SAMPLE_INPUT: dict[str, Any] = {
    "agreement": {
        "id": "urn:uuid:6c7f1a52-4c1e-4b8a-9d0e-2f3a4b5c6d7e",
        "assigner": "urn:tessera:provider",
        "assignee": "urn:tessera:consumer",
        "target": "patients-2026",
        "timestamp": "2026-11-01T09:00:00Z",
    },
    "caller": {
        "sub": "urn:tessera:consumer",
        "org": "ACME",
        "region": "EU-DE",
        "jurisdiction": "DE",
        "roles": ["researcher"],
        "security_profile": "base",
    },
    "connector": {"id": "http://consumer.example/dsp"},
    "purpose": "research",
    "uses": 0,
    "now": "2026-11-23T10:00:00Z",
    "asset": {"id": "patients-2026", "format": "csv", "classification": "general"},
    "artifact": {"state": "released"},
}
STARTER = [PatternUse.of("purpose", allowed_purposes=["research"]), PatternUse.of("max_uses")]


@dataclass
class Workbench:
    """What the page's form holds: the module, the input, the tests and the composition."""

    policy: str = ""
    input: str = ""
    tests: str = ""
    composition: str = ""
    example: str = ""
    pattern: str = ""
    params: str = ""

    @classmethod
    def starting(cls) -> "Workbench":
        policy, composition = render(PACKAGE, STARTER), _listed(STARTER)
        return cls(policy=policy, input=json.dumps(SAMPLE_INPUT, indent=2), composition=composition)

    @classmethod
    def of(cls, form: FormData) -> "Workbench":
        fields = {name: _raw(form, name) for name in cls.__dataclass_fields__}
        return cls(**fields)


def routes(console: Console) -> list[Route]:
    def page(request: Request, bench: Workbench, **context: Any) -> Response:
        return console.render(
            request,
            "playground_page.html",
            bench=bench,
            examples=examples(),
            patterns=sorted(PATTERNS.values(), key=lambda p: p.name),
            **context,
        )

    async def start(request: Request) -> Response:
        return page(request, Workbench.starting())

    async def act(request: Request, form: FormData) -> Response:
        bench, what = Workbench.of(form), text(form, "do")
        if what == "example":
            return page(request, bench, message=load_example(bench))
        if what == "compose":
            return page(request, bench, message=compose(bench))
        return page(request, bench, result=await trial(bench))

    async def run(request: Request, form: FormData) -> Response:
        return console.render(request, "playground_result.html", result=await trial(Workbench.of(form)))

    return [
        console.page("/playground", start),
        console.action("/playground", act),
        console.action("/playground/run", run),
    ]


def examples() -> list[str]:
    return sorted(p.stem for p in EXAMPLES.glob("*.rego") if not p.stem.endswith("_test"))


def load_example(bench: Workbench) -> str | None:
    """The chosen example (and its tests) into the bench; an error message, or None."""
    if bench.example not in examples():
        return "choose an example"
    bench.policy = (EXAMPLES / f"{bench.example}.rego").read_text(encoding="utf-8")
    tests = EXAMPLES / f"{bench.example}_test.rego"
    bench.tests = tests.read_text(encoding="utf-8") if tests.is_file() else ""
    bench.input = json.dumps(SAMPLE_INPUT, indent=2)
    return None


def compose(bench: Workbench) -> str | None:
    """The composition (plus the chosen pattern) rendered into the bench's module; an error message, or None."""
    try:
        uses = _composition(bench.composition)
        if bench.pattern:
            params = json.loads(bench.params) if bench.params.strip() else {}
            if not isinstance(params, dict):
                raise PatternError("the parameters must be a JSON object")
            uses.append(PatternUse.of(bench.pattern, **params))
    except ValueError as exc:
        return f"the composition or parameters are not JSON: {exc}"
    except PatternError as exc:
        return exc.detail
    if not uses:
        return "add a pattern to compose"
    bench.composition = _listed(uses)
    bench.policy = render(PACKAGE, uses)
    bench.pattern = bench.params = ""
    return None


def _listed(uses: list[PatternUse]) -> str:
    """A composition as the page shows it: `PolicyCreate`'s `patterns`."""
    return json.dumps([{"name": use.name, "params": use.params} for use in uses], indent=1)


def _composition(raw: str) -> list[PatternUse]:
    listed = json.loads(raw) if raw.strip() else []
    if not isinstance(listed, list) or not all(isinstance(p, dict) and isinstance(p.get("name"), str) for p in listed):
        raise PatternError('the composition must be a list of {"name": ..., "params": {...}}')
    params = [p.get("params") or {} for p in listed]
    if not all(isinstance(p, dict) for p in params):
        raise PatternError("each pattern's params must be an object")
    return [PatternUse.of(p["name"], **param) for p, param in zip(listed, params, strict=True)]


async def trial(bench: Workbench) -> dict[str, Any]:
    """The trial's result, or an error in the same shape (`error`: where, message, line)."""
    if not bench.policy.strip():
        return {"error": {"in": "policy", "message": "the policy is empty"}}
    if len(bench.input.encode()) > MAX_INPUT_BYTES:
        return {"error": {"in": "input", "message": f"the input is larger than {MAX_INPUT_BYTES} bytes"}}
    try:
        document = json.loads(bench.input or "{}")
    except json.JSONDecodeError as exc:
        problem = {"in": "input", "message": f"not JSON: {exc.msg}", "line": exc.lineno, "column": exc.colno}
        return {"error": problem | {"excerpt": _line(bench.input, exc.lineno)}}
    except RecursionError:
        return {"error": {"in": "input", "message": "the input nests too deeply"}}
    if not isinstance(document, dict):
        return {"error": {"in": "input", "message": "the input must be a JSON object"}}
    result = await try_policy(bench.policy, document, bench.tests)
    for error in (result.get("error"), result.get("tests_error")):
        if isinstance(error, dict) and isinstance(error.get("line"), int):
            error["excerpt"] = _line(bench.tests if error["in"] == "tests" else bench.policy, error["line"])
    return _shown(result)


def _shown(result: dict[str, Any]) -> dict[str, Any]:
    """JSON values as the page prints them (non-ASCII as is, unlike Jinja's `tojson`)."""
    for key in ("values", "inputs"):
        result[f"{key}_shown"] = {name: _json(value) for name, value in result.get(key, {}).items()}
    for pattern in result.get("decision", {}).get("patterns", []):
        pattern["params_shown"] = ", ".join(f"{k}={_json(v)}" for k, v in pattern["params"].items())
        pattern["inputs_shown"] = ", ".join(f"{k}={_json(v)}" for k, v in pattern["inputs"].items())
        pattern["obligations_shown"] = [_json(o) for o in pattern["obligations"]]
    if "decision" in result:
        result["decision"]["obligations_shown"] = [_json(o) for o in result["decision"]["obligations"]]
    return result


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _line(source: str, number: int) -> str:
    lines = source.splitlines()
    return lines[number - 1] if 0 < number <= len(lines) else ""


def _raw(form: FormData, name: str) -> str:
    """A textarea as typed (Rego's indentation matters to the reader), not trimmed like `text`."""
    value = form.get(name, "")
    return value.replace("\r\n", "\n") if isinstance(value, str) else ""
