"""`GET /metrics`, the gauges it reads from the database, and which process a request works on (for logs).

`/metrics` takes the connector's `metrics_token` or, when none is set, its management token: the
numbers tell how much business a participant does with whom it does it, so they are not public
(docs/metrics.md "Monitor").
"""

from sqlalchemy import func
from sqlmodel import col, select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connector.metrics import ConnectorMetrics
from connector.negotiations import Negotiation
from connector.outbox import OutboxMessage
from connector.runtime import runtime_of
from connector.transfers import Transfer
from tessera.metrics import exposition, require_token
from tessera.store import Database

OUTBOX_STATUSES = ("pending", "delivered", "failed")
# Management routes whose `{id}` is a negotiation or transfer; DSP and data-plane routes say `{pid}`.
_PROCESS_ROUTES = ("/api/negotiations/", "/api/transfers/", "/api/timeline/")


def process_of(template: str, params: dict[str, str]) -> str | None:
    """The negotiation or transfer a request works on, by its route (`tessera.metrics.RequestMetrics`)."""
    if "pid" in params:
        return params["pid"]
    return params.get("id") if template.startswith(_PROCESS_ROUTES) else None


async def read_gauges(db: Database, metrics: ConnectorMetrics) -> None:
    """Fill the gauges with one grouped query per table; the labels are states and roles, a bounded set."""
    async with db.session() as session:
        by_kind = {}
        for kind, model in (("negotiation", Negotiation), ("transfer", Transfer)):
            role, state = col(model.role), col(model.state)
            by_kind[kind] = list(await session.exec(select(role, state, func.count()).group_by(role, state)))
        status = col(OutboxMessage.status)
        outbox = dict(list(await session.exec(select(status, func.count()).group_by(status))))
    metrics.processes.clear()
    for kind, rows in by_kind.items():
        for role_value, state_value, count in rows:
            metrics.processes.labels(kind, role_value, state_value).set(count)
    for name in (*OUTBOX_STATUSES, *outbox):
        metrics.outbox.labels(name).set(outbox.get(name, 0))


async def scrape(request: Request) -> Response:
    runtime = runtime_of(request)
    config = runtime.config
    require_token(request, [config.metrics_token or config.management_token])
    await read_gauges(runtime.db, runtime.metrics)
    return exposition(runtime.metrics.registry)


routes = [Route("/metrics", scrape, methods=["GET"])]
