"""Registration and search, through real HTTP with tokens from the broker's own authority."""

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import pytest

from broker.authority import set_suspended
from broker.registry import MAX_BODY_BYTES
from tests.broker.conftest import Member, RunningBroker


def registration(*offerings: dict[str, Any], title: str = "Acme connector") -> dict[str, Any]:
    return {
        "endpoint": "https://acme.example/dsp",
        "title": title,
        "description": "Sensor data from the Acme plant",
        "offerings": list(offerings),
    }


def offering(id: str, title: str, *keywords: str, description: str = "") -> dict[str, Any]:
    return {"id": id, "title": title, "description": description, "keywords": list(keywords), "format": "csv"}


async def register(
    broker: RunningBroker, member: Member, body: Any, *, as_: Member | None = None, within: float = 5.0
) -> Any:
    token = await broker.token(as_ or member)
    headers = {"Authorization": f"Bearer {token}"}
    return await broker.http.put(f"/registrations/{member.id}", json=body, headers=headers, timeout=within)


async def test_participant_registers_and_reads_its_registration_back(broker: RunningBroker) -> None:
    acme = await broker.admit("acme")
    body = registration(offering("temps", "Furnace temperatures", "Energy", "steel"))

    created = await register(broker, acme, body)
    fetched = await broker.http.get("/registrations/" + quote(acme.id, safe=""))

    assert created.status_code == 201
    assert fetched.status_code == 200
    assert fetched.json()["endpoint"] == "https://acme.example/dsp"
    stored = fetched.json()["offerings"]
    assert [{k: o[k] for k in body["offerings"][0]} for o in stored] == body["offerings"]
    assert stored[0]["region"] == "EU"  # the participant's, as the operator admitted it
    assert stored[0]["product_code"] == created.json()["offerings"][0]["product_code"]
    assert fetched.json()["liveness"]["state"] == "ONLINE"


async def test_search_hits_carry_the_dataset_id_a_push_names_and_a_later_push_without_keeps_it(
    broker: RunningBroker,
) -> None:
    acme = await broker.admit("acme")
    await register(broker, acme, registration({**offering("temps", "Furnace temperatures"), "dataset_id": "ds-1"}))
    first = (await broker.http.get("/search", params={"q": "furnace"})).json()["results"]

    await register(broker, acme, registration(offering("temps", "Furnace temperatures, hourly")))
    again = (await broker.http.get("/search", params={"q": "furnace"})).json()["results"]

    assert [(hit["offering"]["id"], hit["offering"]["dataset_id"]) for hit in first] == [("temps", "ds-1")]
    assert [(hit["offering"]["title"], hit["offering"]["dataset_id"]) for hit in again] == [
        ("Furnace temperatures, hourly", "ds-1")
    ]


async def test_registering_again_replaces_the_offerings(broker: RunningBroker) -> None:
    acme = await broker.admit("acme")
    await register(broker, acme, registration(offering("a", "A"), offering("b", "B")))

    response = await register(broker, acme, registration(offering("c", "C"), title="Renamed"))

    assert response.status_code == 200
    assert response.json()["title"] == "Renamed"
    assert [o["id"] for o in response.json()["offerings"]] == ["c"]


async def test_another_participants_token_is_forbidden_and_changes_nothing(broker: RunningBroker) -> None:
    acme, globex = await broker.admit("acme"), await broker.admit("globex")
    await register(broker, acme, registration(offering("a", "A")))

    response = await register(broker, acme, registration(offering("evil", "Evil")), as_=globex)
    deleted = await broker.http.delete(
        f"/registrations/{acme.id}", headers={"Authorization": f"Bearer {await broker.token(globex)}"}
    )

    assert response.status_code == 403
    assert response.headers["content-type"] == "application/problem+json"
    assert deleted.status_code == 403
    assert [o["id"] for o in (await broker.http.get(f"/registrations/{acme.id}")).json()["offerings"]] == ["a"]


async def test_registration_needs_a_token_for_the_broker(broker: RunningBroker) -> None:
    acme, globex = await broker.admit("acme"), await broker.admit("globex")
    token_for_globex = await broker.token(acme, audience=globex.id)

    without = await broker.http.put(f"/registrations/{acme.id}", json=registration())
    wrong_audience = await broker.http.put(
        f"/registrations/{acme.id}", json=registration(), headers={"Authorization": f"Bearer {token_for_globex}"}
    )

    assert without.status_code == 401
    assert wrong_audience.status_code == 401
    assert (await broker.http.get(f"/registrations/{acme.id}")).status_code == 404


async def test_suspended_participant_may_not_register(broker: RunningBroker) -> None:
    acme = await broker.admit("acme")
    token = await broker.token(acme)
    await set_suspended(broker.db, acme.id, True)

    response = await broker.http.put(
        f"/registrations/{acme.id}", json=registration(), headers={"Authorization": f"Bearer {token}"}
    )

    assert response.status_code == 403


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "body"),
        (b"[]", "body"),
        ({"endpoint": "https://acme.example/dsp", "offerings": []}, "title"),
        ({**registration(), "endpoint": "ftp://acme.example"}, "endpoint"),
        (registration({"title": "no id"}), "offerings.0.id"),
        (registration({**offering("a", "A"), "keywords": "energy"}), "offerings.0.keywords"),
        (registration(offering("a", "A"), offering("a", "again")), "unique"),
        ({**registration(), "surprise": 1}, "surprise"),
    ],
)
async def test_malformed_registration_is_a_400_naming_the_field(broker: RunningBroker, body: Any, field: str) -> None:
    acme = await broker.admit("acme")
    await register(broker, acme, registration(offering("kept", "Kept")))
    headers = {"Authorization": f"Bearer {await broker.token(acme)}", "Content-Type": "application/json"}

    content = body if isinstance(body, bytes) else None
    response = await broker.http.put(
        f"/registrations/{acme.id}", content=content, json=None if content else body, headers=headers
    )

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert field in response.json()["detail"]
    stored = (await broker.http.get(f"/registrations/{acme.id}")).json()
    assert [o["id"] for o in stored["offerings"]] == ["kept"]


async def test_oversized_registration_is_a_413(broker: RunningBroker) -> None:
    acme = await broker.admit("acme")
    body = registration(*[offering(f"o{i}", "T", description="x" * 8000) for i in range(MAX_BODY_BYTES // 8000 + 1)])

    response = await register(broker, acme, body)

    assert response.status_code == 413
    assert (await broker.http.get(f"/registrations/{acme.id}")).status_code == 404


async def test_oversized_chunked_registration_is_a_413(broker: RunningBroker) -> None:
    acme = await broker.admit("acme")
    headers = {"Authorization": f"Bearer {await broker.token(acme)}"}

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            yield b" " * 65536

    response = await broker.http.put(f"/registrations/{acme.id}", content=chunks(), headers=headers)

    assert response.status_code == 413


async def test_unregister_removes_the_entries(broker: RunningBroker) -> None:
    acme = await broker.admit("acme")
    await register(broker, acme, registration(offering("a", "Furnace")))

    response = await broker.http.delete(
        f"/registrations/{acme.id}", headers={"Authorization": f"Bearer {await broker.token(acme)}"}
    )

    assert response.status_code == 204
    assert (await broker.http.get(f"/registrations/{acme.id}")).status_code == 404
    found = (await broker.http.get("/search", params={"q": "furnace"})).json()
    assert (found["total"], found["results"]) == (0, [])


@pytest.fixture
async def catalogue(broker: RunningBroker) -> RunningBroker:
    acme, globex = await broker.admit("acme"), await broker.admit("globex")
    await register(
        broker,
        acme,
        registration(
            offering("temps", "Furnace temperatures", "energy", "steel"),
            offering("power", "Power draw", "Energy", description="Hourly electricity use"),
        ),
    )
    await register(broker, globex, registration(offering("orders", "Open orders", "logistics", "50%_off")))
    return broker


async def search(broker: RunningBroker, **params: Any) -> list[tuple[str, str]]:
    response = await broker.http.get("/search", params=params)
    assert response.status_code == 200
    body = response.json()
    assert body["total"] >= len(body["results"])
    return [(r["participant_id"].removeprefix("urn:tessera:"), r["offering"]["id"]) for r in body["results"]]


async def test_search_text_matches_title_description_and_keywords(catalogue: RunningBroker) -> None:
    assert await search(catalogue, q="FURNACE") == [("acme", "temps")]
    assert await search(catalogue, q="electricity") == [("acme", "power")]
    assert await search(catalogue, q="logist") == [("globex", "orders")]
    assert await search(catalogue, q="energy hourly") == [("acme", "power")]
    assert await search(catalogue, q="") == [("acme", "power"), ("acme", "temps"), ("globex", "orders")]


async def test_search_text_is_never_query_syntax(catalogue: RunningBroker) -> None:
    assert await search(catalogue, q="%") == []
    assert await search(catalogue, q='furnace OR "') == []
    assert await search(catalogue, q="title:furnace") == []
    assert await search(catalogue, q="furnace*") == [("acme", "temps")]


async def test_search_filters_by_participant_and_keyword(catalogue: RunningBroker) -> None:
    assert await search(catalogue, participant="urn:tessera:globex") == [("globex", "orders")]
    assert await search(catalogue, keyword="ENERGY") == [("acme", "power"), ("acme", "temps")]
    assert await search(catalogue, keyword="ener") == []
    assert await search(catalogue, keyword="energy", q="furnace") == [("acme", "temps")]


async def test_search_pages_with_limit_and_offset(catalogue: RunningBroker) -> None:
    response = await catalogue.http.get("/search", params={"limit": 1, "offset": 1})

    assert response.json()["total"] == 3
    assert [r["offering"]["id"] for r in response.json()["results"]] == ["temps"]
    assert response.json()["results"][0]["endpoint"] == "https://acme.example/dsp"


async def test_search_hides_suspended_participants(catalogue: RunningBroker) -> None:
    await set_suspended(catalogue.db, "urn:tessera:acme", True)

    assert await search(catalogue) == [("globex", "orders")]


@pytest.mark.parametrize("params", [{"limit": "0"}, {"limit": "1000"}, {"offset": "-1"}, {"q": "x" * 300}])
async def test_search_with_bad_parameters_is_a_400(broker: RunningBroker, params: dict[str, str]) -> None:
    response = await broker.http.get("/search", params=params)

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
