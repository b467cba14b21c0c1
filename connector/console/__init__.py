"""The connector's web console at `/console`: the operator's, data user's and policy author's pages.

Each page module (`dashboard`, …) holds its handlers and a `routes(console)` function; its templates are in
`templates/`, its Chinese strings in `locale/zh_CN/<module>.po`. Pages act through the management API in
process (`connector.console.api`), so what the console does is exactly what the API does.
"""

from pathlib import Path

from starlette.routing import BaseRoute, Mount

from connector.config import ConnectorConfig
from connector.console import agreements, audit, dashboard, discover, offers, playground, transfers, usage
from tessera.web.console import Console

HERE = Path(__file__).resolve().parent
PATH = "/console"
# In the navigation's order; each module has `NAV` (its entries) and `routes(console)`.
PAGES = [dashboard, offers, discover, agreements, transfers, usage, audit, playground]
NAV = [entry for module in PAGES for entry in module.NAV]


def console_of(config: ConnectorConfig) -> Console:
    return Console(
        name="connector",
        title="Tessera connector",
        key=config.management_token,
        key_label="Management key",
        key_help="The management_token in the connector's secrets file (tessera connector init wrote it).",
        templates=[HERE / "templates"],
        locales=[HERE / "locale"],
        nav=NAV,
        secure=config.url.startswith("https://"),
        path=PATH,
    )


def mount(config: ConnectorConfig) -> Mount:
    console = console_of(config)
    pages: list[BaseRoute] = [route for module in PAGES for route in module.routes(console)]
    return Mount(PATH, routes=console.routes(pages), middleware=console.middleware())
