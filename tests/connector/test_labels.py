"""Data labels end to end: validated by the management API, stored, shown in the DSP catalog (still valid
DSP) and counted in the broker's facets, read by usage policies as `input.asset` and `input.artifact`,
and carried by derived data (aggregates, the consumer's copies and what it offers on).

Real broker, real connectors on loopback ports, real SQLite, the real Rego engine. The rules by grade
and across borders are tests/connector/test_grades.py and test_cross_border.py; the label values
themselves tests/tessera/test_labels.py.
"""

import itertools
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from policies.patterns import PatternUse, render
from tests.dataspace import Dataspace, Site, negotiate, publish, start_transfer
from tests.dsp_schemas import validate_message

TESSERA = "https://w3id.org/tessera/v1/"
LABELS = {
    "classification": "important",
    "category": "health",
    "personal_information": True,
    "home_jurisdiction": "DE",
}
OPEN = "package tessera.usage.open\n\ndefault allow := true\n"


async def test_an_asset_keeps_its_labels_and_the_api_shows_them(provider: Site, people_csv: Path) -> None:
    body = {"title": "People", "format": "csv", "path": str(people_csv), **LABELS, "state": "draft"}
    created = await provider.post("/assets", body)
    shown = (await provider.api.get(f"/assets/{created['id']}")).json()
    assert {k: shown[k] for k in (*LABELS, "state")} == LABELS | {"state": "draft"}
    assert created == shown


async def test_an_unlabelled_asset_is_general_released_and_has_no_home(provider: Site, people_csv: Path) -> None:
    created = await provider.post("/assets", {"title": "People", "format": "csv", "path": str(people_csv)})
    assert {k: created[k] for k in (*LABELS, "state")} == {
        "classification": "general",
        "category": None,
        "personal_information": False,
        "home_jurisdiction": None,
        "state": "released",
    }


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("classification", "secret", "'general', 'important' or 'core'"),
        ("classification", "General", "'general', 'important' or 'core'"),
        ("home_jurisdiction", "XX", "ISO 3166-1 alpha-2 country code in upper case"),
        ("home_jurisdiction", "cn", "ISO 3166-1 alpha-2 country code in upper case"),
        ("home_jurisdiction", "CHN", "ISO 3166-1 alpha-2 country code in upper case"),
        ("personal_information", "maybe", "valid boolean"),
        ("category", "no spaces here", "sector code"),
        ("state", "published", "'draft', 'released', 'deprecated' or 'withdrawn'"),
    ],
)
async def test_a_bad_label_is_a_400_naming_the_field_and_the_allowed_values(
    provider: Site, people_csv: Path, field: str, value: Any, allowed: str
) -> None:
    body = {"title": "People", "format": "csv", "path": str(people_csv), field: value}
    response = await provider.api.post("/assets", json=body)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    [reason] = response.json()["reasons"]
    assert reason.startswith(f"{field}: ") and allowed in reason
    assert (await provider.api.get("/assets")).json()["items"] == []  # nothing half-written


async def test_the_catalog_shows_the_labels_and_still_validates_as_dsp(
    provider: Site, consumer: Site, people_csv: Path
) -> None:
    offer = await publish(provider, people_csv, policy=OPEN, **LABELS | {"classification": "general"})
    catalog = await consumer.post(
        "/catalog/request", {"provider_url": provider.dsp_url, "provider_id": provider.id}, expect=200
    )
    assert validate_message(catalog) == []
    [dataset] = catalog["dataset"]
    assert {k: v for k, v in dataset.items() if k.startswith(TESSERA)} == {
        TESSERA + "classification": "general",
        TESSERA + "category": "health",
        TESSERA + "personalInformation": True,
        TESSERA + "homeJurisdiction": "DE",
        TESSERA + "artifactState": "released",
    }
    token = await consumer.token_for(provider.id)
    async with httpx.AsyncClient() as http:
        response = await http.get(
            f"{provider.dsp_url}/catalog/datasets/{offer['asset_id']}", headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 200
    assert validate_message(response.json() | {"@type": "Dataset"}) == []
    assert response.json()[TESSERA + "personalInformation"] is True


async def test_an_unlabelled_dataset_shows_only_the_labels_it_has(
    provider: Site, consumer: Site, people_csv: Path
) -> None:
    await publish(provider, people_csv, policy=OPEN)
    catalog = await consumer.post(
        "/catalog/request", {"provider_url": provider.dsp_url, "provider_id": provider.id}, expect=200
    )
    [dataset] = catalog["dataset"]
    assert {k for k in dataset if k.startswith(TESSERA)} == {
        TESSERA + "classification",
        TESSERA + "personalInformation",
        TESSERA + "artifactState",
    }
    assert validate_message(catalog) == []


async def test_the_broker_counts_classification_and_category_in_its_facets(
    space: Dataspace, provider: Site, people_csv: Path
) -> None:
    for classification, category in [("general", "health"), ("important", "health"), ("important", "energy")]:
        await publish(provider, people_csv, policy=OPEN, classification=classification, category=category)
    registered = await provider.api.put("/registration", json={"title": "Provider"})
    assert registered.status_code == 200, registered.text
    async with httpx.AsyncClient(base_url=space.broker_url) as broker:
        everything = (await broker.get("/search")).json()
        important = (await broker.get("/search", params={"classification": "important"})).json()
    assert everything["facets"]["classification"] == [
        {"value": "important", "count": 2},
        {"value": "general", "count": 1},
    ]
    assert everything["facets"]["theme"] == [{"value": "health", "count": 2}, {"value": "energy", "count": 1}]
    assert important["total"] == 2
    assert {r["offering"]["classification"] for r in important["results"]} == {"important"}


# -- labels reach the policies ---------------------------------------------------------------------------


async def agreed(consumer: Site, provider: Site, offer: dict[str, Any]) -> str:
    """Negotiate `offer` and start a pull; the transfer id."""
    negotiation = await negotiate(consumer, provider, offer)
    assert negotiation["state"] == "FINALIZED", negotiation
    transfer = await start_transfer(consumer, negotiation["agreement_id"])
    assert transfer["state"] == "STARTED", transfer
    return str(transfer["id"])


async def pull(consumer: Site, transfer_id: str, query: dict[str, Any] | None = None) -> httpx.Response:
    params = {"query": json.dumps(query)} if query else {}
    return await consumer.api.get(f"/transfers/{transfer_id}/data", params=params)


_packages = itertools.count(1)


def module(*uses: PatternUse) -> str:
    return render(f"tessera.usage.labels_{next(_packages)}", list(uses))


async def test_the_classification_pattern_reads_the_assets_own_label(space: Dataspace, people_csv: Path) -> None:
    provider = await space.start(await space.admit("provider"))
    consumer = await space.start(await space.admit("consumer", security_profile="trust"))
    # The pattern says general data, profile trust_plus for important data; the rules by grade (trust) admit.
    policy = module(
        PatternUse.of("classification", classification_level="general", important_minimum_profile="trust_plus")
    )
    general = await publish(provider, people_csv, policy=policy, classification="general")
    important = await publish(provider, people_csv, policy=policy, classification="important")
    assert (await pull(consumer, await agreed(consumer, provider, general))).status_code == 200
    denied = await pull(consumer, await agreed(consumer, provider, important))
    assert denied.status_code == 403
    assert denied.json()["reasons"] == [
        'classification: important data needs security profile "trust_plus", caller has "trust"'
    ]


async def test_the_artifact_state_pattern_reads_the_assets_lifecycle(
    provider: Site, consumer: Site, people_csv: Path
) -> None:
    offer = await publish(
        provider, people_csv, policy=module(PatternUse.of("artifact_state", allowed_states=["released"]))
    )
    transfer_id = await agreed(consumer, provider, offer)
    assert (await pull(consumer, transfer_id)).status_code == 200
    changed = await provider.api.patch(f"/assets/{offer['asset_id']}", json={"state": "deprecated"})
    assert changed.status_code == 200 and changed.json()["state"] == "deprecated"
    denied = await pull(consumer, transfer_id)
    assert denied.status_code == 403
    assert denied.json()["reasons"] == [  # the agreement (compiled from the offer) and the bound module
        'agreement: tessera:artifactState isAnyOf ["released"] does not hold ("deprecated")',
        'artifact state: "deprecated" not in allowed states ["released"]',
    ]
    bad = await provider.api.patch(f"/assets/{offer['asset_id']}", json={"state": "gone"})
    assert bad.status_code == 400 and "'draft', 'released', 'deprecated' or 'withdrawn'" in bad.json()["detail"]


async def test_every_use_is_audited_with_the_assets_labels(provider: Site, consumer: Site, people_csv: Path) -> None:
    offer = await publish(provider, people_csv, policy=OPEN, category="health", personal_information=True)
    assert (await pull(consumer, await agreed(consumer, provider, offer))).status_code == 200
    entries = (await provider.api.get("/audit", params={"limit": 1000})).json()["items"]
    [use] = [e for e in entries if e["action"] == "usage.allowed"]
    assert use["details"]["asset"] == {
        "id": offer["asset_id"],
        "format": "csv",
        "classification": "general",
        "category": "health",
        "personal_information": True,
        "home_jurisdiction": None,
        "state": "released",
    }


async def test_explain_shows_the_labels_the_policy_reads(provider: Site, consumer: Site, people_csv: Path) -> None:
    offer = await publish(provider, people_csv, policy=OPEN, **LABELS | {"classification": "general"})
    negotiation = await negotiate(consumer, provider, offer)
    answer = await provider.post("/explain/use", {"agreement_id": negotiation["agreement_id"]}, 200)
    assert answer["input"]["asset"] == {"id": offer["asset_id"], "format": "csv", **LABELS, "classification": "general"}
    assert answer["input"]["artifact"] == {"state": "released"}


# -- derived data carries the strictest label of its inputs --------------------------------------------------


AGGREGATE = PatternUse.of(
    "aggregate_only",
    aggregate_group_by=["country"],
    aggregate_functions=["count"],
    aggregate_fields=[],
    min_group_size=1,
)


async def test_aggregates_and_copies_carry_the_labels_of_their_source(space: Dataspace, people_csv: Path) -> None:
    provider = await space.start(await space.admit("provider"))
    consumer = await space.start(await space.admit("consumer", security_profile="trust"))
    labels = LABELS | {"home_jurisdiction": None}
    records = await publish(provider, people_csv, policy=OPEN, **labels)
    aggregates = await publish(provider, people_csv, policy=module(AGGREGATE), **labels)
    raw = await pull(consumer, await agreed(consumer, provider, records))
    counted = await pull(
        consumer, await agreed(consumer, provider, aggregates), {"group_by": ["country"], "metrics": [{"fn": "count"}]}
    )
    for response in (raw, counted):
        assert response.status_code == 200, response.text
        assert json.loads(response.headers["Tessera-Labels"]) == labels
    copies = (await consumer.api.get("/copies")).json()["items"]
    assert [copy["labels"] for copy in copies] == [labels, labels]


async def test_a_copy_offered_on_keeps_its_sources_labels_or_stricter(space: Dataspace, people_csv: Path) -> None:
    provider = await space.start(await space.admit("provider"))
    # At home in the data's jurisdiction: not a cross-border use.
    consumer = await space.start(await space.admit("consumer", security_profile="trust", jurisdiction="DE"))
    offer = await publish(provider, people_csv, policy=OPEN, **LABELS)
    assert (await pull(consumer, await agreed(consumer, provider, offer))).status_code == 200
    [copy] = (await consumer.api.get("/copies")).json()["items"]
    base = {"title": "People, passed on", "format": "csv"}

    inherited = await consumer.post("/assets", base | {"copy_id": copy["id"]})
    assert {k: inherited[k] for k in LABELS} == LABELS
    by_path = await consumer.post("/assets", base | {"path": copy["path"]})  # the same copy, found by its file
    assert {k: by_path[k] for k in LABELS} == LABELS
    stricter = await consumer.post("/assets", base | {"copy_id": copy["id"], "classification": "core"})
    assert stricter["classification"] == "core"

    lower = await consumer.api.post("/assets", json=base | {"copy_id": copy["id"], "classification": "general"})
    assert lower.status_code == 400
    assert lower.json()["reasons"] == ["classification 'general' is lower than 'important'"]
    unmarked = await consumer.api.post("/assets", json=base | {"path": copy["path"], "personal_information": False})
    assert unmarked.status_code == 400
    assert unmarked.json()["reasons"] == ["personal_information is false, the source holds personal information"]
    moved = await consumer.api.post("/assets", json=base | {"copy_id": copy["id"], "home_jurisdiction": "FR"})
    assert moved.status_code == 400
    assert moved.json()["reasons"] == ["home_jurisdiction 'FR' is not the source's 'DE'"]
    missing = await consumer.api.post("/assets", json=base | {"copy_id": "urn:uuid:nothing"})
    assert missing.status_code == 404


async def test_a_pushed_copy_keeps_the_labels_too(space: Dataspace, people_csv: Path) -> None:
    provider = await space.start(await space.admit("provider"))
    consumer = await space.start(await space.admit("consumer", security_profile="trust"))
    labels = LABELS | {"home_jurisdiction": None}
    negotiation = await negotiate(consumer, provider, await publish(provider, people_csv, policy=OPEN, **labels))
    pushed = await start_transfer(consumer, negotiation["agreement_id"], until=("COMPLETED",), format="HttpData-PUSH")
    assert pushed["state"] == "COMPLETED", pushed
    [copy] = (await consumer.api.get("/copies")).json()["items"]
    assert copy["labels"] == labels


async def test_access_policies_read_the_labels_too(provider: Site, consumer: Site, people_csv: Path) -> None:
    access = (
        "package tessera.access.health\n\ndefault allow := false\n\n"
        'allow if {\n\tinput.asset.category == "health"\n\tinput.artifact.state == "released"\n}\n'
    )
    health = await publish(provider, people_csv, policy=OPEN, access=access, category="health")
    await publish(provider, people_csv, policy=OPEN, access=access, category="energy")
    await publish(provider, people_csv, policy=OPEN, access=access, category="health", state="draft")
    catalog = await consumer.post(
        "/catalog/request", {"provider_url": provider.dsp_url, "provider_id": provider.id}, expect=200
    )
    assert [dataset["@id"] for dataset in catalog["dataset"]] == [health["asset_id"]]
