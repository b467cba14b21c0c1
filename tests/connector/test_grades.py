"""Rules by grade, connector-wide, whatever the offer says: core data never leaves the provider (hidden, or
only as aggregates), important data only to callers with a minimum verified security profile. Checked when
the catalog is served and published, when a contract is requested, and on every use.

Real broker tokens (`Dataspace.admit(..., security_profile=…)`), real connectors, real SQLite and Rego.
A rule that tightens after an agreement was made shows the per-use check: the provider restarts on a
stricter config and the next pull under the same agreement is denied, naming the rule.
"""

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from connector.config import ConnectorConfig, GradeRules
from policies.patterns import PatternUse, render
from tests.dataspace import Dataspace, Site, negotiate, publish, start_transfer, tessera

OPEN = "package tessera.usage.open\n\ndefault allow := true\n"
AGGREGATE = render(
    "tessera.usage.counts",
    [
        PatternUse.of(
            "aggregate_only",
            aggregate_group_by=["country"],
            aggregate_functions=["count"],
            aggregate_fields=[],
            min_group_size=1,
        )
    ],
)
COUNT = {"group_by": ["country"], "metrics": [{"fn": "count"}]}
HIDDEN = 'grades.core = "hidden": core data never leaves the provider (caller "urn:tessera:consumer")'
NEEDS_TRUST = 'grades.important_min_profile = "trust": important data needs "trust" or higher, caller has "base"'


async def provider_with(space: Dataspace, rules: GradeRules) -> Site:
    config = replace(await space.admit("provider"), grades=rules)
    config.save()
    return await space.start(config)


async def restart_with(site: Site, rules: GradeRules) -> None:
    site.config = replace(site.config, grades=rules)
    site.server.config = site.config
    await site.server.restart()


async def datasets(consumer: Site, provider: Site) -> list[str]:
    body = {"provider_url": provider.dsp_url, "provider_id": provider.id}
    catalog = await consumer.post("/catalog/request", body, expect=200)
    return [dataset["@id"] for dataset in catalog.get("dataset", [])]


async def pull(consumer: Site, agreement_id: str, query: dict[str, Any] | None = None) -> httpx.Response:
    transfer = await start_transfer(consumer, agreement_id)
    assert transfer["state"] == "STARTED", transfer
    params = {"query": json.dumps(query)} if query else {}
    return await consumer.api.get(f"/transfers/{transfer['id']}/data", params=params)


async def registered(space: Dataspace, provider: Site) -> set[str]:
    response = await provider.api.put("/registration", json={"title": "Provider"})
    assert response.status_code == 200, response.text
    return {offering["id"] for offering in response.json()["offerings"]}


async def test_important_data_goes_to_a_trusted_caller(space: Dataspace, people_csv: Path) -> None:
    provider = await provider_with(space, GradeRules())
    consumer = await space.start(await space.admit("consumer", security_profile="trust"))
    offer = await publish(provider, people_csv, policy=OPEN, classification="important")
    assert await datasets(consumer, provider) == [offer["asset_id"]]
    negotiation = await negotiate(consumer, provider, offer)
    assert negotiation["state"] == "FINALIZED", negotiation
    assert (await pull(consumer, negotiation["agreement_id"])).status_code == 200


async def test_important_data_is_kept_from_a_caller_below_the_minimum_profile(
    space: Dataspace, people_csv: Path
) -> None:
    provider = await provider_with(space, GradeRules())
    consumer = await space.start(await space.admit("consumer", security_profile="base"))
    offer = await publish(provider, people_csv, policy=OPEN, classification="important")
    general = await publish(provider, people_csv, policy=OPEN)
    assert await datasets(consumer, provider) == [general["asset_id"]]
    negotiation = await negotiate(consumer, provider, offer)  # asks by terms alone: the catalog had no offer
    assert negotiation["state"] == "TERMINATED"
    assert NEEDS_TRUST in negotiation["reasons"]
    explained = await provider.post("/explain/offer", {"participant_id": consumer.id, "offer_id": offer["id"]}, 200)
    assert explained["allow"] is False and explained["reasons"] == [NEEDS_TRUST]


async def test_every_use_is_checked_against_the_rules_whatever_the_agreement_says(
    space: Dataspace, people_csv: Path
) -> None:
    provider = await provider_with(space, GradeRules(important_min_profile="base"))
    consumer = await space.start(await space.admit("consumer", security_profile="base"))
    offer = await publish(provider, people_csv, policy=OPEN, classification="important")
    negotiation = await negotiate(consumer, provider, offer)
    agreement_id = negotiation["agreement_id"]
    assert (await pull(consumer, agreement_id)).status_code == 200

    await restart_with(provider, GradeRules(important_min_profile="trust"))
    denied = await pull(consumer, agreement_id)
    assert denied.status_code == 403
    assert denied.json()["reasons"] == [NEEDS_TRUST]  # the agreement and its module allow: only the rule denies
    explained = await provider.post("/explain/use", {"agreement_id": agreement_id}, 200)
    assert explained["allow"] is False and explained["reasons"] == [NEEDS_TRUST]
    entries = (await provider.api.get("/audit", params={"subject": agreement_id})).json()["items"]
    assert [e["details"]["reasons"] for e in entries if e["action"] == "usage.denied"] == [[NEEDS_TRUST]]


async def test_core_data_never_leaves_the_provider_by_default(space: Dataspace, people_csv: Path) -> None:
    provider = await provider_with(space, GradeRules())
    consumer = await space.start(await space.admit("consumer", security_profile="trust_plus"))
    core = await publish(provider, people_csv, policy=OPEN, classification="core")
    counted = await publish(provider, people_csv, policy=AGGREGATE, classification="core")
    general = await publish(provider, people_csv, policy=OPEN)
    assert await datasets(consumer, provider) == [general["asset_id"]]
    assert await registered(space, provider) == {general["id"]}  # the broker never learns of core data
    for offer in (core, counted):
        negotiation = await negotiate(consumer, provider, offer)
        assert negotiation["state"] == "TERMINATED" and HIDDEN in negotiation["reasons"]


async def test_core_data_may_be_offered_for_aggregates_only(space: Dataspace, people_csv: Path) -> None:
    provider = await provider_with(space, GradeRules(core="aggregate_only"))
    consumer = await space.start(await space.admit("consumer", security_profile="trust_plus"))
    raw = await publish(provider, people_csv, policy=OPEN, classification="core")
    counted = await publish(provider, people_csv, policy=AGGREGATE, classification="core")
    assert await datasets(consumer, provider) == [counted["asset_id"]]
    assert await registered(space, provider) == {counted["id"]}
    refused = await negotiate(consumer, provider, raw)
    assert refused["state"] == "TERMINATED"
    assert refused["reasons"] == [
        'grades.core = "aggregate_only": core data is offered only under an aggregate-only policy'
    ]

    negotiation = await negotiate(consumer, provider, counted)
    agreement_id = negotiation["agreement_id"]
    answer = await pull(consumer, agreement_id, COUNT)
    assert answer.status_code == 200, answer.text
    assert sorted(row["country"] for row in answer.json()) == ["DE", "FI", "US"]

    await restart_with(provider, GradeRules(core="hidden"))
    denied = await pull(consumer, agreement_id, COUNT)
    assert denied.status_code == 403 and denied.json()["reasons"] == [HIDDEN]


def test_the_rules_take_only_known_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"grades\.core must be one of"):
        GradeRules(core="sometimes")
    with pytest.raises(ValueError, match=r"important_min_profile must be one of .*'trust_plus'"):
        GradeRules(important_min_profile="trusted")
    config = ConnectorConfig(
        directory=tmp_path, participant_id="urn:tessera:p", url="http://127.0.0.1:1", broker_url="http://127.0.0.1:2"
    )
    config.save()
    assert ConnectorConfig.load(tmp_path).grades == GradeRules(core="hidden", important_min_profile="trust")


async def test_connector_init_writes_the_rules_and_refuses_bad_ones(tmp_path: Path) -> None:
    base = ["connector", "init", "--participant-id", "urn:tessera:p", "--url", "http://127.0.0.1:1"]
    base += ["--broker-url", "http://127.0.0.1:2"]
    code, _out, err = await tessera(*base, "--dir", str(tmp_path / "bad"), "--core-data", "sometimes")
    assert code == 2 and "grades.core must be one of ('hidden', 'aggregate_only')" in err
    code, _out, err = await tessera(
        *base, "--dir", str(tmp_path / "ok"), "--core-data", "aggregate_only", "--important-min-profile", "trust_plus"
    )
    assert code == 0, err
    loaded = ConnectorConfig.load(tmp_path / "ok")
    assert loaded.grades == GradeRules(core="aggregate_only", important_min_profile="trust_plus")
