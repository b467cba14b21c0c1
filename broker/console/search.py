"""Search: the broker's own ranked search (as `GET /search` answers it), with facets to narrow it."""

from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from broker.console._state import refusing, registry_of
from broker.registry import search_query
from broker.search import FACETS
from tessera.web.console import Console

NAV = [("/", "Search")]
# facet name -> English label, in the order the page shows them
FACET_LABELS = {
    "participant": "Participant",
    "theme": "Theme",
    "format": "Format",
    "license": "License",
    "classification": "Classification",
    "region": "Region",
    "liveness": "Liveness",
}


def routes(console: Console) -> list[Route]:
    async def search(request: Request) -> Response:
        with refusing():
            query = search_query(request)  # the same parameters as GET /search: q, facets, sort, cursor …
            answer = await registry_of(request).search(query)
        request.state.metrics.searches.inc()  # a search is a search, from the API or the console
        chosen = {name: list(values) for name, values in query.filters.items()}
        following = None
        if answer["next_cursor"]:
            kept = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
            following = "/?" + urlencode([*kept, ("cursor", answer["next_cursor"])])
        return console.render(
            request,
            "search.html",
            q=query.text,
            answer=answer,
            facets=[(name, FACET_LABELS[name], answer.get("facets", {}).get(name, [])) for name in FACETS],
            chosen=chosen,
            following=following,
        )

    return [console.page("/", search)]
