"""Every library usage pattern enforced end to end: published, negotiated, pulled through real connectors.

Each test renders one pattern (`policies.patterns`) into the usage policy of a fresh offer, negotiates it
from a real consumer, starts a pull transfer and pulls through the consumer's management API: once with a
request the pattern admits, once with one it denies (where it can deny), checking the status, the
problem+json reasons and what the obligations did to the data. One data space serves the whole module.

The usage input carries the agreement, the caller's verified claims from its broker token (sub, org,
region, security_profile, jurisdiction, roles …), what the pull declares (purpose, event, request.query),
uses, now, the connector it came through, asset {id, format, labels} and artifact {state}. Patterns that
only add obligations (masked_fields, modify_in_transit, next_policy, log_usage) never deny; their tests
show what the obligation did.
The unit tests of the patterns are the Rego `_test.rego` files; tests/policies covers the engine.
"""

import asyncio
import csv
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from policies.patterns import PATTERNS, PatternUse, render
from tests.dataspace import Dataspace, Site, dataspace, negotiate, publish, start_transfer, write_people_csv
from tests.utils import run_server

pytestmark = pytest.mark.asyncio(loop_scope="module")

PEOPLE = [
    {"name": "Ada", "region": "EU-DE", "age": 36, "consent": "yes", "street": "Hauptstr. 1"},
    {"name": "Bea", "region": "EU-DE", "age": 41, "consent": "yes", "street": "Ringstr. 2"},
    {"name": "Cem", "region": "EU-DE", "age": 29, "consent": "no", "street": "Ufer 3"},
    {"name": "Dan", "region": "EU-DE", "age": 52, "consent": "yes", "street": "Markt 4"},
    {"name": "Eva", "region": "EU-DE", "age": 47, "consent": "yes", "street": "Allee 5"},
    {"name": "Fay", "region": "EU-FR", "age": 33, "consent": "yes", "street": "Rue 6"},
    {"name": "Gil", "region": "EU-FR", "age": 38, "consent": "no", "street": "Quai 7"},
    {"name": "Hal", "region": "EU-FR", "age": 25, "consent": "yes", "street": "Place 8"},
]
RECORDS = [
    {
        "name": p["name"],
        "email": f"{p['name'].lower()}@example.org",
        "phone": "+49 30 1234",
        "region": p["region"],
        "age": p["age"],
        "consent": p["consent"],
        "address": {"street": p["street"], "city": "Berlin"},
    }
    for p in PEOPLE
]
_packages = itertools.count(1)


@dataclass
class Space:
    """One broker, a provider, a consumer (region EU-FR, jurisdiction FR, role researcher, profile base) and
    an admitted third party."""

    provider: Site
    consumer: Site
    auditor_id: str
    records: Path
    people_csv: Path


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def space(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Space]:
    root = tmp_path_factory.mktemp("patterns")
    records = root / "records.json"
    records.write_text(json.dumps(RECORDS))
    async with dataspace(root / "space") as running:
        yield await _start(running, records, write_people_csv(root / "people.csv"))


async def _start(running: Dataspace, records: Path, people_csv: Path) -> Space:
    provider = await running.start(await running.admit("provider", region="EU-DE"))
    consumer = await running.start(
        await running.admit("consumer", region="EU-FR", jurisdiction="FR", roles=["researcher"])
    )
    auditor = await running.admit("auditor", region="EU-DE", security_profile="trust")
    return Space(provider, consumer, auditor.participant_id, records, people_csv)


@dataclass
class Agreed:
    """A started pull transfer under one rendered policy, seen from the consumer."""

    space: Space
    agreement_id: str
    transfer_id: str

    async def pull(
        self, purpose: str | None = "research", query: dict | None = None, event: str | None = None
    ) -> httpx.Response:
        declared = {"purpose": purpose, "query": query and json.dumps(query), "event": event}
        params = {k: v for k, v in declared.items() if v}
        return await self.space.consumer.api.get(f"/transfers/{self.transfer_id}/data", params=params)


async def agree(space: Space, *uses: PatternUse, data: Path | None = None) -> Agreed:
    """Publish an offer whose usage policy is `uses` rendered into one module; negotiate; start a pull."""
    source = render(f"tessera.usage.e2e_{next(_packages)}", list(uses))
    offer = await publish(space.provider, data or space.records, policy=source)
    negotiation = await negotiate(space.consumer, space.provider, offer)
    assert negotiation["state"] == "FINALIZED", negotiation
    transfer = await start_transfer(space.consumer, negotiation["agreement_id"])
    assert transfer["state"] == "STARTED", transfer
    return Agreed(space, negotiation["agreement_id"], transfer["id"])


def allowed(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json() if "json" in response.headers["content-type"] else response.text


def refused(response: httpx.Response) -> list[str]:
    """The bound module's reasons for a 403. The agreement, compiled from the same offer, denies the same
    request with reasons of its own (prefixed "agreement: "; tests/connector/test_usage_agreement.py)."""
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return [reason for reason in response.json()["reasons"] if not reason.startswith("agreement: ")]


def names(records: list[dict]) -> list[str]:
    return [r["name"] for r in records]


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


async def test_every_library_pattern_is_covered_here() -> None:
    tested = {name.removeprefix("test_").split("_pattern")[0] for name in globals() if name.endswith("_pattern")}
    assert tested == set(PATTERNS)


# -- who may use the data ---------------------------------------------------------------------------------


async def test_consumer_pattern(space: Space) -> None:
    ok = await agree(space, PatternUse.of("consumer", allowed_consumers=[space.consumer.id]))
    assert names(allowed(await ok.pull())) == names(RECORDS)
    other = await agree(space, PatternUse.of("consumer", allowed_consumers=["urn:tessera:someone-else"]))
    assert refused(await other.pull()) == [
        'consumer: "urn:tessera:consumer" not in allowed consumers ["urn:tessera:someone-else"]'
    ]


async def test_connector_pattern(space: Space) -> None:
    # connector.id is the consumer connector's DSP address (the transfer's callback address).
    ok = await agree(space, PatternUse.of("connector", allowed_connectors=[space.consumer.dsp_url]))
    assert names(allowed(await ok.pull())) == names(RECORDS)
    other = await agree(space, PatternUse.of("connector", allowed_connectors=[space.consumer.config.url]))
    assert refused(await other.pull()) == [
        f'connector: "{space.consumer.dsp_url}" not in allowed connectors ["{space.consumer.config.url}"]'
    ]


async def test_role_pattern(space: Space) -> None:
    ok = await agree(space, PatternUse.of("role", required_roles=["researcher", "auditor"]))
    assert len(allowed(await ok.pull())) == len(RECORDS)
    other = await agree(space, PatternUse.of("role", required_roles=["auditor"]))
    assert refused(await other.pull()) == ['role: caller roles ["researcher"] hold none of ["auditor"]']


async def test_regions_pattern(space: Space) -> None:
    ok = await agree(space, PatternUse.of("regions", allowed_regions=["EU-FR", "EU-NL"]))
    assert len(allowed(await ok.pull())) == len(RECORDS)
    other = await agree(space, PatternUse.of("regions", allowed_regions=["EU-DE"]))
    assert refused(await other.pull()) == ['region: "EU-FR" not in allowed regions ["EU-DE"]']


async def test_cross_border_pattern(space: Space) -> None:
    ok = await agree(space, PatternUse.of("cross_border", home_jurisdiction="DE", allowed_jurisdictions=["FR"]))
    assert len(allowed(await ok.pull())) == len(RECORDS)
    other = await agree(space, PatternUse.of("cross_border", home_jurisdiction="DE", allowed_jurisdictions=["CH"]))
    assert refused(await other.pull()) == [
        'jurisdiction: "FR" is neither home "DE" nor in allowed jurisdictions ["CH"]'
    ]


async def test_security_profile_pattern(space: Space) -> None:
    ok = await agree(space, PatternUse.of("security_profile", minimum_security_profile="base"))
    assert len(allowed(await ok.pull())) == len(RECORDS)
    strict = await agree(space, PatternUse.of("security_profile", minimum_security_profile="trust"))
    assert refused(await strict.pull()) == [
        'security profile: "base" below minimum "trust" (levels ["base","trust","trust_plus"])'
    ]


async def test_classification_pattern(space: Space) -> None:
    general = await agree(space, PatternUse.of("classification", classification_level="general"))
    assert len(allowed(await general.pull())) == len(RECORDS)
    important = await agree(space, PatternUse.of("classification", classification_level="important"))
    assert refused(await important.pull()) == [
        'classification: important data needs security profile "trust", caller has "base"'
    ]
    core = await agree(space, PatternUse.of("classification", classification_level="core"))
    assert refused(await core.pull()) == [
        'classification: core data never leaves the provider "urn:tessera:provider" (caller "urn:tessera:consumer")'
    ]


# -- what for, when, how often ----------------------------------------------------------------------------


async def test_purpose_pattern(space: Space) -> None:
    agreed = await agree(space, PatternUse.of("purpose", allowed_purposes=["research", "statistics"]))
    assert len(allowed(await agreed.pull("statistics"))) == len(RECORDS)
    assert refused(await agreed.pull("marketing")) == [
        'purpose: "marketing" not in allowed purposes ["research","statistics"]'
    ]
    assert refused(await agreed.pull(None)) == ['purpose: null not in allowed purposes ["research","statistics"]']


async def test_event_pattern(space: Space) -> None:
    # The pull declares the event in progress (?event=…), as it declares its purpose.
    agreed = await agree(space, PatternUse.of("event", allowed_events=["incident-response"]))
    assert len(allowed(await agreed.pull(event="incident-response"))) == len(RECORDS)
    assert refused(await agreed.pull(event="audit")) == ['event: "audit" not in allowed events ["incident-response"]']
    assert refused(await agreed.pull()) == ['event: null not in allowed events ["incident-response"]']


async def test_artifact_state_pattern(space: Space) -> None:
    # input.artifact.state is the asset's lifecycle state (released unless set otherwise).
    agreed = await agree(space, PatternUse.of("artifact_state", allowed_states=["released"]))
    assert len(allowed(await agreed.pull())) == len(RECORDS)
    asset_id = (await space.provider.api.get(f"/agreements/{agreed.agreement_id}")).json()["target"]
    await space.provider.api.patch(f"/assets/{asset_id}", json={"state": "withdrawn"})
    assert refused(await agreed.pull()) == ['artifact state: "withdrawn" not in allowed states ["released"]']


async def test_time_window_pattern(space: Space) -> None:
    now = datetime.now(UTC)
    window = {"not_before": rfc3339(now - timedelta(hours=1)), "not_after": rfc3339(now + timedelta(hours=1))}
    ok = await agree(space, PatternUse.of("time_window", **window))
    assert len(allowed(await ok.pull())) == len(RECORDS)
    past = {"not_before": "2020-01-01T00:00:00Z", "not_after": "2021-01-01T00:00:00Z"}
    over = await agree(space, PatternUse.of("time_window", **past))
    (reason,) = refused(await over.pull())
    assert reason.startswith("time interval: now ") and reason.endswith(
        ' is not before not_after "2021-01-01T00:00:00Z"'
    )
    future = {"not_before": "2100-01-01T00:00:00Z", "not_after": "2101-01-01T00:00:00Z"}
    (reason,) = refused(await (await agree(space, PatternUse.of("time_window", **future))).pull())
    assert reason.endswith(' is before not_before "2100-01-01T00:00:00Z"')


async def test_duration_pattern(space: Space) -> None:
    ok = await agree(space, PatternUse.of("duration", max_duration_seconds=3600))
    assert len(allowed(await ok.pull())) == len(RECORDS)
    expired = await agree(space, PatternUse.of("duration", max_duration_seconds=0))
    (reason,) = refused(await expired.pull())
    agreement = (await space.consumer.api.get(f"/agreements/{expired.agreement_id}")).json()["agreement"]
    assert reason.startswith("duration: ") and reason.endswith(
        f" s elapsed since the agreement at {json.dumps(agreement['timestamp'])}, limit 0 s"
    )


async def test_max_uses_pattern(space: Space) -> None:
    agreed = await agree(space, PatternUse.of("max_uses", max_uses=2))
    for _ in range(2):
        allowed(await agreed.pull())
    assert refused(await agreed.pull()) == ["uses: 2 uses consumed, limit 2"]
    counters = {c["agreement_id"]: c for c in (await space.provider.api.get("/usage")).json()["items"]}
    assert (counters[agreed.agreement_id]["uses"], counters[agreed.agreement_id]["denials"]) == (2, 1)


# -- what happens to the data -----------------------------------------------------------------------------


async def test_masked_fields_pattern(space: Space) -> None:
    agreed = await agree(space, PatternUse.of("masked_fields", masked_fields=["email", "phone"]), data=space.people_csv)
    response = await agreed.pull()
    table = list(csv.DictReader(allowed(response).splitlines()))
    assert list(table[0]) == ["name", "country", "age"]  # the CSV header loses the masked column too
    assert response.headers["tessera-masked-fields"] == "email,phone"


async def test_modify_in_transit_pattern(space: Space) -> None:
    use = PatternUse.of(
        "modify_in_transit",
        masked_paths=["email", "$.address.city"],
        replacements=[{"path": "$.address.street", "value": "***"}, {"path": "phone", "value": None}],
        drop_rows=[{"field": "consent", "op": "neq", "value": "yes"}, {"field": "age", "op": "gt", "value": 50}],
    )
    agreed = await agree(space, use)
    received = allowed(await agreed.pull())
    kept = [r for r in RECORDS if r["consent"] == "yes" and r["age"] <= 50]
    assert received == [
        {"name": r["name"], "phone": None, "region": r["region"], "age": r["age"], "consent": "yes"}
        | {"address": {"street": "***"}}
        for r in kept
    ]


AGGREGATE = PatternUse.of(
    "aggregate_only",
    aggregate_group_by=["region"],
    aggregate_functions=["avg", "count"],
    aggregate_fields=["age"],
    min_group_size=5,
)


async def test_aggregate_only_pattern(space: Space) -> None:
    agreed = await agree(space, AGGREGATE)
    query = {"group_by": ["region"], "metrics": [{"fn": "avg", "field": "age"}, {"fn": "count"}]}
    germany = [p["age"] for p in PEOPLE if p["region"] == "EU-DE"]
    # EU-FR has 3 people, fewer than k = 5: its group is left out of the result.
    assert allowed(await agreed.pull(query=query)) == [
        {"region": "EU-DE", "avg_age": sum(germany) / len(germany), "count": len(germany)}
    ]
    by_name = {"group_by": ["name"], "metrics": [{"fn": "max", "field": "email"}]}
    assert refused(await agreed.pull(query=by_name)) == [
        'aggregate: field "email" not in allowed ["age"]',
        'aggregate: function "max" not in allowed ["avg","count"]',
        'aggregate: group_by "name" not in allowed ["region"]',
    ]


async def test_compute_to_data_pattern(space: Space) -> None:
    params = {"compute_group_by": ["region"], "compute_aggregate_only": ["age"], "min_group_size": 5}
    agreed = await agree(space, PatternUse.of("compute_to_data", **params))
    sql = "SELECT region, count(*) AS n, avg(age) AS avg_age FROM data GROUP BY region"
    answer = await space.consumer.api.post(f"/agreements/{agreed.agreement_id}/query", json={"sql": sql})
    germany = [p["age"] for p in PEOPLE if p["region"] == "EU-DE"]
    # EU-FR has 3 people, fewer than k = 5: its group is left out (docs/compute.md).
    assert allowed(answer)["rows"] == [{"region": "EU-DE", "n": len(germany), "avg_age": sum(germany) / len(germany)}]
    assert refused(await agreed.pull()) == ["compute: raw access is not allowed; send a query (input.request.query)"]
    # A plan the consumer wrote itself satisfies the pattern, never the obligation: the file stays home.
    plan = {"tables": ["data"], "columns": [], "aggregates": [], "group_by": [], "filters": [], "raw": False}
    assert refused(await agreed.pull(query=plan)) == [
        "obligation cannot be carried out: compute-to-data: send a query (tessera query); raw records never leave"
    ]


# -- duties beside the data -------------------------------------------------------------------------------


async def test_delete_after_pattern(space: Space) -> None:
    agreed = await agree(space, PatternUse.of("delete_after", delete_after_seconds=600, delete_by=""))
    before = datetime.now(UTC).replace(microsecond=0)
    response = await agreed.pull()
    allowed(response)
    deadline = datetime.fromisoformat(response.headers["tessera-delete-after"])
    assert timedelta(seconds=599) <= deadline - before <= timedelta(seconds=610)
    copies = (await space.consumer.api.get("/copies")).json()["items"]
    (copy,) = [c for c in copies if c["transfer_id"] == agreed.transfer_id]
    assert copy["delete_at"] == response.headers["tessera-delete-after"]  # the consumer will delete its copy

    by_date = await agree(
        space, PatternUse.of("delete_after", delete_after_seconds=None, delete_by="2100-01-01T00:00:00Z")
    )
    response = await by_date.pull()
    allowed(response)
    assert response.headers["tessera-delete-after"] == "2100-01-01T00:00:00Z"
    passed = await agree(
        space, PatternUse.of("delete_after", delete_after_seconds=None, delete_by="2021-01-01T00:00:00Z")
    )
    (reason,) = refused(await passed.pull())
    assert reason.startswith("delete after: now ") and reason.endswith(
        ' is not before delete_by "2021-01-01T00:00:00Z"'
    )


async def test_next_policy_pattern(space: Space) -> None:
    policy_hash = "sha256:" + "ab" * 32
    agreed = await agree(
        space, PatternUse.of("next_policy", next_policy_id="third-party", next_policy_hash=policy_hash)
    )
    response = await agreed.pull()
    assert len(allowed(response)) == len(RECORDS)
    assert json.loads(response.headers["tessera-next-policy"]) == {"policy": "third-party", "hash": policy_hash}


async def test_log_usage_pattern(space: Space) -> None:
    agreed = await agree(space, PatternUse.of("log_usage", log_event="audited-read"))
    for _ in range(2):
        allowed(await agreed.pull())
    entries = (await space.provider.api.get("/audit", params={"subject": agreed.agreement_id})).json()["items"]
    logged = [e for e in entries if e["action"] == "usage.logged"]
    assert [e["details"]["event"] for e in logged] == ["audited-read", "audited-read"]
    assert {e["details"]["transfer"] for e in logged} == {_provider_pid(entries)}


def _provider_pid(entries: list[dict]) -> str:
    (transfer,) = {e["details"]["transfer"] for e in entries if e["action"] == "usage.allowed"}
    return transfer


async def test_notify_pattern(space: Space) -> None:
    received: list[tuple[dict, str]] = []

    async def endpoint(request: Request) -> JSONResponse:
        received.append((await request.json(), request.headers.get("authorization", "")))
        return JSONResponse({"ok": True})

    party = Starlette(routes=[Route("/events", endpoint, methods=["POST"])])
    async with run_server(party) as url:
        use = PatternUse.of("notify", notify_party=space.auditor_id, notify_url=f"{url}/events", notify_event="read")
        agreed = await agree(space, use)
        allowed(await agreed.pull())
        for _ in range(250):
            if received:
                break
            await asyncio.sleep(0.02)
    ((body, authorization),) = received
    assert body["event"] == "read"
    assert (body["agreement"], body["consumer"]) == (agreed.agreement_id, space.consumer.id)
    claims = jwt.decode(authorization.removeprefix("Bearer "), options={"verify_signature": False})
    assert (claims["sub"], claims["aud"]) == (space.provider.id, space.auditor_id)

    nowhere = await agree(space, PatternUse.of("notify", notify_party=space.auditor_id, notify_url=None))
    assert refused(await nowhere.pull()) == [
        f"obligation cannot be carried out: notify {space.auditor_id!r} has no address to notify"
    ]


async def test_aggregate_only_pattern_names_the_missing_query(space: Space) -> None:
    agreed = await agree(space, AGGREGATE)
    assert refused(await agreed.pull()) == [
        "aggregate: raw access is not allowed; the request carries no aggregate query (input.request.query)"
    ]
