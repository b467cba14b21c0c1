"""TEST FIXTURE, not product code: an OPA-REST-compatible server backed by real OPA (Go) in process.

No `opa` binary can be installed here, so `OpaServerEngine` is tested against this small Starlette
app instead. It serves the subset of OPA's REST API that opa-python-client and OpaServerEngine use:

* `GET /health`, `GET /v1/policies/` - liveness
* `PUT /v1/policies/{id}` (text/plain Rego), `DELETE /v1/policies/{id}` - OPA's policy API
* `POST /v1/data/{path}` with `{"input": ...}` -> `{"result": value}` (or `{}` when undefined)
* `POST /v1/query` with `{"query": ..., "input": ...}` -> `{"result": [bindings, ...]}`

Evaluation is done by OPA 1.x itself through `opa-golib-python-bindings` (import `opa_bindings`),
so decisions are OPA's, not a re-implementation. Needs
`pip install --ignore-requires-python opa-golib-python-bindings==0.4.4` (it declares Python >= 3.14
but works on 3.11); tests using it skip when it is missing.
"""

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator

import uvicorn
from opa_bindings import OpaEngine, OpaError  # type: ignore[import-not-found]
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

_LOCATION = re.compile(r"(?P<file>[^\s:]+):(?P<row>\d+): (?P<code>rego_\w+): (?P<message>[^\n]+)")


def create_app() -> Starlette:
    policies: dict[str, str] = {}

    def engine(modules: dict[str, str]) -> OpaEngine:
        opa = OpaEngine()
        for policy_id, source in modules.items():
            opa.add_policy(policy_id, source)
        return opa

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({})

    async def list_policies(request: Request) -> JSONResponse:
        return JSONResponse({"result": [{"id": i, "raw": s} for i, s in policies.items()]})

    async def put_policy(request: Request) -> JSONResponse:
        policy_id = request.path_params["id"]
        source = (await request.body()).decode("utf-8")
        try:
            engine({**policies, policy_id: source}).close()
        except OpaError as exc:
            return JSONResponse(_compile_error(exc), status_code=400)
        policies[policy_id] = source
        return JSONResponse({})

    async def delete_policy(request: Request) -> JSONResponse:
        if policies.pop(request.path_params["id"], None) is None:
            return JSONResponse({"code": "resource_not_found", "message": "storage_not_found_error"}, 404)
        return JSONResponse({})

    async def post_data(request: Request) -> JSONResponse:
        body = await _json(request)
        path = ".".join(p for p in request.path_params["path"].split("/") if p)
        rows = _eval(engine(policies), f"x := data.{path}" if path else "x := data", body.get("input"))
        if isinstance(rows, JSONResponse):
            return rows
        return JSONResponse({"result": rows[0]["x"]} if rows else {})

    async def post_query(request: Request) -> JSONResponse:
        body = await _json(request)
        rows = _eval(engine(policies), body.get("query", ""), body.get("input"))
        return rows if isinstance(rows, JSONResponse) else JSONResponse({"result": rows})

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/v1/policies/", list_policies),
            Route("/v1/policies/{id:path}", put_policy, methods=["PUT"]),
            Route("/v1/policies/{id:path}", delete_policy, methods=["DELETE"]),
            Route("/v1/data/{path:path}", post_data, methods=["POST"]),
            Route("/v1/query", post_query, methods=["POST"]),
        ]
    )


async def _json(request: Request) -> dict:
    body = await request.body()
    return json.loads(body) if body else {}


def _eval(opa: OpaEngine, query: str, input: object) -> list[dict] | JSONResponse:
    try:
        return opa.eval_query(query, input)
    except OpaError as exc:
        return JSONResponse({"code": "internal_error", "message": f"{exc.code}: {exc.message}"}, status_code=500)
    finally:
        opa.close()


def _compile_error(exc: OpaError) -> dict:
    errors = [
        {
            "code": m["code"],
            "message": m["message"].strip(),
            "location": {"file": m["file"], "row": int(m["row"]), "col": 1},
        }
        for m in _LOCATION.finditer(exc.message)
    ]
    return {"code": "invalid_parameter", "message": "error(s) occurred while compiling module(s)", "errors": errors}


@contextlib.asynccontextmanager
async def run_opa_rest_server(port: int) -> AsyncIterator[str]:
    """Serve the fixture on 127.0.0.1:`port` inside the running event loop; yields its URL."""
    config = uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
