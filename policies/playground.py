"""A policy tried out: its decision for one input, explained rule by rule, and its Rego tests.

The policy playground (the connector console) takes Rego and JSON typed in a browser: input from
outside. regorus calls cannot be interrupted (`tessera.policy.bounds`), so a trial is size- and
nesting-checked, then runs whole in a child process with a memory limit, killed at a time limit.

```python
trial = await try_policy(source, {"purpose": "research", "uses": 0}, tests="")
trial["decision"]["allow"], trial["rules"], trial["values"], trial["tests"]
trial.get("error")       # {"in": "policy" | "tests" | "evaluation" | "limits", "message", "line", "column"}
```

The decision and the library patterns' own decisions come from `policies.explain`, as `tessera policy
explain` prints them. A hand-written module is also taken apart: each `deny` and `allow` rule is
evaluated alone (the others of its name blanked out, so line numbers hold), which shows which
constraint denies and which grants; `values` are the package's other rules (its constants).
"""

import asyncio
import json
import re
import resource
import sys
import time
import weakref

from policies.explain import explain, value_at
from policies.loader import Loaded
from policies.testing import run_tests
from tessera.errors import PolicyCompileError, PolicyError
from tessera.json import JSON, JSONObject
from tessera.policy.base import PolicyModule
from tessera.policy.bounds import CHILD_MEMORY, ask_child, check_bounds
from tessera.policy.embedded import CONVENTION, EmbeddedRegoEngine, load_engine, regorus_error

__all__ = ["MAX_INPUT_BYTES", "MAX_SOURCE_BYTES", "TIME_LIMIT", "try_policy"]

MAX_SOURCE_BYTES = 64 * 1024  # each of the policy and its tests: a playground, not a library
MAX_INPUT_BYTES = 64 * 1024
TIME_LIMIT = 5.0  # seconds for the whole trial, the child's start included
CONCURRENT_TRIALS = 2  # per process: more browsers wait their turn rather than fork a child each
POLICY_FILE, TESTS_FILE = "policy.rego", "policy_test.rego"
EXPLAINED = ("deny", "allow")  # the rules taken apart one by one
PLACEHOLDER = 'deny contains "" if false'  # what `policies.patterns.render` writes to define an empty deny
_INPUT_REF = re.compile(r"\binput((?:\.[A-Za-z_][A-Za-z0-9_]*)+)|object\.get\(\s*input\s*,\s*\"([^\"]+)\"")


async def try_policy(source: str, input: JSONObject, tests: str = "", *, time_limit: float = TIME_LIMIT) -> JSONObject:
    """The trial's result as JSON (see the module docstring); problems are in its `error`, never raised."""
    for name, text in (("policy", source), ("tests", tests)):
        if problem := _out_of_bounds(name, text):
            return {"error": problem}
    request = json.dumps({"source": source, "input": input, "tests": tests}).encode()
    async with _slots():
        return await _run_child(request, time_limit)


def _slots() -> asyncio.Semaphore:
    """This event loop's trial slots (a semaphore belongs to one loop; tests and servers may run several)."""
    loop = asyncio.get_running_loop()
    if loop not in _SLOTS:
        _SLOTS[loop] = asyncio.Semaphore(CONCURRENT_TRIALS)
    return _SLOTS[loop]


_SLOTS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]" = weakref.WeakKeyDictionary()


async def _run_child(request: bytes, time_limit: float) -> JSONObject:
    try:
        answer, returncode = await ask_child("policies.playground", request, time_limit)
    except TimeoutError:
        return {"error": {"in": "limits", "message": f"the trial took longer than {time_limit:g} s"}}
    if not isinstance(answer, dict):  # no answer: the child died, most likely at its memory limit
        ended = f"{CHILD_MEMORY >> 20} MiB of memory, or ended with {returncode}"
        return {"error": {"in": "limits", "message": f"the trial could not run within {ended}"}}
    return answer


def _out_of_bounds(name: str, text: str) -> JSONObject | None:
    if len(text.encode("utf-8", "surrogatepass")) > MAX_SOURCE_BYTES:
        return {"in": name, "message": f"the {name} is larger than {MAX_SOURCE_BYTES} bytes"}
    try:
        check_bounds(text)
    except PolicyCompileError as exc:
        return _error(name, exc)
    return None


def _error(where: str, exc: PolicyError) -> JSONObject:
    line, column = (exc.line, exc.column) if isinstance(exc, PolicyCompileError) else (None, None)
    return {"in": where, "message": exc.detail, "line": line, "column": column}


# -- in the child ---------------------------------------------------------------------------------------


def trial(source: str, input: JSONObject, tests: str) -> JSONObject:
    """The whole trial, here and now (the child's work; call `try_policy` with input from outside)."""
    engine = EmbeddedRegoEngine()
    try:
        package = asyncio.run(engine.compile_here(source))
    except PolicyCompileError as exc:
        return {"error": _error("policy", exc)}
    module = PolicyModule(POLICY_FILE, source)
    try:
        explanation = asyncio.run(explain(engine, module, input))
        rules, values = _rules(source, package, input), _values(source, package, input)
    except PolicyError as exc:
        return {"error": _error("evaluation", exc)}
    result: JSONObject = {
        "package": package,
        "decision": explanation.to_dict(),
        "rules": rules,
        "values": values,
        "inputs": _inputs_read(source, input),
    }
    if tests.strip():
        result |= _tests(module, tests)
    return result


def _rules(source: str, package: str, input: JSONObject) -> list[JSONObject]:
    """Each `deny` and `allow` rule (defaults left out) evaluated alone: what it adds for this input."""
    code = source.encode("utf-8", "surrogatepass")
    spans = [s for s in _spans(source) if s[0] in EXPLAINED and code[s[2] : s[3]] != PLACEHOLDER.encode()]
    found = []
    for name, line, start, end in spans:
        alone = bytearray(code)
        for other, _, other_start, other_end in spans:
            if other == name and other_start != start:  # blanked, newlines kept: line numbers hold
                alone[other_start:other_end] = re.sub(rb"[^\n]", b" ", code[other_start:other_end])
        value = _query(alone.decode("utf-8", "surrogatepass"), f"{package}.{name}", input)
        text = code[start:end].decode("utf-8", "surrogatepass")
        if name == "deny":
            messages = value if isinstance(value, list) else []
            found.append({"name": name, "line": line, "text": text, "holds": not messages, "messages": messages})
        else:
            found.append({"name": name, "line": line, "text": text, "holds": value is True, "messages": []})
    return found


def _spans(source: str) -> list[tuple[str, int, int, int]]:
    """(rule name, line, start byte, end byte) of every rule that is not a default."""
    engine = load_engine([PolicyModule(POLICY_FILE, source)])
    ast = json.loads(engine.get_ast_as_json())[0]["ast"]
    del engine  # on this thread (see tessera.policy.embedded)
    spans = []
    for rule in ast["rules"]:
        head = rule.get("Spec", {}).get("head", {})
        kind = next((head[k] for k in ("Compr", "Set") if k in head), None)
        if kind is None or "Var" not in kind["refr"]:
            continue
        span = rule["Spec"]["span"]
        spans.append((kind["refr"]["Var"]["value"], span["line"], span["start"], span["end"]))
    return spans


def _values(source: str, package: str, input: JSONObject) -> JSONObject:
    """The package's rules other than the decision's, for this input: its constants, mostly."""
    document = _query(source, package, input)
    if not isinstance(document, dict):
        return {}
    return {name: value for name, value in document.items() if name not in CONVENTION}


def _query(source: str, query: str, input: JSONObject) -> JSON:
    engine = load_engine([PolicyModule(POLICY_FILE, source)])
    problem: PolicyError | None = None
    try:
        engine.set_input_json(json.dumps(input))
        rows = json.loads(engine.eval_query_as_json(query)).get("result") or []
    except Exception as exc:  # regorus raises RuntimeError; the evaluation's problem is the trial's
        problem, rows = PolicyError(str(regorus_error(exc))), []
    del engine  # before raising (see tessera.policy.embedded)
    if problem is not None:
        raise problem
    return rows[0]["expressions"][0]["value"] if rows else None


def _inputs_read(source: str, input: JSONObject) -> JSONObject:
    """The input fields the module names (`input.a.b`, `object.get(input, "a", …)`), with their values."""
    paths = dict.fromkeys((m[1] or "." + m[2])[1:] for m in _INPUT_REF.finditer(source))
    return {path: value_at(input, path) for path in paths}


def _tests(module: PolicyModule, tests: str) -> JSONObject:
    try:
        report = run_tests(Loaded(modules=[module, PolicyModule(TESTS_FILE, tests)]))
    except PolicyError as exc:
        return {"tests_error": _error("tests", exc)}
    results = [
        {"name": r.name, "outcome": r.outcome.value, "message": r.message, "duration": r.duration}
        for r in report.results
    ]
    counts = {outcome.value: count for outcome, count in report.counts.items()}
    return {"tests": results, "counts": counts}


def main() -> None:
    limit = _address_space() + CHILD_MEMORY  # on top of what the loaded libraries reserve (about 1 GiB)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    request = json.loads(sys.stdin.buffer.read())
    started = time.perf_counter()
    result = trial(request["source"], request["input"], request["tests"])
    result["seconds"] = round(time.perf_counter() - started, 3)
    print(json.dumps(result))


def _address_space() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[0]) * resource.getpagesize()
    except OSError:  # not Linux: the limit alone
        return 0


if __name__ == "__main__":
    main()
