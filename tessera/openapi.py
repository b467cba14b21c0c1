"""OpenAPI 3.1 documents made from an API's typed models, and the routes that serve them.

A service lists its operations next to its handlers and makes its routes from that list, so the list is
the one source of truth: an endpoint cannot be served without being described.

```python
operations = [
    Operation("GET", "/assets/{id:path}", get_asset, "One asset", tags=("assets",), responses={200: AssetOut}),
    Operation("POST", "/assets", create_asset, "Create an asset", body=AssetCreate, responses={201: AssetOut}),
]
routes = routes_of(operations)
spec = document(operations, title="Tessera connector", version="0.1.0", server="https://c.example/api")
```

Request bodies, query parameters (a model's fields) and responses are pydantic models; their JSON schemas
come from pydantic (`models_json_schema`) under `components/schemas`. Every operation also answers RFC 9457
problem details (`Problem`, `application/problem+json`) on `4XX`. `docs_page` renders a document as plain
HTML (no script, no CDN) and `spec_routes` serves `/openapi.json` and `/docs`.
"""

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jinja2
from markupsafe import Markup
from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from tessera.problems import PROBLEM_MEDIA_TYPE

REF_TEMPLATE = "#/components/schemas/{model}"
Endpoint = Callable[[Request], Any]
_CONVERTER = re.compile(r"{(\w+)(:\w+)?}")


class Problem(BaseModel):
    """RFC 9457 problem details, as `tessera.problems` renders every error."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    reasons: list[str] | None = None


@dataclass(frozen=True)
class Reply:
    """A response: a model's JSON (None: no body unless `media_type` names one, with no schema)."""

    model: type[BaseModel] | None = None
    media_type: str = "application/json"
    description: str = ""


@dataclass(frozen=True)
class Operation:
    """One method on one path template (Starlette's, `{id:path}` allowed), described for OpenAPI."""

    method: str
    path: str
    endpoint: Endpoint
    summary: str
    tags: tuple[str, ...] = ()
    body: type[BaseModel] | None = None
    body_media_type: str = "application/json"
    query: type[BaseModel] | None = None
    responses: Mapping[int, type[BaseModel] | Reply | None] = field(default_factory=dict)
    secured: bool = True

    @property
    def template(self) -> str:
        """The OpenAPI path template: `{id:path}` becomes `{id}`."""
        return _CONVERTER.sub(r"{\1}", self.path)

    def route(self) -> Route:
        return Route(self.path, self.endpoint, methods=[self.method])


def routes_of(operations: Iterable[Operation]) -> list[BaseRoute]:
    return [operation.route() for operation in operations]


def _reply(value: type[BaseModel] | Reply | None) -> Reply:
    if value is None or isinstance(value, Reply):
        return value or Reply(media_type="")
    return Reply(value)


def _schemas(operations: Sequence[Operation]) -> tuple[dict[tuple[Any, JsonSchemaMode], Any], dict[str, Any]]:
    wanted: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {(Problem, "serialization"): None}
    for op in operations:
        for model in (op.body, op.query):
            if model is not None:
                wanted[(model, "validation")] = None
        for reply in map(_reply, op.responses.values()):
            if reply.model is not None:
                wanted[(reply.model, "serialization")] = None
    refs, top = models_json_schema(list(wanted), ref_template=REF_TEMPLATE)
    return dict(refs), top.get("$defs", {})


def _parameters(op: Operation, components: dict[str, Any]) -> list[dict[str, Any]]:
    path = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for name, _ in _CONVERTER.findall(op.path)
    ]
    if op.query is None:
        return path
    schema = components[op.query.__name__]
    required = set(schema.get("required", ()))
    query = [
        {"name": name, "in": "query", "required": name in required, "schema": {**prop}}
        | ({"description": prop["description"]} if "description" in prop else {})
        for name, prop in schema["properties"].items()
    ]
    return path + query


def _operation(op: Operation, refs: Mapping[tuple[Any, JsonSchemaMode], Any], components: dict[str, Any]) -> Any:
    responses: dict[str, Any] = {}
    for status, value in op.responses.items():
        reply = _reply(value)
        answer: dict[str, Any] = {"description": reply.description or (reply.model.__doc__ or "").strip() or "OK"}
        if reply.model is not None:
            answer["content"] = {reply.media_type: {"schema": refs[(reply.model, "serialization")]}}
        elif reply.media_type:
            answer["content"] = {reply.media_type: {}}
        responses[str(status)] = answer
    problem = {"schema": refs[(Problem, "serialization")]}
    responses["4XX"] = {"description": "Problem details (RFC 9457)", "content": {PROBLEM_MEDIA_TYPE: problem}}
    described: dict[str, Any] = {
        "operationId": f"{op.method.lower()}_{op.endpoint.__name__}_{_slug(op.template)}",
        "summary": op.summary,
        "tags": list(op.tags),
        "parameters": _parameters(op, components),
        "responses": responses,
        "security": [{"bearer": []}] if op.secured else [],
    }
    if doc := (op.endpoint.__doc__ or "").strip():
        described["description"] = doc
    if op.body is not None:
        content = {op.body_media_type: {"schema": refs[(op.body, "validation")]}}
        described["requestBody"] = {"required": True, "content": content}
    return described


def _slug(template: str) -> str:
    return re.sub(r"\W+", "_", template).strip("_")


def document(operations: Sequence[Operation], *, title: str, version: str, server: str, description: str = "") -> Any:
    """The OpenAPI 3.1 document of `operations`, served from `server` (a base URL)."""
    refs, components = _schemas(operations)
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.template, {})[op.method.lower()] = _operation(op, refs, components)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "servers": [{"url": server}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def described_routes(routes: Iterable[BaseRoute], prefix: str = "") -> set[tuple[str, str]]:
    """(method, OpenAPI path) of every route in `routes`, mounts followed: what a document must describe."""
    found: set[tuple[str, str]] = set()
    for route in routes:
        if isinstance(route, Mount):
            found |= described_routes(route.routes, prefix + route.path)
        elif isinstance(route, Route):
            path = _CONVERTER.sub(r"{\1}", prefix + route.path)
            found |= {(method, path) for method in route.methods or () if method != "HEAD"}
    return found


def documented(spec: Mapping[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in spec["paths"].items() for method in item}


_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)


def _ref(content: Mapping[str, Any]) -> Any:
    schema = content.get("schema")
    if schema is None:
        return ""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return Markup('<a href="#schema-{0}">{0}</a>').format(name)
    return Markup("<code>{}</code>").format(json.dumps(schema))


_ENV.filters["ref"] = _ref
_ENV.filters["pretty"] = lambda schema: json.dumps(schema, indent=2, ensure_ascii=False)


_PAGE = _ENV.from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ info.title }} API</title>
<style>
body{font-family:sans-serif;max-width:70rem;margin:auto;padding:0 1rem}
pre{background:#f4f4f4;padding:.5rem;overflow:auto;font-size:.85rem}
.method{font-weight:bold;text-transform:uppercase;display:inline-block;min-width:4.5rem}
section{border-top:1px solid #ccc;padding:.5rem 0}td,th{text-align:left;padding:2px 8px;vertical-align:top}
</style></head><body>
<h1>{{ info.title }} <small>{{ info.version }}</small></h1>
<p>{{ info.description }}</p>
<p>Server: <code>{{ server }}</code>. The document: <a href="{{ spec_url }}">{{ spec_url }}</a> (OpenAPI 3.1).</p>
<h2>Operations</h2>
<ul>{% for op in operations %}
<li><a href="#{{ op.id }}"><span class="method">{{ op.method }}</span> {{ op.path }}</a> — {{ op.summary }}</li>
{% endfor %}</ul>
{% for op in operations %}
<section id="{{ op.id }}">
<h3><span class="method">{{ op.method }}</span> <code>{{ op.path }}</code></h3>
<p>{{ op.summary }}{% if op.tags %} <small>[{{ op.tags | join(", ") }}]</small>{% endif %}
{% if op.secured %}<br><small>Requires <code>Authorization: Bearer …</code></small>{% endif %}</p>
{% if op.description %}<p>{{ op.description }}</p>{% endif %}
{% if op.parameters %}<h4>Parameters</h4><table><tr><th>name</th><th>in</th><th>required</th><th>schema</th></tr>
{% for p in op.parameters %}<tr><td><code>{{ p.name }}</code></td><td>{{ p["in"] }}</td><td>{{ p.required }}</td>
<td><code>{{ p.schema | tojson }}</code></td></tr>{% endfor %}</table>{% endif %}
{% if op.body %}<h4>Request body</h4>{% for media, content in op.body.items() %}
<p><code>{{ media }}</code>: {{ content | ref }}</p>{% endfor %}{% endif %}
<h4>Responses</h4><table>{% for status, answer in op.responses.items() %}
<tr><td>{{ status }}</td><td>{{ answer.description }}</td>
<td>{% for media, content in answer.get("content", {}).items() %}
<code>{{ media }}</code> {{ content | ref }}<br>{% endfor %}</td></tr>{% endfor %}</table>
</section>
{% endfor %}
<h2>Schemas</h2>
{% for name, schema in schemas.items() %}
<section id="schema-{{ name }}"><h3>{{ name }}</h3><pre>{{ schema | pretty }}</pre></section>
{% endfor %}
</body></html>
"""
)


def docs_page(spec: Mapping[str, Any], spec_url: str) -> str:
    """Every operation of `spec` with its parameters, body and responses, and every schema, as HTML."""
    operations = [
        {
            "id": item["operationId"],
            "method": method,
            "path": path,
            "summary": item["summary"],
            "description": item.get("description", ""),
            "tags": item["tags"],
            "secured": bool(item["security"]),
            "parameters": item["parameters"],
            "body": item.get("requestBody", {}).get("content"),
            "responses": item["responses"],
        }
        for path, methods in spec["paths"].items()
        for method, item in methods.items()
    ]
    return _PAGE.render(
        info=spec["info"],
        server=spec["servers"][0]["url"],
        spec_url=spec_url,
        operations=operations,
        schemas=spec["components"]["schemas"],
    )


def spec_routes(
    spec: Mapping[str, Any], *, spec_paths: Sequence[str] = ("/openapi.json",), docs_path: str = "/docs"
) -> list[Route]:
    """`GET` each of `spec_paths` (the document) and `docs_path` (its HTML page), all public."""
    page = docs_page(spec, spec_paths[0])

    async def openapi_json(_request: Request) -> Response:
        return JSONResponse(spec)

    async def docs(_request: Request) -> Response:
        return HTMLResponse(page)

    served = [Route(path, openapi_json, methods=["GET"]) for path in spec_paths]
    return [*served, Route(docs_path, docs, methods=["GET"])]
