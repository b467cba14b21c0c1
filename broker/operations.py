"""Operations: `/health` for load balancers, `/ready` (the database answers) for readiness probes, and
`/status`, the crawl result of every registered connector.

`/status` answers JSON, or an HTML table to a browser (`Accept: text/html`), listing per connector its
liveness, last crawl (status, error, consecutive failures), next crawl and number of offerings.
"""

import html
import logging
from typing import Literal

from sqlalchemy import func, text
from sqlmodel import col, select
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from broker.entries import CrawlStatus, Liveness, Offering, Registration
from broker.registry import Registry

logger = logging.getLogger("tessera.broker")


class ConnectorStatus(Liveness, CrawlStatus):
    participant_id: str
    endpoint: str
    offerings: int


async def health(request: Request) -> Response:
    registry: Registry = request.state.registry
    crawler_task = request.state.crawler_task
    try:
        async with registry.db.session() as session:
            await (await session.connection()).execute(text("SELECT 1"))
            entries = (await session.exec(select(func.count()).select_from(Registration))).one()
            offerings = (await session.exec(select(func.count()).select_from(Offering))).one()
    except Exception as exc:  # any database failure makes the broker unhealthy, never a 500 page
        return JSONResponse({"status": "error", "database": str(exc)[:200]}, status_code=503)
    crawler = "disabled" if crawler_task is None else "stopped" if crawler_task.done() else "running"
    healthy = crawler != "stopped"
    body = {"status": "ok" if healthy else "degraded", "crawler": crawler, "entries": entries, "offerings": offerings}
    return JSONResponse(body, status_code=200 if healthy else 503)


async def ready(request: Request) -> Response:
    """Whether to send this replica traffic: only while its database answers (the crawler does not matter)."""
    registry: Registry = request.state.registry
    try:
        async with registry.db.session() as session:
            await (await session.connection()).execute(text("SELECT 1"))
    except Exception:  # any database failure means "not ready", never a 500 page
        # The reason goes to the log only: this endpoint is public, a driver's message names hosts and users.
        logger.warning("not ready: the database does not answer", exc_info=True)
        return JSONResponse({"status": "unavailable"}, status_code=503)
    return JSONResponse({"status": "ok"})


async def status(request: Request) -> Response:
    registry: Registry = request.state.registry
    async with registry.db.session() as session:
        records = list(await session.exec(select(Registration).order_by(col(Registration.participant_id))))
    rows: list[ConnectorStatus] = [
        {
            "participant_id": r.participant_id,
            "endpoint": r.endpoint,
            "offerings": r.offerings,
            **r.liveness(),
            **r.crawl(),
        }
        for r in records
    ]
    if "text/html" in request.headers.get("accept", ""):
        return HTMLResponse(_page(rows))
    return JSONResponse({"connectors": rows})


Column = Literal["participant_id", "state", "last_seen_at", "crawled_at", "status", "failures", "error", "offerings"]
COLUMNS: tuple[Column, ...] = (
    "participant_id",
    "state",
    "last_seen_at",
    "crawled_at",
    "status",
    "failures",
    "error",
    "offerings",
)


def _page(rows: list[ConnectorStatus]) -> str:
    head = "".join(f"<th>{name}</th>" for name in COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(row[name] or ''))}</td>" for name in COLUMNS) + "</tr>" for row in rows
    )
    return (
        "<!doctype html><meta charset=utf-8><title>Broker status</title>"
        "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:left}</style>"
        f"<h1>Crawl status</h1><table><tr>{head}</tr>{body}</table>"
    )
