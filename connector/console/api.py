"""The console as a client of the connector's own management API, in process.

Pages do what an operator's script would do, through the same endpoints, validation and audit entries:
one behaviour, one place. The calls go to the app serving the page (httpx's ASGI transport, no socket),
with the management key the signed-in operator proved.
"""

from typing import Any

import httpx
from starlette.requests import Request

from connector.runtime import runtime_of
from tessera.web.console import Refused


class ApiRefused(Refused):
    """The management API said no: its problem's detail (and reasons) for the page to show."""

    def __init__(self, status: int, detail: str, reasons: list[str]) -> None:
        super().__init__(detail, status if 400 <= status < 500 else 502)
        self.reasons = reasons


class Api:
    """`await Api(request).get("/assets")` → the JSON body; a 4xx/5xx answer raises `ApiRefused`."""

    def __init__(self, request: Request) -> None:
        self._app = request.app
        self._token = runtime_of(request).config.management_token

    async def get(self, path: str, **params: Any) -> Any:
        return await self.call("GET", path, params=params)

    async def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return await self.call("POST", path, json=body or {})

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self._app),
            base_url="http://connector/api",
            headers={"Authorization": f"Bearer {self._token}"},
            timeout=None,  # the API bounds its own long polls
        ) as client:
            response = await client.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise _refusal(response)
        return response.json() if response.content else None


def _refusal(response: httpx.Response) -> ApiRefused:
    try:
        problem = response.json()
    except ValueError:
        problem = {}
    detail = problem.get("detail") or problem.get("title") or f"the connector answered {response.status_code}"
    reasons = [str(reason) for reason in problem.get("reasons", []) if reason != detail]
    return ApiRefused(response.status_code, str(detail), reasons)
