"""The event log: every registration change, crawl result and operator action, the newest first."""

import json

from sqlmodel import col, select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from broker.console._state import registry_of
from broker.events import Event
from tessera.web.console import Console, Refused

NAV = [("/events", "Event log")]
PAGE_SIZE = 50


def routes(console: Console) -> list[Route]:
    async def log(request: Request) -> Response:
        before = _before(request)
        participant = request.query_params.get("participant", "").strip()
        statement = select(Event).order_by(col(Event.seq).desc()).limit(PAGE_SIZE)
        if before is not None:
            statement = statement.where(col(Event.seq) < before)
        if participant:
            statement = statement.where(col(Event.participant_id) == participant)
        async with registry_of(request).db.session() as session:
            found = list(await session.exec(statement))
        older = found[-1].seq if len(found) == PAGE_SIZE else None
        rows = [(event, json.dumps(event.detail, ensure_ascii=False) if event.detail else "") for event in found]
        return console.render(request, "events.html", rows=rows, older=older, participant=participant)

    return [console.page("/events", log)]


def _before(request: Request) -> int | None:
    written = request.query_params.get("before", "")
    if not written:
        return None
    if not written.isdigit():
        raise Refused("`before` must be an event's sequence number")
    return int(written)
