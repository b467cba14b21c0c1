"""Prometheus metrics the services share: a latency histogram by route template, and the `/metrics` answer.

Each app makes its own `CollectorRegistry` (tests run many apps in one process; the global default
registry would mix their counts). Labels take bounded values only: a route's path template
(`/dsp/negotiations/{pid}`), never the raw path, and a status class (`2xx`).
"""

import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from re import Pattern

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route, compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tessera import logs
from tessera.errors import TokenRejected
from tessera.identity import bearer_token

UNMATCHED = "(unmatched)"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)

# The process a request works on, from its route template and path parameters (None: none).
ProcessOf = Callable[[str, dict[str, str]], str | None]


def request_histogram(registry: CollectorRegistry, namespace: str) -> Histogram:
    return Histogram(
        f"{namespace}_http_request_duration_seconds",
        "HTTP requests served, by method, route template and status class, until the response ended.",
        ("method", "route", "status"),
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )


class RouteTemplates:
    """The template a request path matches, with its parameters: `/api/transfers/{id}` for `/api/transfers/t1`."""

    def __init__(self, routes: Iterable[BaseRoute]) -> None:
        compiled = (compile_path(path) for path in dict.fromkeys(_paths(routes, "")))
        self._patterns: list[tuple[Pattern[str], str]] = [(regex, template) for regex, template, _ in compiled]

    def match(self, path: str) -> tuple[str, dict[str, str]]:
        for regex, template in self._patterns:
            if found := regex.match(path):
                return template, found.groupdict()
        return UNMATCHED, {}


def _paths(routes: Iterable[BaseRoute], prefix: str) -> Iterator[str]:
    for route in routes:
        if isinstance(route, Mount):
            yield from _paths(route.routes, prefix + route.path)
        elif isinstance(route, Route):
            yield prefix + route.path


class RequestMetrics:
    """ASGI middleware: time every HTTP request into `histogram`; run it inside `logs.handling` of the
    process its route names (`process_of`), so every line logged for it carries that `process_id`."""

    def __init__(
        self, app: ASGIApp, *, histogram: Histogram, templates: RouteTemplates, process_of: ProcessOf | None = None
    ) -> None:
        self.app = app
        self.histogram = histogram
        self.templates = templates
        self.process_of = process_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        template, params = self.templates.match(scope["path"])
        method = scope["method"] if scope["method"] in METHODS else "other"
        status = 500  # an exception before the response started ends as a 500

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        pid = self.process_of(template, params) if self.process_of is not None else None
        try:
            with logs.handling(pid):
                await self.app(scope, receive, observed)
        finally:
            elapsed = time.perf_counter() - started
            self.histogram.labels(method, template, f"{status // 100}xx").observe(elapsed)


def require_token(request: Request, accepted: Iterable[str]) -> None:
    """Refuse (401) a request whose bearer token is none of `accepted` (empty ones never match)."""
    given = bearer_token(request.headers.get("authorization")).encode()
    if not any(token and secrets.compare_digest(given, token.encode()) for token in accepted):
        raise TokenRejected("wrong metrics token")


def exposition(registry: CollectorRegistry) -> Response:
    """The registry in Prometheus' text format."""
    return Response(generate_latest(registry), headers={"content-type": CONTENT_TYPE_LATEST})
