"""Hostile input to every page and form of both consoles, signed in: no answer may be a 5xx.

Every console route is asked for with hostile path parameters and query values; then every form the
pages show is sent back with one field at a time replaced by a hostile value (the session's CSRF token
kept, so the request reaches the page's own code). A fixed seed picks the combinations: the same
requests on every run.
"""

import random
import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote, urljoin

import httpx
import pytest
from starlette.routing import BaseRoute, Route

from broker import console as broker_console
from connector import console as connector_console
from tests.browser.conftest import BROKER_ADMIN, broker_with_admin_key
from tests.dataspace import Dataspace, Site, negotiate, publish, start_transfer

HOSTILE = [
    "",
    " ",
    "0",
    "-1",
    "9" * 40,
    "1e309",
    "NaN",
    "../../etc/passwd",
    "<script>alert(1)</script>",
    "心率数据",
    "a" * 5000,
    "null",
    "[]",
    '{"a": [1, {"b": null}]}',
    "urn:uuid:00000000-0000-0000-0000-000000000000",
    "http://127.0.0.1:9/nothing",
]
QUERY_KEYS = ["q", "limit", "format", "purpose", "provider_id", "provider_url", "cursor", "before", "theme", "local"]
FORMS_SENT = 400
SKIPPED_ACTIONS = ("/signout", "/signin")  # would end the session the run needs; sign-in is tested on its own


class Forms(HTMLParser):
    """The POST forms of a page: their action and their fields with the values the page gave them."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "form" and (found.get("method") or "").lower() == "post":
            self.forms.append((found.get("action") or "", {}))
        elif tag in ("input", "textarea", "select") and self.forms and found.get("name"):
            self.forms[-1][1][str(found["name"])] = found.get("value") or ""


def _get_paths(routes: list[BaseRoute], ids: list[str], rng: random.Random) -> list[str]:
    paths = []
    for route in routes:
        if not isinstance(route, Route) or "GET" not in (route.methods or ()):
            continue
        holes = re.findall(r"{(\w+)(?::\w+)?}", route.path)
        for value in [*ids, *HOSTILE] if holes else [""]:
            path = re.sub(r"{\w+(?::\w+)?}", quote(value, safe="") or "x", route.path)
            key = rng.choice(QUERY_KEYS)
            paths += [path, f"{path}?{key}={quote(rng.choice(HOSTILE), safe='')}"]
    return paths


async def _signed_in(base: str, key: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=base + "/console", timeout=30)
    form = await client.get("/signin")
    csrf = form.text.split('name="csrf" value="')[1].split('"')[0]
    assert (await client.post("/signin", data={"key": key, "csrf": csrf})).status_code == 303
    return client


async def _fuzz(
    client: httpx.AsyncClient, routes: list[BaseRoute], ids: list[str], seed: int, pages: tuple[str, ...] = ()
) -> list[str]:
    """Failures of the hostile requests to the console `client` is signed in to; `pages`: more to start from."""
    rng = random.Random(seed)
    failures: list[str] = []
    forms: list[tuple[str, dict[str, str]]] = []
    for path in [*pages, *_get_paths(routes, ids, rng)]:
        answer = await client.get(path)
        if answer.status_code >= 500:
            failures.append(f"GET {path[:200]} → {answer.status_code}")
        elif answer.status_code == 200 and "text/html" in answer.headers.get("content-type", ""):
            parsed = Forms()
            parsed.feed(answer.text)
            forms += [(urljoin(str(answer.url), action), fields) for action, fields in parsed.forms]
    sendable = [(a, f) for a, f in forms if f and not a.endswith(SKIPPED_ACTIONS)]
    for _ in range(FORMS_SENT if sendable else 0):
        action, fields = rng.choice(sendable)
        name = rng.choice([n for n in fields if n != "csrf"] or ["csrf"])
        data = fields | {name: rng.choice(HOSTILE)}
        answer = await client.post(action, data=data)
        if answer.status_code >= 500 and not _unreachable(answer):
            failures.append(f"POST {action} {name}={data[name][:60]!r} → {answer.status_code}")
    return failures


def _unreachable(answer: httpx.Response) -> bool:
    """A 502 page saying the peer a form named cannot be reached: a bad gateway, truly."""
    return answer.status_code == 502 and "unreachable" in answer.text


@pytest.fixture
async def exchanged(provider: Site, consumer: Site, people_csv: Path) -> AsyncIterator[list[str]]:
    """An offer, a finished negotiation, an agreement and a started transfer: their ids."""
    offer = await publish(provider, people_csv, title="Wearables")
    await provider.api.put("/registration", json={"title": "Provider"})
    negotiation = await negotiate(consumer, provider, offer)
    transfer = await start_transfer(consumer, negotiation["agreement_id"])
    yield [offer["id"], negotiation["id"], negotiation["agreement_id"], transfer["id"], provider.id]


async def test_no_console_page_or_form_answers_a_server_error(
    space: Dataspace, provider: Site, consumer: Site, exchanged: list[str]
) -> None:
    failures: list[str] = []
    catalog = f"/discover/catalog?provider_id={quote(provider.id)}&provider_url={quote(provider.dsp_url)}"
    for seed, site in enumerate((consumer, provider)):
        routes = connector_console.mount(site.config).routes
        client = await _signed_in(site.config.url, site.config.management_token)
        try:
            failures += await _fuzz(client, routes, exchanged, seed, pages=(catalog, "/discover?q=Wearables"))
        finally:
            await client.aclose()
    async with broker_with_admin_key(space) as url:
        assert space.broker_config is not None
        routes = broker_console.mount(space.broker_config).routes
        client = await _signed_in(url, BROKER_ADMIN)
        try:
            failures += await _fuzz(client, routes, exchanged, 7)
        finally:
            await client.aclose()
    assert failures == []


def test_the_fuzzer_reads_forms() -> None:
    parsed = Forms()
    parsed.feed('<form method="post" action="/x"><input name="csrf" value="t"><textarea name="a"></textarea></form>')
    assert parsed.forms == [("/x", {"csrf": "t", "a": ""})]
