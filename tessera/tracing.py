"""OpenTelemetry tracing, an option (`tracing = "otlp"`; `pip install 'tessera[otel]'`).

When on, the ASGI app and the service's outbound `httpx` client make spans, exported by OTLP over HTTP
to `OTEL_EXPORTER_OTLP_ENDPOINT` (read by the OpenTelemetry SDK itself). When off, nothing of
OpenTelemetry is imported: every import is inside these functions.

```python
provider = tracing.provider("tessera-connector")   # or a test's, with an in-memory exporter
app = Starlette(routes=routes, middleware=[tracing.middleware(provider)])
tracing.trace_client(http, provider)
```
"""

from collections.abc import Mapping
from typing import Any

from starlette.middleware import Middleware

TRACING = ("off", "otlp")


class TracingUnavailable(RuntimeError):
    """`tracing = "otlp"` without the OpenTelemetry packages installed."""


def check_tracing(value: str) -> str:
    if value not in TRACING:
        raise ValueError(f"tracing must be one of {TRACING}, not {value!r}")
    return value


def chosen(configured: str, environ: Mapping[str, str]) -> str:
    """The tracing a service runs with: "otlp" when the environment names an OTLP endpoint, else its config's.

    The CLI calls this with `os.environ`, the one place the environment is read."""
    return "otlp" if environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") else check_tracing(configured)


def provider(service_name: str) -> Any:
    """A tracer provider that batches spans to the OTLP/HTTP endpoint the environment names."""
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise TracingUnavailable(f"tracing = otlp needs the otel extra (pip install 'tessera[otel]'): {exc}") from exc
    tracer_provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return tracer_provider


def middleware(tracer_provider: Any) -> Middleware:
    """A server span per request, continuing the caller's trace context (outermost in the stack)."""
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    return Middleware(OpenTelemetryMiddleware, tracer_provider=tracer_provider)


def trace_client(client: Any, tracer_provider: Any) -> None:
    """Make `client` (an httpx client) send a client span and the trace context with every request."""
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor.instrument_client(client, tracer_provider=tracer_provider)
