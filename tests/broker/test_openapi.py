"""The broker's OpenAPI 3.1 document (`broker/api.py`, `tessera/openapi.py`): it is valid, describes every
route of the app, and the broker answers as it says (schemathesis)."""

from typing import Any
from urllib.parse import quote

from openapi_spec_validator import validate

from broker.app import create_app
from tessera.openapi import described_routes, documented
from tests.broker.conftest import RunningBroker
from tests.broker.test_registry import offering, register, registration
from tests.openapi_fuzz import check_case, fuzz

# The access token the fuzzer sends is a member's: a token request (`/token`) needs a fresh client
# assertion per call, which a generated form never holds; its refusals are checked like every answer.
SERVED_BY_THE_SPEC = {("GET", "/openapi.json"), ("GET", "/docs")}


async def spec_of(broker: RunningBroker) -> Any:
    response = await broker.http.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


async def test_the_document_is_valid_openapi_3_1(broker: RunningBroker) -> None:
    spec = await spec_of(broker)
    validate(spec)
    assert spec["servers"] == [{"url": broker.url}] and spec["info"]["version"] == "0.1.0"
    assert spec["paths"]["/search"]["get"]["security"] == []
    assert spec["paths"]["/registrations/{participant_id}"]["put"]["security"] == [{"bearer": []}]
    problem = spec["paths"]["/search"]["get"]["responses"]["4XX"]["content"]["application/problem+json"]
    assert problem["schema"] == {"$ref": "#/components/schemas/Problem"}


async def test_every_route_of_the_broker_is_described(broker: RunningBroker) -> None:
    # The console's pages are for people (HTML forms), not part of the API the document describes.
    routes = {route for route in described_routes(create_app(broker.config).routes) if route[1][:9] != "/console/"}
    served = routes - SERVED_BY_THE_SPEC
    assert served == documented(await spec_of(broker))


async def test_the_docs_page_lists_every_operation(broker: RunningBroker) -> None:
    spec = await spec_of(broker)
    page = await broker.http.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for methods in spec["paths"].values():
        for item in methods.values():
            assert f'id="{item["operationId"]}"' in page.text
    assert 'id="schema-SearchOut"' in page.text and "<script" not in page.text


async def test_the_broker_answers_as_its_document_says(broker: RunningBroker) -> None:
    acme = await broker.admit("acme")
    body = registration(offering("a", "Air quality", "air"), offering("b", "Water levels", "water"))
    assert (await register(broker, acme, body)).status_code == 201
    entry = (await broker.http.get("/registrations/" + quote(acme.id, safe=""))).json()
    headers = {"Authorization": "Bearer " + await broker.token(acme)}
    spec_url = broker.url + "/openapi.json"
    code = entry["offerings"][0]["product_code"]
    given: list[tuple[str, str, dict[str, Any]]] = [
        ("PUT", "/registrations/{participant_id}", {"path_parameters": {"participant_id": acme.id}, "body": body}),
        ("GET", "/registrations/{participant_id}", {"path_parameters": {"participant_id": acme.id}}),
        ("GET", "/participants/{participant_id}", {"path_parameters": {"participant_id": acme.id}}),
        ("GET", "/search", {"query": {"q": "air"}}),
        ("GET", "/search", {"query": {"facets": "false", "sort": "title"}}),
        ("GET", "/products/{code}", {"path_parameters": {"code": code}}),
        ("GET", "/products/{code}/certificate", {"path_parameters": {"code": code}}),
        ("GET", "/changes", {"query": {"limit": 1}}),
        ("GET", "/catalog", {}),
        ("GET", "/status", {}),
    ]
    for method, path, case in given:
        await check_case(spec_url, broker.url, headers, method, path, **case)
    failures = await fuzz(spec_url, broker.url, headers, examples=5)
    assert not failures, "\n\n".join(failures)
