"""Hostile requests to every endpoint of the broker and both connectors: none may get a 5xx, make a server
log an error, hang, or leave a background loop wedged.

`pytest -q` sends a few hundred (`FUZZ_REQUESTS`, default 300); `make fuzz` sends 10,000 and prints the
status histogram. The one 5xx allowed is a 502 saying a peer is unreachable: a management call told to
reach a URL where nothing listens, which is what a bad gateway is.
"""

import json
import os
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz.endpoints import ENDPOINTS, FuzzRequest, requests
from tests.fuzz.harness import Harness

REQUESTS = int(os.environ.get("FUZZ_REQUESTS", "300"))
TIMEOUT = 20.0  # seconds; a request that takes longer means a wedged event loop


@pytest.fixture(scope="module")
def client() -> httpx.Client:
    with httpx.Client(timeout=TIMEOUT) as http:
        yield http


def send(client: httpx.Client, request: FuzzRequest) -> httpx.Response:
    try:
        return client.request(request.method, request.url, headers=request.headers, content=request.content)
    except httpx.TimeoutException as exc:
        raise AssertionError(f"no answer within {TIMEOUT} s (a wedged loop?): {request!r}") from exc


@settings(
    max_examples=REQUESTS,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
@given(data=st.data())
def test_no_request_gets_a_server_error(harness: Harness, client: httpx.Client, data: st.DataObject) -> None:
    assert harness.targets is not None
    request = data.draw(requests(harness.targets), label="request")
    response = send(client, request)
    harness.statuses[response.status_code] += 1
    harness.slowest = max(harness.slowest, (response.elapsed.total_seconds(), repr(request)[:120]))
    harness.faults.update(request.faults or ("valid",))
    harness.endpoints[f"{request.endpoint.method} {request.endpoint.path}"] += 1
    if os.environ.get("FUZZ_TRACE"):
        print(response.status_code, request, response.text[:200])
    assert response.status_code < 500 or unreachable_peer(response), (response.status_code, response.text)
    assert harness.errors.take() == [], request


def unreachable_peer(response: httpx.Response) -> bool:
    return response.status_code == 502 and "unreachable" in response.json().get("detail", "")


def test_every_endpoint_was_fuzzed(harness: Harness) -> None:
    missed = {f"{e.method} {e.path}" for e in ENDPOINTS} - set(harness.endpoints)
    assert not missed or 5 * len(ENDPOINTS) > REQUESTS, missed


def test_nothing_is_wedged_after_the_run(harness: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    after = harness.check_unwedged()
    assert harness.errors.take() == []
    report = {
        "requests": sum(harness.statuses.values()),
        "statuses": dict(sorted(harness.statuses.items())),
        "faults": dict(harness.faults.most_common()),
        "endpoints": len(harness.endpoints),
        "slowest": harness.slowest,
        "after": after,
    }
    if path := os.environ.get("FUZZ_REPORT"):
        Path(path).write_text(json.dumps(report, indent=2, ensure_ascii=False))
    if "FUZZ_REQUESTS" in os.environ:
        with capsys.disabled():
            print(f"\n{report['requests']} requests over {report['endpoints']} endpoints; statuses:")
            for status, count in report["statuses"].items():
                print(f"  {status}: {count}")
            print(f"slowest answer: {harness.slowest[0]:.2f} s ({harness.slowest[1]})")
