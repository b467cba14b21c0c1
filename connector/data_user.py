"""What a data user's commands ask of the broker and of their own (consumer) connector's management API.

Every call either answers the JSON it wanted or raises `CommandFailed` with the exit code the CLI ends
with: 1 refused (a negotiation or transfer terminated, a use denied), 2 bad input (an unknown id, a
request the API refuses), 3 unreachable (the connector, the broker or the provider; a wait ran out).

```python
with httpx.Client(base_url=config.url + "/api", headers=auth) as http:
    api = Management(http)
    started = api.call("POST", "/negotiations", body, expect=201)
    agreed = api.wait(f"/negotiations/{started['id']}", {"FINALIZED"}, within=30)
```
"""

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from connector.pull_file import refusal
from tessera import dsp, words
from tessera.odrl import InvalidPolicy, parse_policy

REFUSED, BAD_INPUT, UNREACHABLE = 1, 2, 3
LONG_POLL = 20.0  # seconds one wait request may hold; the management API caps it at 60
Watch = Callable[[dict[str, Any]], None]  # called with the process after each answer


class CommandFailed(Exception):
    """A data user's command could not do what was asked; `code` is its exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def exit_code(status: int) -> int:
    """The exit code for an HTTP refusal: a denial is 1, our own API's 4xx is bad input, a 5xx unreachable."""
    if status in (403, 410):
        return REFUSED
    return BAD_INPUT if 400 <= status < 500 else UNREACHABLE


def _send(http: httpx.Client, method: str, url: str, what: str, **options: Any) -> httpx.Response:
    try:
        return http.request(method, url, **options)
    except httpx.TransportError as exc:
        raise CommandFailed(f"{what} is not reachable: {exc}", UNREACHABLE) from exc


class Management:
    """The consumer connector's management API (`http` has its base URL and bearer key)."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, *, expect: int = 200) -> Any:
        where = f"the connector at {self.http.base_url}"
        response = _send(self.http, method, path, where, json=body)
        if response.status_code != expect:
            raise CommandFailed(refusal(response), exit_code(response.status_code))
        return response.json()

    def wait(self, path: str, wanted: set[str], *, within: float, watch: Watch | None = None) -> dict[str, Any]:
        """Long-poll a negotiation or transfer until it is in one of `wanted` or final (a final state
        outside `wanted` is the caller's to judge); exit 3 when `within` seconds pass first."""
        deadline = time.monotonic() + within
        states = ",".join(sorted(wanted | {"TERMINATED"}))
        while True:
            left = deadline - time.monotonic()
            found: dict[str, Any] = self.call(
                "GET", f"{path}?wait_for={states}&timeout={max(0.0, min(left, LONG_POLL))}"
            )
            if watch is not None:
                watch(found)
            if found["state"] in wanted or found["state"] in ("TERMINATED", "COMPLETED"):
                return found
            if time.monotonic() >= deadline:
                raise CommandFailed(f"{path} is still {found['state']} after {within:g} s", UNREACHABLE)


def search(broker_url: str, params: list[tuple[str, str | int]]) -> dict[str, Any]:
    """The broker's public search answer (`GET /search`)."""
    with httpx.Client(timeout=httpx.Timeout(30, connect=5)) as http:
        response = _send(http, "GET", f"{broker_url.rstrip('/')}/search", f"the broker at {broker_url}", params=params)
    if response.status_code != 200:
        raise CommandFailed(refusal(response), exit_code(response.status_code))
    found: dict[str, Any] = response.json()
    return found


def registered_endpoint(broker_url: str, participant_id: str) -> str:
    """The DSP endpoint a participant registered at the broker."""
    url = f"{broker_url.rstrip('/')}/registrations/{quote(participant_id, safe='')}"
    with httpx.Client(timeout=httpx.Timeout(30, connect=5)) as http:
        response = _send(http, "GET", url, f"the broker at {broker_url}")
    if response.status_code in (404, 410):
        raise CommandFailed(f"{participant_id} is not registered at {broker_url}; give --provider-url", BAD_INPUT)
    if response.status_code != 200:
        raise CommandFailed(refusal(response), exit_code(response.status_code))
    return str(response.json()["endpoint"])


@dataclass(frozen=True)
class OfferRow:
    dataset_id: str
    title: str
    offer_id: str
    terms: list[str]  # the offer's ODRL in plain words

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def offers_in(catalog: dict[str, Any]) -> list[OfferRow]:
    """Every offer of a DSP catalog, beside the dataset that holds it."""
    return [
        OfferRow(str(dataset.get("@id", "")), _text(dataset.get("title")), str(offer.get("@id", "")), _words(offer))
        for dataset, offer in _pairs(dsp.compact(catalog))
    ]


def _pairs(catalog: Any) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    datasets = catalog.get("dataset") if isinstance(catalog, dict) else None
    for dataset in datasets if isinstance(datasets, list) else [datasets] if datasets else []:
        offers = dataset.get("hasPolicy") if isinstance(dataset, dict) else None
        for offer in offers if isinstance(offers, list) else [offers] if offers else []:
            if isinstance(offer, dict):
                yield dataset, offer


def _words(offer: dict[str, Any]) -> list[str]:
    try:
        return words.lines(parse_policy(offer, where="offer"))
    except InvalidPolicy as exc:
        return [f"(not readable: {exc})"]


def _text(value: object) -> str:
    if isinstance(value, list) and value:
        return _text(value[0])
    return value if isinstance(value, str) else ""
