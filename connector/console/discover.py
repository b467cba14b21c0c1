"""Discover → negotiate: search the broker, read a provider's catalog in plain words, negotiate, follow it.

The search goes to the broker's public `GET /search` with the connector's own HTTP client (the management
API has no search of its own); the catalog, negotiations and their timelines go through the management API.
A negotiation's page polls its timeline with htmx every second until the negotiation is final.
"""

from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

import httpx
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connector.console.api import Api, ApiRefused
from connector.runtime import runtime_of
from tessera.dsp import TESSERA
from tessera.odrl import InvalidPolicy, parse_policy
from tessera.web.console import Console, Refused, flash, text
from tessera.words import Phrase, describe

NAV = [("/discover", "Discover"), ("/negotiations", "Negotiations")]
# The broker's facets (its filter parameters), in the order shown, with their English labels.
FACETS = {
    "theme": "Theme",
    "classification": "Classification",
    "format": "Format",
    "region": "Region",
    "license": "License",
    "participant": "Provider",
    "liveness": "Liveness",
}
LABELS = ("theme", "classification", "format", "region", "license", "language")
FINAL = ("FINALIZED", "TERMINATED")
NEEDS_NUMBERS = ("uses", "duration_days", "min_uses", "min_duration_days")


class SearchFailed(Exception):
    """The broker did not answer the search; the message is shown above the (empty) results."""


def routes(console: Console) -> list[Route]:
    async def search(request: Request) -> Response:
        query, filters = _search_params(request)
        answer: dict[str, Any] = {"total": 0, "results": [], "facets": {}, "next_cursor": None}
        error = None
        try:
            answer = await _broker_search(request, query, filters, request.query_params.get("cursor", ""))
        except SearchFailed as exc:
            error = str(exc)
        return console.render(
            request,
            "discover_search.html",
            q=query,
            filters=[(name, FACETS[name], value) for name, values in filters.items() for value in values],
            total=answer.get("total", 0),
            results=[_result(found, request.url.query) for found in answer.get("results", [])],
            facets=_facets(query, filters, answer.get("facets") or {}),
            more=_more(query, filters, answer.get("next_cursor")),
            error=error,
        )

    async def catalog(request: Request) -> Response:
        provider_id = request.query_params.get("provider_id", "").strip()
        provider_url = request.query_params.get("provider_url", "").strip()
        if not provider_id or not provider_url:
            raise Refused("a catalog needs a provider_id and a provider_url (open it from a search result)")
        found = await Api(request).post("/catalog/request", {"provider_id": provider_id, "provider_url": provider_url})
        if not isinstance(found, dict):  # the API passes a peer's answer on as it came
            raise Refused("the provider's catalog is not a JSON object", 502)
        datasets = [_dataset(d) for d in _listed(found.get("dataset")) if isinstance(d, dict)]
        return console.render(
            request,
            "discover_catalog.html",
            provider_id=provider_id,
            provider_url=provider_url,
            datasets=datasets,
            back="/discover?" + urlencode(parse_qsl(request.query_params.get("search", ""))),  # re-encoded: ours
        )

    async def negotiate(request: Request, form: FormData) -> Response:
        where = {name: text(form, name) for name in ("provider_id", "provider_url", "offer_id", "target")}
        back = "/discover/catalog?" + urlencode({k: where[k] for k in ("provider_id", "provider_url")})
        try:
            body: dict[str, Any] = {**where, "needs": _needs(form)}
            started = await Api(request).post("/negotiations", body)
        except (ValueError, ApiRefused) as exc:
            flash(request, _refusal_text(exc), "error")
            return console.redirect(request, back)
        return console.redirect(request, f"/negotiations/{quote(started['id'], safe=':')}")

    async def negotiations(request: Request) -> Response:
        items = (await Api(request).get("/negotiations"))["items"]
        items.sort(key=lambda n: n.get("created_at") or "", reverse=True)
        return console.render(request, "discover_negotiations.html", negotiations=items)

    async def negotiation(request: Request) -> Response:
        found = await _timeline(request)
        if found is None:
            return _not_found(request)
        return console.render(request, "discover_negotiation.html", **_live(found))

    async def live(request: Request) -> Response:
        found = await _timeline(request)
        if found is None:
            return _not_found(request)
        return console.render(request, "discover_timeline.html", **_live(found))

    async def terminate(request: Request, form: FormData) -> Response:
        pid = request.path_params["id"]
        reason = text(form, "reason")
        try:
            await Api(request).post(
                f"/negotiations/{quote(pid, safe='')}/terminate", {"reason": reason} if reason else {}
            )
        except ApiRefused as exc:
            flash(request, _refusal_text(exc), "error")
        return console.redirect(request, f"/negotiations/{quote(pid, safe=':')}")

    def _not_found(request: Request) -> Response:
        pid = request.path_params["id"]
        return console.render(request, "discover_not_found.html", status=404, pid=pid)

    return [
        console.page("/discover", search),
        console.page("/discover/catalog", catalog),
        console.action("/discover/negotiate", negotiate),
        console.page("/negotiations", negotiations),
        console.page("/negotiations/{id}", negotiation),
        console.page("/negotiations/{id}/live", live),
        console.action("/negotiations/{id}/terminate", terminate),
    ]


# -- search -------------------------------------------------------------------------------------------------


def _search_params(request: Request) -> tuple[str, dict[str, list[str]]]:
    params = request.query_params
    filters = {name: [v for v in dict.fromkeys(params.getlist(name)) if v.strip()] for name in FACETS}
    return params.get("q", "").strip(), {name: values for name, values in filters.items() if values}


async def _broker_search(request: Request, query: str, filters: dict[str, list[str]], cursor: str) -> dict[str, Any]:
    runtime = runtime_of(request)
    url = runtime.config.broker_url.rstrip("/") + "/search"
    params = _query(query, filters) + ([("cursor", cursor)] if cursor else [])
    try:
        response = await runtime.http.get(url, params=urlencode(params))
    except httpx.TransportError as exc:
        raise SearchFailed(f"the broker at {url} cannot be reached: {exc}") from exc
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code >= 400 or not isinstance(body, dict):
        detail = body.get("detail") if isinstance(body, dict) else None
        raise SearchFailed(f"the broker refused the search ({response.status_code}): {detail or response.text[:300]}")
    return body


def _query(query: str, filters: dict[str, list[str]]) -> list[tuple[str, str]]:
    return ([("q", query)] if query else []) + [(name, v) for name, values in filters.items() for v in values]


def _href(query: str, filters: dict[str, list[str]]) -> str:
    return "/discover?" + urlencode(_query(query, filters))


def _facets(query: str, filters: dict[str, list[str]], counts: dict[str, Any]) -> list[dict[str, Any]]:
    """Each facet with its values' counts and, per value, the search with that value toggled (query kept)."""
    shown = []
    for name, label in FACETS.items():
        values = []
        for found in counts.get(name) or []:
            value, selected = str(found.get("value", "")), str(found.get("value", "")) in filters.get(name, [])
            chosen = [v for v in filters.get(name, []) if v != value] if selected else [*filters.get(name, []), value]
            values.append(
                {
                    "value": value,
                    "count": found.get("count", 0),
                    "selected": selected,
                    "href": _href(query, {**filters, name: chosen}),
                }
            )
        if values:
            shown.append({"name": name, "label": label, "choices": values})
    return shown


def _more(query: str, filters: dict[str, list[str]], cursor: object) -> str | None:
    return f"{_href(query, filters)}&{urlencode({'cursor': cursor})}" if isinstance(cursor, str) and cursor else None


def _result(found: dict[str, Any], search: str) -> dict[str, Any]:
    """A search hit as the page shows it; its catalog link carries the `search` (a query string) to go back to."""
    offering = found.get("offering") or {}
    provider = str(found.get("participant_id", ""))
    return {
        "title": offering.get("title") or offering.get("id"),
        "description": offering.get("description", ""),
        "provider": provider,
        "liveness": (found.get("liveness") or {}).get("state", ""),
        "labels": [(name, offering[name]) for name in LABELS if offering.get(name)],
        "keywords": offering.get("keywords") or [],
        "catalog": "/discover/catalog?"
        + urlencode({"provider_id": provider, "provider_url": str(found.get("endpoint", "")), "search": search}),
    }


# -- catalog ------------------------------------------------------------------------------------------------


def _listed(value: object) -> list[Any]:
    """A JSON-LD property that may hold one value or a list of them."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _plain(value: object) -> str:
    """A JSON-LD literal as text: a string, a value object (`{"@value": …}`), or the first of a list."""
    if isinstance(value, list):
        return _plain(value[0]) if value else ""
    if isinstance(value, dict):
        return str(value.get("@value", value.get("@id", "")))
    if isinstance(value, bool):
        return str(value).lower()
    return "" if value is None else str(value)


def _dataset(dataset: dict[str, Any]) -> dict[str, Any]:
    labels = [(key.removeprefix(TESSERA), _plain(value)) for key, value in dataset.items() if key.startswith(TESSERA)]
    keywords = [_plain(k) for k in _listed(dataset.get("keyword") or dataset.get("dcat:keyword"))]
    return {
        "id": _plain(dataset.get("@id")),
        "title": _plain(dataset.get("title") or dataset.get("dct:title")) or _plain(dataset.get("@id")),
        "description": _plain(dataset.get("description") or dataset.get("dct:description")),
        "keywords": [k for k in keywords if k],
        "labels": labels,
        "offers": [_offer(o) for o in _listed(dataset.get("hasPolicy") or dataset.get("odrl:hasPolicy"))],
    }


def _offer(offer: object) -> dict[str, Any]:
    """An offer's id and its sentences, or why it cannot be read (a peer's offer is outside our control)."""
    offer_id = _plain(offer.get("@id")) if isinstance(offer, dict) else ""
    try:
        phrases: list[Phrase] = describe(parse_policy(offer, where="offer"))
    except InvalidPolicy as exc:
        return {"id": offer_id, "phrases": [], "error": exc.detail}
    return {"id": offer_id, "phrases": phrases, "error": None}


def _needs(form: FormData) -> dict[str, Any]:
    """The consumer's needs from the form; a number that is not a whole number ≥ 1 raises ValueError."""
    needs: dict[str, Any] = {}
    purposes = [p.strip() for p in text(form, "purposes").split(",") if p.strip()]
    if purposes:
        needs["purposes"] = purposes
    for name in NEEDS_NUMBERS:
        raw = text(form, name)
        if raw:
            if not (raw.isascii() and raw.isdigit()) or int(raw) < 1 or len(raw) > 9:
                raise ValueError(f"{name.replace('_', ' ')} must be a whole number of at least 1")
            needs[name] = int(raw)
    return needs


def _refusal_text(exc: Exception) -> str:
    if isinstance(exc, ApiRefused):
        return "; ".join([exc.message, *exc.reasons])
    return str(exc)


# -- negotiations -------------------------------------------------------------------------------------------


async def _timeline(request: Request) -> dict[str, Any] | None:
    """The negotiation's timeline from the API, or None when there is no such negotiation."""
    try:
        found: dict[str, Any] = await Api(request).get(
            f"/negotiations/{quote(request.path_params['id'], safe='')}/timeline"
        )
    except ApiRefused as exc:
        if exc.status == 404:
            return None
        raise
    return found


def _live(found: dict[str, Any]) -> dict[str, Any]:
    process = found["process"]
    return {
        "negotiation": process,
        "waiting_for": found.get("waiting_for"),
        "events": found.get("events", []),
        "final": process.get("state") in FINAL,
        "live_path": f"/negotiations/{quote(process['id'], safe=':')}/live",
    }
