"""(to be built)"""

from starlette.routing import Route

from tessera.web.console import Console

NAV: list[tuple[str, str]] = []


def routes(console: Console) -> list[Route]:
    return []
