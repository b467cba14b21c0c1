"""Audit: search the hash chain, verify it (locally or against the checkpoints others hold), and the
checkpoints we made and the receipts we hold of counter-parties' chains, each downloadable as JSON.

The management API lists entries by subject (the action is filtered here, within the entries it returned),
verifies the chain, and lists the checkpoints we made and the receipts we hold.
"""

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connector.console.api import Api, ApiRefused
from tessera.web.console import Console, Refused

NAV = [("/audit", "Audit")]
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000  # the management API's page


def routes(console: Console) -> list[Route]:
    async def entries_page(request: Request) -> Response:
        search = _search(request)
        error, found = None, []
        try:
            found = await _entries(request, search)
        except ApiRefused as exc:
            error = exc.message
        return console.render(
            request,
            "audit_entries.html",
            search=search,
            entries=found,
            error=error,
            checkpoints=(await Api(request).get("/audit/checkpoints"))["items"],
            receipts=(await Api(request).get("/audit/receipts"))["items"],
        )

    async def verify(request: Request) -> Response:
        local = request.query_params.get("local") == "true"
        report = await Api(request).get("/audit/verify", local="true" if local else "false")
        template = "audit_verify.html" if request.headers.get("hx-request") else "audit_verify_page.html"
        return console.render(request, template, report=report, local=local)

    async def checkpoint_json(request: Request) -> Response:
        seq = request.path_params["seq"]
        made = [c for c in (await Api(request).get("/audit/checkpoints"))["items"] if c["seq"] == seq]
        if not made:
            raise Refused(f"we made no checkpoint of entry {seq} (among the latest 100)", 404)
        return _download(made[0], f"checkpoint-{seq}.json")

    async def receipt_json(request: Request) -> Response:
        wanted = request.path_params["id"]
        held = [r for r in (await Api(request).get("/audit/receipts"))["items"] if r["id"] == wanted]
        if not held:
            raise Refused(f"we hold no receipt {wanted} (among the latest 100)", 404)
        (receipt,) = held
        document = receipt["receipt"] | {key: receipt[key] for key in ("participant_id", "seq", "hash")}
        return _download(document, f"receipt-{wanted}.json")

    return [
        console.page("/audit", entries_page),
        console.page("/audit/verify", verify),
        console.page("/audit/checkpoints/{seq:int}.json", checkpoint_json),
        console.page("/audit/receipts/{id:int}.json", receipt_json),
    ]


def _search(request: Request) -> dict[str, str]:
    query = request.query_params
    return {
        "subject": query.get("subject", "").strip(),
        "action": query.get("action", "").strip(),
        "limit": query.get("limit", str(DEFAULT_LIMIT)).strip() or str(DEFAULT_LIMIT),
    }


async def _entries(request: Request, search: dict[str, str]) -> list[dict[str, Any]]:
    params = {"limit": search["limit"]} | ({"subject": search["subject"]} if search["subject"] else {})
    items: list[dict[str, Any]] = (await Api(request).get("/audit", **params))["items"]
    wanted = search["action"].lower()
    return [_shown(entry) for entry in items if wanted in str(entry.get("action", "")).lower()]


def _shown(entry: dict[str, Any]) -> dict[str, Any]:
    details = entry.get("details") or {}
    return entry | {"details_json": json.dumps(details, indent=2, ensure_ascii=False), "fields": len(details)}


def _download(document: dict[str, Any], name: str) -> Response:
    return JSONResponse(document, headers={"Content-Disposition": f'attachment; filename="{name}"'})
