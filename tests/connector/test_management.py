"""The management API: assets, policies and offers; problem details for every kind of bad input."""

import json
from pathlib import Path

import httpx
import pytest

from tests.dataspace import PEOPLE, RESEARCH_POLICY, Site, as_json, json_value, negotiate, publish, sql, start_transfer


async def test_requests_without_the_api_key_are_refused(provider: Site) -> None:
    async with httpx.AsyncClient(base_url=provider.config.url + "/api") as anonymous:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}):
            response = await anonymous.get("/assets", headers=headers)
            assert response.status_code == 401
            assert response.headers["content-type"] == "application/problem+json"


async def test_policy_with_a_syntax_error_is_refused_naming_line_and_column(provider: Site) -> None:
    source = "package broken\n\nallow if {\n    input.x ==\n}\n"
    response = await provider.api.post("/policies", json={"source": source})
    assert response.status_code == 400
    problem = response.json()
    assert (problem["line"], problem["column"]) == (5, 1)
    assert problem["status"] == 400 and problem["detail"]
    assert (await provider.api.get("/policies")).json()["items"] == []


async def test_uploaded_policy_is_compiled_and_hashed(provider: Site) -> None:
    created = await provider.post("/policies", {"id": "research", "source": RESEARCH_POLICY})
    assert created["package"] == "data.tessera.usage.research_limited"
    assert created["hash"].startswith("sha256:")
    again = await provider.api.post("/policies", json={"id": "research", "source": RESEARCH_POLICY})
    assert again.status_code == 409


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/assets", b"{broken", 400),
        ("/assets", {"title": "x", "format": "xml", "path": "/etc/hostname"}, 400),
        ("/assets", {"title": "x", "format": "csv", "path": "/no/such/file.csv"}, 400),
        ("/offers", {"asset_id": "nope", "usage_policy_id": "nope"}, 404),
        ("/negotiations", {"provider_id": "urn:tessera:x"}, 400),
        ("/transfers", {"agreement_id": "urn:uuid:unknown"}, 404),
        ("/negotiations/urn:uuid:unknown/terminate", {}, 404),
    ],
)
async def test_bad_input_gets_problem_details_and_writes_nothing(provider: Site, path: str, body, status: int) -> None:
    if isinstance(body, bytes):
        response = await provider.api.post(path, content=body)
    else:
        response = await provider.api.post(path, json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == status
    for collection in ("/assets", "/offers", "/negotiations", "/transfers"):
        assert (await provider.api.get(collection)).json()["items"] == []


async def test_unknown_ids_are_404(provider: Site) -> None:
    for path in ("/assets/x", "/policies/x", "/offers/x", "/negotiations/x", "/agreements/x", "/transfers/x"):
        response = await provider.api.get(path)
        assert response.status_code == 404, path
        assert response.json()["title"] == "Not found"


async def test_json_assets_are_streamed_with_masked_fields_removed(
    provider: Site, consumer: Site, tmp_path: Path
) -> None:
    data = tmp_path / "people.json"
    data.write_text(json.dumps(PEOPLE))
    offer = await publish(provider, data)
    negotiation = await negotiate(consumer, provider, offer)
    transfer = await start_transfer(consumer, negotiation["agreement_id"])
    pulled = await consumer.api.get(f"/transfers/{transfer['id']}/data", params={"purpose": "research"})
    assert pulled.status_code == 200
    assert pulled.headers["content-type"].startswith("application/json")
    assert as_json(pulled) == [{k: v for k, v in p.items() if k != "email"} for p in PEOPLE]


async def test_data_plane_refuses_a_token_for_another_transfer(
    provider: Site, consumer: Site, people_csv: Path
) -> None:
    offer = await publish(provider, people_csv)
    negotiation = await negotiate(consumer, provider, offer)
    first = await start_transfer(consumer, negotiation["agreement_id"])
    second = await start_transfer(consumer, negotiation["agreement_id"])
    first_token = await _data_token(consumer, first["id"])
    async with httpx.AsyncClient() as http:
        wrong = await http.get(
            f"{provider.config.url}/data/{second['provider_pid']}",
            params={"purpose": "research"},
            headers={"Authorization": f"Bearer {first_token}"},
        )
        missing = await http.get(f"{provider.config.url}/data/{first['provider_pid']}")
    assert wrong.status_code == 401
    assert missing.status_code == 401
    assert (await provider.api.get("/usage")).json()["items"] == []


async def _data_token(site: Site, transfer_id: str) -> str:
    (row,) = await sql(site.config, "SELECT data_address FROM transfer WHERE id = :id", id=transfer_id)
    properties = json_value(row["data_address"])["endpointProperties"]
    return next(p["value"] for p in properties if p["name"] == "authorization")
