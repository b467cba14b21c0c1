"""The broker's web console at `/console`: the operator's search, participants, data products and event log.

Sign-in takes the broker's admin key (`admin_token` in broker.toml, or `TESSERA_ADMIN_TOKEN`); a broker
without one refuses every sign-in, saying why. Each page module (`search`, …) holds its handlers and a
`routes(console)` function; its templates are in `templates/`, its Chinese strings in
`locale/zh_CN/<module>.po`. Changes go through the same functions as `tessera participant …`
(`broker.authority`), so they leave the same events.
"""

import secrets
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from broker.config import BrokerConfig
from broker.console import events, participants, products, search
from tessera.web.console import Console, Page

HERE = Path(__file__).resolve().parent
PATH = "/console"
# In the navigation's order; each module has `NAV` (its entries) and `routes(console)`.
PAGES = [search, participants, products, events]
NAV = [entry for module in PAGES for entry in module.NAV]
CLOSED = (
    "This broker has no admin key (admin_token), so nobody can sign in. Set one in broker.toml or TESSERA_ADMIN_TOKEN."
)


def console_of(config: BrokerConfig) -> Console:
    return Console(
        name="broker",
        title="Tessera broker",
        # Without an admin key, a random one nobody knows: the frame's own sign-in can never succeed.
        key=config.admin_token or secrets.token_urlsafe(32),
        key_label="Admin key",
        key_help="The admin_token in the broker's broker.toml (tessera broker init wrote it).",
        templates=[HERE / "templates"],
        locales=[HERE / "locale"],
        nav=NAV,
        secure=config.url.startswith("https://"),
        path=PATH,
    )


def mount(config: BrokerConfig) -> Mount:
    console = console_of(config)
    pages: list[BaseRoute] = [route for module in PAGES for route in module.routes(console)]
    routes = console.routes(pages)
    if not config.admin_token:
        routes = [Route("/signin", _closed(console), methods=["GET", "POST"]), *routes]
    return Mount(PATH, routes=routes, middleware=console.middleware())


def _closed(console: Console) -> Page:
    async def refuse(request: Request) -> Response:
        status = 403 if request.method == "POST" else 200
        return console.render(request, "signin.html", status=status, error=CLOSED, next="/")

    return refuse
