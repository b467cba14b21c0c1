"""The management API's OpenAPI 3.1 document (`connector/management_api.py`, `tessera/openapi.py`): it is
valid, public, describes every route of `/api`, and the API answers as it says (schemathesis)."""

from pathlib import Path
from typing import Any

import httpx
from openapi_spec_validator import validate

from connector.app import create_app
from tessera.openapi import described_routes, documented
from tests.dataspace import Site, negotiate, publish, start_transfer
from tests.openapi_fuzz import check_case, fuzz

# These send requests to the URL or participant in their body: fuzzed, they would call arbitrary hosts
# and answer 502 by design (the peer is unreachable). tests/connector/test_management.py covers them.
CALLS_OUT = {"POST /catalog/request", "POST /negotiations", "POST /negotiations/offers"}


async def spec_of(site: Site) -> Any:
    async with httpx.AsyncClient() as http:
        response = await http.get(site.config.url + "/api/openapi.json")  # no key
    assert response.status_code == 200
    return response.json()


async def test_the_document_is_valid_openapi_3_1_and_public(provider: Site) -> None:
    spec = await spec_of(provider)
    validate(spec)
    assert spec["openapi"] == "3.1.0"
    assert spec["servers"] == [{"url": provider.config.url + "/api"}]
    assert spec["info"]["version"] == "0.1.0"
    assert spec["paths"]["/assets"]["post"]["security"] == [{"bearer": []}]
    asset = spec["components"]["schemas"]["AssetOut"]
    assert asset["additionalProperties"] is False and "classification" in asset["properties"]
    async with httpx.AsyncClient(base_url=provider.config.url) as http:
        assert (await http.get("/openapi.json")).json() == spec
        assert (await http.get("/api/assets")).status_code == 401  # the operations still want the key


async def test_every_route_of_the_management_api_is_described(provider: Site) -> None:
    spec = await spec_of(provider)
    app = create_app(provider.config)
    served = {(m, p.removeprefix("/api")) for m, p in described_routes(app.routes) if p.startswith("/api/")}
    served -= {("GET", "/openapi.json")}
    assert served and served == documented(spec)


async def test_the_docs_page_lists_every_operation(provider: Site) -> None:
    spec = await spec_of(provider)
    async with httpx.AsyncClient() as http:
        page = await http.get(provider.config.url + "/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for path, methods in spec["paths"].items():
        for method in methods:
            assert f'id="{methods[method]["operationId"]}"' in page.text, (method, path)
    assert 'id="schema-AssetCreate"' in page.text and "<script" not in page.text


async def test_the_api_answers_as_its_document_says(provider: Site, consumer: Site, people_csv: Path) -> None:
    """Records of every kind first (an agreement, a transfer, its copy, audit entries), so the lists the
    fuzzer reads hold real ones; then each record by its id, and every operation fuzzed."""
    offer = await publish(provider, people_csv)
    negotiation = await negotiate(consumer, provider, offer)
    transfer = await start_transfer(consumer, negotiation["agreement_id"])
    assert (await consumer.api.get(f"/transfers/{transfer['id']}/data?purpose=research")).status_code == 200
    spec_url, headers = (
        consumer.config.url + "/api/openapi.json",
        {"Authorization": "Bearer " + consumer.config.management_token},
    )
    base = consumer.config.url + "/api"
    for path, pid in [
        ("/negotiations/{id}", negotiation["id"]),
        ("/negotiations/{id}/timeline", negotiation["id"]),
        ("/agreements/{id}", negotiation["agreement_id"]),
        ("/transfers/{id}", transfer["id"]),
        ("/timeline/{id}", transfer["id"]),
    ]:
        await check_case(spec_url, base, headers, "GET", path, path_parameters={"id": pid})
    question = {"agreement_id": negotiation["agreement_id"], "purpose": "research"}
    provider_spec = provider.config.url + "/api/openapi.json"
    provider_headers = {"Authorization": "Bearer " + provider.config.management_token}
    provider_base = provider.config.url + "/api"
    await check_case(provider_spec, provider_base, provider_headers, "POST", "/explain/use", body=question)
    await check_case(provider_spec, provider_base, provider_headers, "GET", "/usage")
    await check_case(
        provider_spec, provider_base, provider_headers, "GET", "/assets/{id}", path_parameters={"id": offer["asset_id"]}
    )

    failures = await fuzz(spec_url, base, headers, skip=CALLS_OUT)
    failures += await fuzz(provider_spec, provider_base, provider_headers, skip=CALLS_OUT, examples=2)
    assert not failures, "\n\n".join(failures)
