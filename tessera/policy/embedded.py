"""The embedded policy engine: regorus (a Rego v1 interpreter in Rust) inside this process.

Each module is compiled once into a `regorus.Engine`, cached by the module's hash; a decision then
sets the input and evaluates the convention's rules the module defines with `eval_rule`, `deny` first:
a module that denies needs nothing else, and a rule costs only itself, where a query pays ~10 µs to
be compiled on every call (measured in docs/policy-engine.md). Calls are synchronous and take tens of
microseconds, so they run on the event loop; there is no `await` between setting the input and
reading the rules, so interleaved coroutines cannot see each other's input.
"""

import json
import re
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import regorus

from tessera.errors import PolicyCompileError, PolicyEvaluationError
from tessera.json import JSON, JSONObject
from tessera.policy import bounds, builtins
from tessera.policy.base import (
    Decision,
    PolicyEngine,
    PolicyModule,
    QueryRow,
    combine,
    decision_from_document,
    packages_apart,
)

__all__ = ["EmbeddedRegoEngine", "ModuleRules", "load_engine", "module_rules", "regorus_error"]

# regorus reports `--> policy.rego:4:22`, then the source line, then `error: <message>`.
_LOCATION = re.compile(r"-->\s*(?P<file>.*?):(?P<line>\d+):(?P<column>\d+)")
_STATIC_ERRORS = re.compile(r"is unsafe|could not find function|recursion|undefined (rule|function)|var .* is not")
_MESSAGE = re.compile(r"^error:\s*(?P<message>.+)$", re.M)
JOINT_ENGINES = 512  # engines kept for module combinations (one per agreement and its bound module)


@dataclass(frozen=True)
class RegorusError:
    """A regorus error message taken apart: the message and where it points."""

    message: str
    file: str | None = None
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        if self.file is None:
            return self.message
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


def regorus_error(exc: Exception) -> RegorusError:
    # Drop the Rust backtrace that RUST_BACKTRACE=1 appends.
    text = str(exc).split("Stack backtrace:")[0].strip()
    location = _LOCATION.search(text)
    message = _MESSAGE.search(text)
    detail = message.group("message").strip() if message else text.splitlines()[0] if text else repr(exc)
    if location is None:
        return RegorusError(detail)
    return RegorusError(detail, location.group("file"), int(location.group("line")), int(location.group("column")))


def compile_error(exc: Exception) -> PolicyCompileError:
    error = regorus_error(exc)
    return PolicyCompileError(str(error), line=error.line, column=error.column)


def new_engine() -> regorus.Engine:
    engine = regorus.Engine()
    engine.set_rego_v0(False)
    builtins.register(engine)  # OPA builtins regorus lacks (crypto, io.jwt, regex.globs_match)
    return engine


def load_engine(modules: Iterable[PolicyModule], data: JSON = None) -> regorus.Engine:
    """A regorus engine holding `modules` (file name = module id) and `data`.

    Raises PolicyCompileError for a module that does not compile, PolicyEvaluationError for bad data.
    """
    engine = new_engine()
    problem = _load(engine, modules, data)
    if problem is not None:
        del engine  # see _drop_before_raising below
        raise problem
    return engine


def _load(engine: regorus.Engine, modules: Iterable[PolicyModule], data: JSON) -> Exception | None:
    for module in modules:
        try:
            engine.add_policy(module.id, module.source)
        except Exception as exc:  # regorus raises RuntimeError/ValueError; translate all of them
            return compile_error(exc)
    if data is not None:
        if not isinstance(data, dict):
            return PolicyEvaluationError("data must be a JSON object")
        try:
            engine.add_data_json(json.dumps(data))
        except Exception as exc:
            return PolicyEvaluationError(f"cannot load data: {regorus_error(exc)}")
    return None


# _drop_before_raising: a regorus Engine may only be dropped on the thread that made it. An exception
# whose traceback still holds an engine in some frame can end up in a reference cycle that the garbage
# collector frees on whatever thread it runs (a thread-pool worker), so code here lets go of an
# engine before it raises.


CONVENTION = ("deny", "allow", "mask", "obligations")  # the rules a decision reads (decision convention)
DECISION_PACKAGE = "tessera_decision"  # the generated module that reads them, beside the modules decided


@dataclass(frozen=True)
class _Prepared:
    """An engine holding the modules and the decision module; one `eval_rule` decides them all."""

    engine: regorus.Engine
    rule: str  # data.tessera_decision.documents: one convention document per module, in order
    as_json: bool  # regorus cannot hand a set of objects (obligations) to Python as a set

    def decide(self, input: JSONObject) -> list[Decision]:
        self.engine.set_input(input)
        return [decision_from_document(document) for document in self._documents()]

    def _documents(self) -> list[JSON]:
        if not self.as_json:
            try:
                return self.engine.eval_rule(self.rule)  # type: ignore[no-any-return]
            except TypeError:  # a set of objects where none was expected (a deny of objects)
                pass
        return json.loads(self.engine.eval_rule_as_json(self.rule))  # type: ignore[no-any-return]


def _decision_module(engine: regorus.Engine, packages: Sequence[str]) -> str:
    """Rego reading every module's convention rules into one array, evaluated as one rule.

    A rule, not a query: a query is compiled again on every call (~10 µs), and one evaluation shares
    the rules' values (allow reads deny once). A rule that can be undefined (a complete rule with no
    default) is read through a function with an `else`, since one undefined element would leave the
    whole array undefined; its value is then null, as it is absent from a package document.
    """
    rules = {found.package: found for found in module_rules(engine)}
    lines, documents = [f"package {DECISION_PACKAGE}", ""], []
    for i, package in enumerate(packages):
        found = rules.get(package, ModuleRules("", package, ()))
        fields = []
        for name in CONVENTION:
            if name not in found.names:
                continue
            if name in found.total:
                fields.append(f'"{name}": {package}.{name}')
                continue
            lines.append(f"m{i}_{name}(_) := x if {{ x := {package}.{name} }} else := null")
            fields.append(f'"{name}": m{i}_{name}(0)')
        documents.append("{" + ", ".join(fields) + "}")
    lines.append(f"documents := [{', '.join(documents)}]")
    return "\n".join(lines) + "\n"


def _with_decision(engine: regorus.Engine, packages: Sequence[str]) -> _Prepared | PolicyEvaluationError:
    """Add the decision module to an engine holding `packages`; a problem is returned, not raised, so
    that no traceback holds the engine (see _drop_before_raising)."""
    if apart := packages_apart([*packages, f"data.{DECISION_PACKAGE}"]):
        return PolicyEvaluationError(apart)
    source = _decision_module(engine, packages)
    try:
        engine.add_policy(f"{DECISION_PACKAGE}.rego", source)
    except Exception as exc:
        return PolicyEvaluationError(f"the decision module does not compile: {regorus_error(exc)}")
    return _Prepared(engine, f"data.{DECISION_PACKAGE}.documents", as_json='"obligations"' in source)


class EmbeddedRegoEngine(PolicyEngine):
    """Rego v1 on regorus, in process. Compiled modules are cached by hash."""

    def __init__(self) -> None:
        self._prepared: dict[str, _Prepared] = {}
        self._joint: OrderedDict[tuple[str, ...], _Prepared] = OrderedDict()

    async def compile(self, source: str) -> str:
        """Checked within bounds, in a child process (`tessera.policy.bounds`): the module is from outside."""
        return await bounds.compile_checked(source)

    async def compile_here(self, source: str) -> str:
        """Compiled in this process, with no bounds: for modules this process wrote or already checked."""
        return _compile(source)[1]

    async def decide(self, module: PolicyModule, input: JSONObject) -> Decision:
        prepared = self._prepared.get(module.hash) or self._prepare(module)
        try:
            (decision,) = prepared.decide(input)
        except PolicyEvaluationError:
            raise  # the decision convention broken (a mask that is not field names)
        except Exception as exc:
            problem = PolicyEvaluationError(f"policy {module.id}: {regorus_error(exc)}")
            del prepared  # see _drop_before_raising
            raise problem from None
        return decision

    async def decide_all(self, modules: Sequence[PolicyModule], input: JSONObject) -> Decision:
        """All modules in one engine with one input; every module's rules are read, for all the reasons."""
        if len(modules) < 2:
            return await self.decide(modules[0], input) if modules else combine([])
        prepared = self._joint_engine(modules)
        try:
            decisions = prepared.decide(input)
        except PolicyEvaluationError:
            raise  # the decision convention broken (a mask that is not field names)
        except Exception as exc:
            names = ", ".join(m.id for m in modules)
            problem = PolicyEvaluationError(f"policies {names}: {regorus_error(exc)}")
            del prepared  # see _drop_before_raising
            raise problem from None
        return combine(decisions)

    async def evaluate(
        self, modules: list[PolicyModule], query: str, input: JSON = None, data: JSON = None
    ) -> list[QueryRow]:
        engine = load_engine(modules, data)
        problem: PolicyEvaluationError | None = None
        try:
            if input is not None:
                engine.set_input_json(json.dumps(input))
            rows = json.loads(engine.eval_query_as_json(query)).get("result") or []
        except (TypeError, ValueError) as exc:
            problem = PolicyEvaluationError(f"input is not JSON: {exc}")
        except Exception as exc:
            problem = PolicyEvaluationError(str(regorus_error(exc)))
        del engine  # see _drop_before_raising
        if problem is not None:
            raise problem
        # regorus leaves out empty bindings; the interface always has them (the CLI drops them like OPA).
        return [{"expressions": row["expressions"], "bindings": row.get("bindings", {})} for row in rows]

    async def aclose(self) -> None:
        self._prepared.clear()  # drop the engines here, on the thread that made them
        self._joint.clear()

    def _joint_engine(self, modules: Sequence[PolicyModule]) -> _Prepared:
        key = tuple(m.hash for m in modules)
        if (prepared := self._joint.get(key)) is not None:
            self._joint.move_to_end(key)
            return prepared
        engine = new_engine()
        packages: list[str] = []
        for module in modules:
            try:
                packages.append(engine.add_policy(module.id, module.source))
            except Exception as exc:
                found: _Prepared | PolicyEvaluationError = PolicyEvaluationError(
                    f"policy {module.id} does not compile: {compile_error(exc).detail}"
                )
                break
        else:
            found = _with_decision(engine, packages)
        if isinstance(found, PolicyEvaluationError):
            del engine  # see _drop_before_raising
            raise found
        self._joint[key] = prepared = found
        if len(self._joint) > JOINT_ENGINES:
            self._joint.popitem(last=False)  # the least recently used, dropped on this (the loop's) thread
        return prepared

    def _prepare(self, module: PolicyModule) -> _Prepared:
        try:
            engine, package = _compile(module.source, module.id)
        except PolicyCompileError as exc:
            raise PolicyEvaluationError(f"policy {module.id} does not compile: {exc.detail}") from exc
        prepared = _with_decision(engine, [package])
        if isinstance(prepared, PolicyEvaluationError):
            del engine  # see _drop_before_raising
            raise prepared
        self._prepared[module.hash] = prepared
        return prepared


def _compile(source: str, name: str = "policy.rego") -> tuple[regorus.Engine, str]:
    engine = new_engine()
    try:
        package = engine.add_policy(name, source)
        problem = _static_problem(engine, package)
    except Exception as exc:
        package, problem = "", compile_error(exc)
    if problem is not None:
        del engine  # see _drop_before_raising
        raise problem
    return engine, package


def _static_problem(engine: regorus.Engine, package: str) -> PolicyCompileError | None:
    # regorus' add_policy only parses: unsafe variables and unknown functions surface when a rule is
    # first evaluated. Evaluate the package once without input to find them at upload; any other
    # error (a builtin failing on a value) is a property of some input, not of the module.
    try:
        engine.eval_query(package)
    except Exception as exc:
        if _STATIC_ERRORS.search(str(exc).split("Stack backtrace:")[0]):
            return compile_error(exc)
    return None


@dataclass(frozen=True)
class ModuleRules:
    """The rules one module defines: its file (module id), package path and rule names in order;
    `total` are those with a value for every input (a default, or a partial set)."""

    file: str
    package: str
    names: tuple[str, ...]
    total: frozenset[str] = frozenset()


def module_rules(engine: regorus.Engine) -> list[ModuleRules]:
    """The rules of every module in `engine`; functions are left out (they take arguments)."""
    found = []
    for policy in json.loads(engine.get_ast_as_json()):
        ast = policy["ast"]
        package = "data." + ".".join(_ref_parts(ast["package"]["refr"]))
        names = [name for rule in ast["rules"] if (name := _rule_name(rule))]
        total = {name for rule in ast["rules"] if (name := _rule_name(rule)) and _is_total(rule)}
        found.append(ModuleRules(policy["source"]["file"], package, tuple(dict.fromkeys(names)), frozenset(total)))
    return found


def _is_total(rule: JSONObject) -> bool:
    head = rule.get("Spec", {}).get("head", {})
    return "Default" in rule or ("Set" in head and "Var" in head["Set"]["refr"])


def _rule_name(rule: JSONObject) -> str | None:
    if "Default" in rule:
        default = rule["Default"]
        return None if default.get("args") else _ref_parts(default["refr"])[0]
    head = rule.get("Spec", {}).get("head", {})
    for kind in ("Compr", "Set"):
        if kind in head:
            return _ref_parts(head[kind]["refr"])[0]
    return None


def _ref_parts(ref: JSONObject) -> list[str]:
    if "Var" in ref:
        return [ref["Var"]["value"]]
    if "RefDot" in ref:
        return [*_ref_parts(ref["RefDot"]["refr"]), ref["RefDot"]["field"][1]]
    if "RefBrack" in ref:
        index = ref["RefBrack"]["index"]
        key = index["String"]["value"] if "String" in index else "[...]"
        return [*_ref_parts(ref["RefBrack"]["refr"]), key]
    return ["?"]
