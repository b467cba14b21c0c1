"""Transfers: their states live, their timelines, the operator's suspend, resume and terminate, and the
data itself, downloaded to the browser under a declared purpose.

The download is the management API's `GET /api/transfers/{id}/data`, called in process as an ASGI app with
the page's own `receive`/`send`: the bytes stream from the provider to the browser without being held here
(httpx's ASGI transport would buffer them). A refusal (403 and its reasons) becomes a page, not a file.
"""

import json
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from connector.console.api import Api, ApiRefused
from connector.runtime import runtime_of
from tessera.web.console import Console, Refused, flash, text

NAV = [("/transfers", "Transfers")]
FINAL = ("COMPLETED", "TERMINATED")
BADGES = {"STARTED": "good", "COMPLETED": "good", "TERMINATED": "bad", "REQUESTED": "wait", "SUSPENDED": "wait"}
FORMATS = ("csv", "jsonl", "json", "parquet")
CHANGES = ("suspend", "resume", "terminate")
MAX_PROBLEM = 64 * 1024  # a refusal's body read to show it; more is not a problem+json of ours
# Bytes sent so far by this process's downloads in flight, by transfer: the transfer's page shows them
# (the provider streams without a length, so the browser alone cannot show how far a download is).
DOWNLOADING: dict[tuple[str, int], int] = {}  # (transfer, download) → bytes


def routes(console: Console) -> list[Route]:
    async def listing(request: Request) -> Response:
        items = (await Api(request).get("/transfers"))["items"]
        items.sort(key=lambda t: t["created_at"], reverse=True)
        return console.render(request, "transfers_list.html", transfers=items, badges=BADGES)

    async def detail(request: Request) -> Response:
        api = Api(request)
        transfer = await api.get(f"/transfers/{request.path_params['id']}")
        agreement = await api.get(f"/agreements/{transfer['agreement_id']}")
        purposes = agreement["terms"].get("purposes") or []
        return console.render(
            request,
            "transfers_detail.html",
            transfer=transfer,
            purpose=transfer.get("purpose") or (purposes[0] if purposes else ""),
            formats=FORMATS,
            **await _live(api, transfer),
        )

    async def state(request: Request) -> Response:
        api = Api(request)
        transfer = await api.get(f"/transfers/{request.path_params['id']}")
        return console.render(request, "transfers_state.html", transfer=transfer, **await _live(api, transfer))

    def change(verb: str) -> Any:
        async def act(request: Request, form: FormData) -> Response:
            transfer_id = request.path_params["id"]
            body = {} if verb == "resume" else {"reason": text(form, "reason") or f"{verb}d by the operator"}
            try:
                changed = await Api(request).post(f"/transfers/{transfer_id}/{verb}", body)
            except ApiRefused as exc:
                flash(request, " ".join([exc.message, *exc.reasons]), "error")
            else:
                flash(request, f"{verb}: the transfer is {changed['state']}", "ok")
            return console.redirect(request, f"/transfers/{transfer_id}")

        return act

    async def download(request: Request) -> Response:
        transfer = await Api(request).get(f"/transfers/{request.path_params['id']}")
        fmt = request.query_params.get("format", "csv")
        if fmt not in FORMATS:
            raise Refused(f"format must be one of {', '.join(FORMATS)}")
        query = {"format": fmt} | ({"purpose": p} if (p := request.query_params.get("purpose", "").strip()) else {})
        return Forwarded(console, request, transfer["id"], query, filename=f"transfer-{_safe(transfer['id'])}.{fmt}")

    return [
        console.page("/transfers", listing),
        console.page("/transfers/{id}", detail),
        console.page("/transfers/{id}/state", state),
        console.page("/transfers/{id}/download", download),
        *[console.action(f"/transfers/{{id}}/{verb}", change(verb)) for verb in CHANGES],
    ]


async def _live(api: Api, transfer: dict[str, Any]) -> dict[str, Any]:
    """What the page polls: the timeline, how many bytes arrived, and whether to keep polling."""
    timeline = await api.get(f"/transfers/{transfer['id']}/timeline")
    copies = [c for c in (await api.get("/copies"))["items"] if c["transfer_id"] == transfer["id"]]
    return {
        "events": timeline["events"],
        "waiting_for": timeline["waiting_for"],
        "received_bytes": sum(c["bytes"] for c in copies),
        "downloading": _downloading(transfer["id"]),
        "final": transfer["state"] in FINAL,
        "badges": BADGES,
    }


def _downloading(transfer_id: str) -> int | None:
    """Bytes sent so far by the downloads of `transfer_id` in flight here; None when there is none."""
    sent = [count for (transfer, _), count in DOWNLOADING.items() if transfer == transfer_id]
    return sum(sent) if sent else None


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)


class Forwarded(Response):
    """The management API's data endpoint answering the browser directly, as an attachment.

    A success streams through untouched (status, Content-Length, the provider's headers) plus
    Content-Disposition; a refusal's problem+json is read and shown as the console's refusal page.
    """

    def __init__(
        self, console: Console, request: Request, transfer_id: str, query: dict[str, str], filename: str
    ) -> None:
        super().__init__()
        self.console, self.request, self.filename, self.transfer_id = console, request, filename, transfer_id
        token = runtime_of(request).config.management_token
        path = f"/api/transfers/{transfer_id}/data"
        page = request.scope
        self.inner: Scope = {
            "type": "http",
            "asgi": page.get("asgi", {"version": "3.0"}),
            "http_version": page.get("http_version", "1.1"),
            "method": "GET",
            "scheme": page.get("scheme", "http"),
            "server": page.get("server"),
            "client": page.get("client"),
            "root_path": "",
            "path": path,
            "raw_path": path.encode(),
            "query_string": urlencode(query).encode(),
            "headers": [
                (b"host", request.headers.get("host", "connector").encode()),
                (b"authorization", f"Bearer {token}".encode()),
            ],
            "state": dict(page.get("state", {})),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal: dict[str, Any] = {}

        async def forward(message: Message) -> None:
            if message["type"] == "http.response.start":
                if message["status"] >= 400:
                    refusal.update(status=message["status"], body=b"")
                    return
                disposition = f'attachment; filename="{self.filename}"'.encode()
                message["headers"] = [*message.get("headers", []), (b"content-disposition", disposition)]
            elif refusal:
                if len(refusal["body"]) < MAX_PROBLEM:
                    refusal["body"] += message.get("body", b"")
                return
            else:
                DOWNLOADING[key] = DOWNLOADING.get(key, 0) + len(message.get("body", b""))
            await send(message)

        key = (self.transfer_id, id(self))
        try:
            await self.request.app(self.inner, receive, forward)
        finally:
            DOWNLOADING.pop(key, None)
        if refusal:
            page = self.console.render(
                self.request,
                "transfers_refused.html",
                status=refusal["status"],
                **_problem(refusal["body"], refusal["status"]),
            )
            await page(scope, receive, send)


def _problem(body: bytes, status: int) -> dict[str, Any]:
    """The detail and reasons of a problem+json; any other body says only who answered what."""
    try:
        problem = json.loads(body)
    except ValueError:
        problem = None
    if not isinstance(problem, dict):
        problem = {}
    detail = str(problem.get("detail") or problem.get("title") or f"the connector answered {status}")
    reasons = problem.get("reasons")
    return {"detail": detail, "reasons": [str(r) for r in reasons if r != detail] if isinstance(reasons, list) else []}
