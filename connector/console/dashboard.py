"""Dashboard: who this connector is, whether it is healthy, what it holds and what happened lately."""

from collections import Counter
from typing import Any

from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connector.config import DSP_PATH
from connector.console.api import Api
from connector.runtime import runtime_of
from tessera.web.console import Console

RECENT = 12
NAV = [("/", "Dashboard")]


def routes(console: Console) -> list[Route]:
    async def dashboard(request: Request) -> Response:
        api = Api(request)
        runtime = runtime_of(request)
        counts = {name: len((await api.get(f"/{name}"))["items"]) for name in ("assets", "offers", "agreements")}
        negotiations = Counter(n["state"] for n in (await api.get("/negotiations"))["items"])
        transfers = Counter(t["state"] for t in (await api.get("/transfers"))["items"])
        recent = (await api.get("/audit", limit=str(RECENT)))["items"]  # newest first
        identity = {
            "participant_id": runtime.participant_id,
            "dsp_url": runtime.config.url.rstrip("/") + DSP_PATH,
            "broker_url": runtime.config.broker_url,
            "policy_engine": runtime.config.policy_engine,
            "crypto_profile": runtime.config.crypto_profile,
        }
        return console.render(
            request,
            "dashboard.html",
            identity=identity,
            database_ok=await _database_answers(request),
            counts=counts,
            negotiations=dict(negotiations),
            transfers=dict(transfers),
            recent=[_activity(entry) for entry in recent],
        )

    return [console.page("/", dashboard)]


async def _database_answers(request: Request) -> bool:
    try:
        async with runtime_of(request).db.session() as session:
            await (await session.connection()).execute(text("SELECT 1"))
    except Exception:  # any failure shows as "not answering"; the dashboard itself still renders
        return False
    return True


def _activity(entry: dict[str, Any]) -> dict[str, Any]:
    return {"at": entry.get("at"), "action": entry.get("action"), "subject": entry.get("subject")}
