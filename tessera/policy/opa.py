"""The external policy engine: an OPA server, reached through opa-python-client's async client.

Modules are pushed with OPA's policy API (`PUT /v1/policies/{id}`) the first time they are used, and
re-pushed when their hash changes; a decision reads the package document through the data API
(`POST /v1/data/<package>` with the input) and applies the same decision convention as the embedded
engine. Raw queries go to the query API (`POST /v1/query`), which answers with bindings only: the
rows returned by `evaluate` carry OPA's bindings and no expression values.
"""

import contextlib
import re
import uuid
from collections.abc import Sequence
from urllib.parse import urlsplit

import aiohttp
from opa_client.errors import DeletePolicyError, RegoParseError
from opa_client.opa_async import AsyncOpaClient

from tessera.errors import PolicyCompileError, PolicyEvaluationError
from tessera.json import JSON, JSONObject
from tessera.policy import base
from tessera.policy.base import Decision, PolicyEngine, PolicyModule, QueryRow, decision_from_document

__all__ = ["OpaServerEngine"]

_PACKAGE = re.compile(r"^\s*package\s+([\w.]+)", re.M)
_CLIENT_ERRORS = (aiohttp.ClientError, TimeoutError, RegoParseError, ValueError, KeyError)


class OpaServerEngine(PolicyEngine):
    """Policies evaluated by an OPA server at `url`, e.g. `http://localhost:8181`."""

    def __init__(self, url: str, *, timeout: float = 1.5) -> None:
        parts = urlsplit(url)
        self._client = AsyncOpaClient(
            host=parts.hostname or "localhost",
            port=parts.port or (443 if parts.scheme == "https" else 8181),
            ssl=parts.scheme == "https",
            timeout=timeout,
        )
        self._pushed: dict[str, str] = {}  # module id -> hash on the server

    async def compile(self, source: str) -> str:
        scratch = f"tessera-compile-{uuid.uuid4().hex}"
        await self._put(scratch, source)
        # The check already succeeded; a scratch module left behind is harmless.
        with contextlib.suppress(*_CLIENT_ERRORS, DeletePolicyError):
            await (await self._connected()).delete_policy(scratch)
        return "data." + _package(source)

    async def decide(self, module: PolicyModule, input: JSONObject) -> Decision:
        try:
            await self._ensure(module)
            client = await self._connected()
            response = await client.query_rule(input, _package(module.source))
        except PolicyCompileError as exc:
            raise PolicyEvaluationError(f"policy {module.id} does not compile: {exc.detail}") from exc
        except _CLIENT_ERRORS as exc:
            raise PolicyEvaluationError(f"OPA could not decide: {exc}") from exc
        return decision_from_document(response.get("result"))

    async def decide_all(self, modules: Sequence[PolicyModule], input: JSONObject) -> Decision:
        """One query API call reads every module's package document: `x := [data.a, data.b]`."""
        if len(modules) < 2:
            return await self.decide(modules[0], input) if modules else base.combine([])
        try:
            packages = [_package(module.source) for module in modules]
            if apart := base.packages_apart(packages):
                raise PolicyEvaluationError(apart)
            for module in modules:
                await self._ensure(module)
            client = await self._connected()
            query = f"x := [{', '.join('data.' + p for p in packages)}]"
            # The client leaves an empty input out of the request (input undefined); {} must stay {}.
            response = await client.ad_hoc_query(query if input else query + " with input as {}", input)
        except PolicyCompileError as exc:
            raise PolicyEvaluationError(f"a policy does not compile: {exc.detail}") from exc
        except _CLIENT_ERRORS as exc:
            raise PolicyEvaluationError(f"OPA could not decide: {exc}") from exc
        rows = response.get("result") or [{}]
        documents = rows[0].get("x") or [None] * len(modules)
        return base.combine([decision_from_document(document) for document in documents])

    async def evaluate(
        self, modules: list[PolicyModule], query: str, input: JSON = None, data: JSON = None
    ) -> list[QueryRow]:
        if data is not None:
            raise PolicyEvaluationError("the OPA engine evaluates against the server's own data")
        for module in modules:
            await self._put(module.id, module.source)
        try:
            client = await self._connected()
            response = await client.ad_hoc_query(query, input)
        except _CLIENT_ERRORS as exc:
            raise PolicyEvaluationError(f"OPA could not evaluate: {exc}") from exc
        return [{"expressions": [], "bindings": row} for row in response.get("result", [])]

    async def aclose(self) -> None:
        await self._client.close_connection()

    async def _connected(self) -> AsyncOpaClient:
        # opa-python-client opens its aiohttp session in `__aenter__`; we hold the client for the
        # engine's lifetime instead, so open it on first use (inside the running loop).
        if self._client._session is None:
            await self._client._init_session()
        return self._client

    async def _ensure(self, module: PolicyModule) -> None:
        """Push `module` unless the server already has this version of it."""
        if self._pushed.get(module.id) != module.hash:
            await self._put(module.id, module.source)
            self._pushed[module.id] = module.hash

    async def _put(self, policy_id: str, source: str) -> None:
        try:
            client = await self._connected()
            await client.update_policy_from_string(source, policy_id, rego_compat=False)
        except RegoParseError as exc:
            raise _compile_error(exc) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PolicyEvaluationError(f"OPA is unreachable: {exc}") from exc


def _package(source: str) -> str:
    match = _PACKAGE.search(source)
    if match is None:
        raise PolicyCompileError("module has no package", line=1, column=1)
    return match.group(1)


def _compile_error(exc: RegoParseError) -> PolicyCompileError:
    first = exc.errors[0] if exc.errors else {}
    location = first.get("location") or {}
    return PolicyCompileError(
        first.get("message") or str(exc.message), line=location.get("row"), column=location.get("col")
    )
