"""Operator actions, feeds, quotas and quality feedback, through real HTTP and the CLI.

The operator commands write the broker's database directly, as `tessera broker delete-entry` does on the
broker's host, while the broker keeps serving.
"""

import asyncio
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import typer
from typer.testing import CliRunner

from broker.app import create_app
from broker.cli import register as register_commands
from tests.broker.conftest import RunningBroker, broker_config
from tests.broker.test_registry import offering, register, registration
from tests.utils import run_server, unused_port


def tessera(*args: str) -> tuple[int, str, str]:
    app = typer.Typer()
    register_commands(app)
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


async def operator(broker: RunningBroker, *args: str) -> tuple[int, str, str]:
    broker.config.save()
    return await asyncio.to_thread(tessera, *args, "--broker-dir", str(broker.config.directory))


async def test_force_deleted_entry_is_gone_with_its_reason_and_logged(broker: RunningBroker) -> None:
    acme = await broker.admit("acme")
    code = (await register(broker, acme, registration(offering("a", "Furnace")))).json()["offerings"][0]["product_code"]

    done = await operator(broker, "broker", "delete-entry", acme.id, "--reason", "connector decommissioned")

    assert done[0] == 0, done[2]
    gone = await broker.http.get(f"/registrations/{acme.id}")
    assert gone.status_code == 410
    assert "connector decommissioned" in gone.json()["detail"]
    assert (await broker.http.get("/search", params={"q": "furnace"})).json()["total"] == 0
    assert (await broker.http.get(f"/products/{code}")).json()["status"] == "CANCELLED"
    status, out, err = await operator(broker, "broker", "events", "--json", "--participant", acme.id)
    assert status == 0, err
    logged = json.loads(out)
    actions = [e["action"] for e in logged]
    assert actions == ["participant.added", "registration.created", "offering.added", "entry.force_deleted"]
    assert logged[-1]["detail"] == {"reason": "connector decommissioned"}
    assert logged[-1]["actor"] == "operator"


async def test_force_deleted_offering_stays_out_when_pushed_again(broker: RunningBroker) -> None:
    acme = await broker.admit("acme")
    await register(broker, acme, registration(offering("a", "Kept"), offering("b", "Spam")))

    done = await operator(broker, "broker", "delete-entry", acme.id, "--offering", "b", "--reason", "spam")
    again = await register(broker, acme, registration(offering("a", "Kept"), offering("b", "Spam")))

    assert done[0] == 0, done[2]
    assert again.json()["changes"]["withdrawn"] == ["b"]
    assert [o["id"] for o in again.json()["offerings"]] == ["a"]


async def test_delete_entry_of_an_unknown_participant_exits_with_2(broker: RunningBroker) -> None:
    code, _, err = await operator(broker, "broker", "delete-entry", "urn:tessera:nobody", "--reason", "x")

    assert code == 2
    assert "no registration" in err


async def test_admission_and_suspension_are_in_the_event_log(broker: RunningBroker) -> None:
    acme = await broker.admit("acme")

    await operator(broker, "participant", "suspend", acme.id)
    code, out, _ = await operator(broker, "broker", "events", "--json")

    assert code == 0
    assert [e["action"] for e in json.loads(out)] == ["participant.added", "participant.suspended"]


async def test_change_feed_pages_by_sequence_number(broker: RunningBroker) -> None:
    acme = await broker.admit("acme")
    await register(broker, acme, registration(offering("a", "A"), offering("b", "B")))
    await register(broker, acme, registration(offering("a", "A2")))

    first = (await broker.http.get("/changes", params={"limit": 2})).json()
    rest = (await broker.http.get("/changes", params={"since": first["next"]})).json()
    empty = (await broker.http.get("/changes", params={"since": rest["next"]})).json()

    actions = [e["action"] for e in first["events"] + rest["events"]]
    assert actions == [
        "participant.added",
        "registration.created",
        "offering.added",
        "offering.added",
        "registration.updated",
        "offering.changed",
        "offering.removed",
    ]
    assert first["more"] and not rest["more"]
    assert empty == {"events": [], "next": rest["next"], "more": False}


async def test_dcat_export_lists_searchable_offerings_with_their_product_codes(broker: RunningBroker) -> None:
    acme = await broker.admit("acme")
    body = registration(
        {**offering("a", "Furnace temperatures", "energy", description="Hourly"), "license": "CC-BY-4.0"},
        offering("b", "Power draw"),
        offering("c", "Orders"),
    )
    codes = [o["product_code"] for o in (await register(broker, acme, body)).json()["offerings"]]

    first = await broker.http.get("/catalog", params={"limit": 2})
    rest = await broker.http.get(first.json()["next"])

    assert first.headers["content-type"] == "application/ld+json"
    datasets = first.json()["dcat:dataset"] + rest.json()["dcat:dataset"]
    assert first.json()["@type"] == "dcat:Catalog"
    assert sorted(d["dct:identifier"] for d in datasets) == sorted(codes)
    furnace = next(d for d in datasets if d["dct:title"] == "Furnace temperatures")
    assert furnace["dct:license"] == "CC-BY-4.0"
    assert furnace["dcat:keyword"] == ["energy"]
    assert furnace["dcat:distribution"][0]["dcat:accessURL"] == {"@id": "https://acme.example/dsp"}
    assert "next" not in rest.json()


async def test_registration_answers_quality_feedback(broker: RunningBroker) -> None:
    acme = await broker.admit("acme")
    rich = {
        **offering("rich", "Furnace temperatures", "energy", description="Hourly readings of all furnaces"),
        "theme": "industry",
        "license": "CC-BY-4.0",
    }

    answer = (await register(broker, acme, registration(rich, offering("thin", "T")))).json()["quality"]

    thin = {(i["field"], i["severity"]) for i in answer["issues"] if i["offering"] == "thin"}
    assert ("description", "warning") in thin and ("license", "warning") in thin and ("title", "info") in thin
    assert not [i for i in answer["issues"] if i["offering"] == "rich"]
    assert 0 < answer["score"] < 100


async def test_blank_title_is_refused(broker: RunningBroker) -> None:
    acme = await broker.admit("acme")

    response = await register(broker, acme, registration(offering("a", "   ")))

    assert response.status_code == 400
    assert "offerings.0.title" in response.json()["detail"]


async def test_health_reports_the_database_and_counts(broker: RunningBroker) -> None:
    body = (await broker.http.get("/health")).json()

    assert body == {"status": "ok", "crawler": "disabled", "entries": 0, "offerings": 0}


async def test_status_page_lists_every_connector(broker: RunningBroker) -> None:
    acme = await broker.admit("acme")
    await register(broker, acme, registration(offering("a", "<b>A</b>")))

    as_json = (await broker.http.get("/status")).json()["connectors"]
    as_html = await broker.http.get("/status", headers={"Accept": "text/html"})

    assert [(c["participant_id"], c["state"], c["offerings"]) for c in as_json] == [(acme.id, "ONLINE", 1)]
    assert as_html.headers["content-type"].startswith("text/html")
    assert acme.id in as_html.text


async def quota_broker(tmp_path: Path, **settings: Any) -> Any:
    port = unused_port()
    config = replace(broker_config(tmp_path / "quota", port), **settings)
    return config, port


async def test_write_quota_refuses_a_flood_with_429(tmp_path: Path, broker: RunningBroker) -> None:
    config, port = await quota_broker(tmp_path, registrations_per_minute=2)
    async with run_server(create_app(config, crawl=False), port=port) as url, httpx.AsyncClient(base_url=url) as http:
        flooding = RunningBroker(config, url, http, broker.db)
        from tessera.store import Database

        flooding.db = await Database.open(config.database_url)
        try:
            acme = await flooding.admit("acme")
            answers = [await register(flooding, acme, registration(offering("a", "A"))) for _ in range(3)]
        finally:
            await flooding.db.close()

    assert [a.status_code for a in answers] == [201, 200, 429]
    assert int(answers[2].headers["retry-after"]) >= 1
    assert answers[2].headers["content-type"] == "application/problem+json"


async def test_offering_quota_refuses_too_many_offerings_and_changes_nothing(
    tmp_path: Path, broker: RunningBroker
) -> None:
    config, port = await quota_broker(tmp_path, max_offerings=2)
    async with run_server(create_app(config, crawl=False), port=port) as url, httpx.AsyncClient(base_url=url) as http:
        from tessera.store import Database

        limited = RunningBroker(config, url, http, await Database.open(config.database_url))
        try:
            acme = await limited.admit("acme")
            kept = await register(limited, acme, registration(offering("a", "A")))
            refused = await register(limited, acme, registration(*[offering(str(i), "T") for i in range(3)]))
            stored = (await http.get(f"/registrations/{acme.id}")).json()
        finally:
            await limited.db.close()

    assert kept.status_code == 201
    assert refused.status_code == 429
    assert "at most 2" in refused.json()["detail"]
    assert [o["id"] for o in stored["offerings"]] == ["a"]


async def test_notice_period_keeps_a_new_product_in_notice(tmp_path: Path, broker: RunningBroker) -> None:
    config, port = await quota_broker(tmp_path, notice_period=3600)
    async with run_server(create_app(config, crawl=False), port=port) as url, httpx.AsyncClient(base_url=url) as http:
        from tessera.store import Database

        noticed = RunningBroker(config, url, http, await Database.open(config.database_url))
        try:
            acme = await noticed.admit("acme")
            code = (await register(noticed, acme, registration(offering("a", "A")))).json()["offerings"][0][
                "product_code"
            ]
            found = (await http.get(f"/products/{code}")).json()
        finally:
            await noticed.db.close()

    assert found["status"] == "IN_NOTICE"
    assert found["history"][0]["effective_at"] > found["history"][0]["at"]
