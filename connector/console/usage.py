"""Usage and metering: per agreement the uses so far against its limit, the bytes, the privacy budget spent,
and the cross-border filings; as tables and as server-rendered SVG bar charts (no script draws them).

A provider counts uses and bytes served (`GET /api/usage`); a consumer counts what it received
(`GET /api/copies`): each whole pull kept is one use (a range request is not kept, so not counted here,
while its provider counts it). The limit is the agreement's `count` term, when it has one.
"""

from collections import defaultdict
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connector.console.api import Api
from tessera.web.console import Console

NAV = [("/usage", "Usage")]
LABEL_WIDTH = 150  # the chart's left column: the agreement's short name
BAR_WIDTH = 380
ROW_HEIGHT = 26


def routes(console: Console) -> list[Route]:
    async def usage(request: Request) -> Response:
        api = Api(request)
        agreements = (await api.get("/agreements"))["items"]
        counters = {c["agreement_id"]: c for c in (await api.get("/usage"))["items"]}
        received: dict[str, int] = defaultdict(int)
        pulls: dict[str, int] = defaultdict(int)
        for copy in (await api.get("/copies"))["items"]:
            received[copy["agreement_id"]] += int(copy["bytes"])
            pulls[copy["agreement_id"]] += 1
        rows = [_row(a, counters.get(a["id"], {}), received[a["id"]], pulls[a["id"]]) for a in agreements]
        rows.sort(key=lambda r: r["signed_at"], reverse=True)
        filings = (await api.get("/usage/cross-border"))["items"]
        return console.render(
            request,
            "usage.html",
            rows=rows,
            uses_chart=_uses_chart(rows),
            bytes_chart=_bytes_chart(rows),
            filings=filings,
        )

    return [console.page("/usage", usage)]


def _row(agreement: dict[str, Any], counter: dict[str, Any], received: int, pulls: int) -> dict[str, Any]:
    limit = agreement["terms"].get("uses")
    provider = agreement["role"] == "provider"
    uses = int(counter.get("uses", 0)) if provider else pulls
    return {
        "agreement_id": agreement["id"],
        "short": agreement["id"].rsplit(":", 1)[-1][:8],
        "role": agreement["role"],
        "counterparty": agreement["consumer_id"] if provider else agreement["provider_id"],
        "signed_at": agreement["signed_at"],
        "uses": uses,
        "limit": limit,
        "remaining": max(limit - uses, 0) if limit is not None else None,
        "denials": int(counter.get("denials", 0)),
        "bytes": int(counter.get("bytes", 0)) if provider else received,
        "epsilon": float(counter.get("epsilon_spent", 0.0)),
        "last_used_at": counter.get("last_used_at"),
    }


def _uses_chart(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per agreement a track as long as its limit (or its uses, without one) and a bar of its uses."""
    scale = max([max(r["limit"] or 0, r["uses"]) for r in rows] + [1])
    bars = [
        {
            "row": r,
            "y": i * ROW_HEIGHT,
            "track": round(BAR_WIDTH * (r["limit"] or r["uses"]) / scale, 1),
            "bar": round(BAR_WIDTH * r["uses"] / scale, 1),
        }
        for i, r in enumerate(rows)
    ]
    return _frame(bars)


def _bytes_chart(rows: list[dict[str, Any]]) -> dict[str, Any]:
    scale = max([r["bytes"] for r in rows] + [1])
    bars = [
        {"row": r, "y": i * ROW_HEIGHT, "track": 0, "bar": round(BAR_WIDTH * r["bytes"] / scale, 1)}
        for i, r in enumerate(rows)
    ]
    return _frame(bars)


def _frame(bars: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "bars": bars,
        "label_width": LABEL_WIDTH,
        "bar_width": BAR_WIDTH,
        "row_height": ROW_HEIGHT,
        "width": LABEL_WIDTH + BAR_WIDTH + 110,
        "height": max(len(bars), 1) * ROW_HEIGHT + 4,
    }
