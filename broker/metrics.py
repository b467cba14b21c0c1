"""The broker's Prometheus metrics at `/metrics` (docs/metrics.md "Monitor").

Counted in this process: registrations (created, updated, deleted), searches, and every request's
latency by route template. Read from the database at scrape time: registered connectors by liveness
state and the offerings they list (cluster-wide when several replicas share the database).

`/metrics` is off until `metrics_token` is set in `broker.toml`: the broker has no management API key,
and who registered how much is not for everyone.
"""

from prometheus_client import CollectorRegistry, Counter, Gauge
from sqlalchemy import func
from sqlmodel import col, select
from starlette.requests import Request
from starlette.responses import Response

from broker.entries import Offering, Registration
from tessera.errors import NotFound
from tessera.metrics import exposition, request_histogram, require_token
from tessera.store import Database

NAMESPACE = "tessera_broker"


class BrokerMetrics:
    """One broker app's registry and the metrics its handlers update."""

    def __init__(self, *, token: str) -> None:
        self.token = token  # of `/metrics`; empty: off
        self.registry = CollectorRegistry()
        self.requests = request_histogram(self.registry, NAMESPACE)
        self.registrations = Counter(
            f"{NAMESPACE}_registrations",
            "Registration writes accepted, by action (created|updated|deleted).",
            ("action",),
            registry=self.registry,
        )
        self.searches = Counter(f"{NAMESPACE}_searches", "Searches answered.", registry=self.registry)
        self.connectors = Gauge(
            f"{NAMESPACE}_connectors",
            "Registered connectors in the database by liveness state (cluster-wide).",
            ("state",),
            registry=self.registry,
        )
        self.offerings = Gauge(
            f"{NAMESPACE}_offerings", "Offerings registered in the database (cluster-wide).", registry=self.registry
        )

    async def read_gauges(self, db: Database) -> None:
        state = col(Registration.state)
        async with db.session() as session:
            by_state = dict(list(await session.exec(select(state, func.count()).group_by(state))))
            offerings = (await session.exec(select(func.count()).select_from(Offering))).one()
        self.connectors.clear()
        for name, count in by_state.items():
            self.connectors.labels(name).set(count)
        self.offerings.set(offerings)


async def scrape(request: Request) -> Response:
    metrics: BrokerMetrics = request.state.metrics
    if not metrics.token:
        raise NotFound("/metrics is off: set metrics_token in broker.toml to scrape it")
    require_token(request, [metrics.token])
    await metrics.read_gauges(request.state.registry.db)
    return exposition(metrics.registry)
