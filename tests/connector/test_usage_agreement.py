"""The agreement is the law: its ODRL, compiled to Rego, and the bound usage module decide every use; both must allow.

Real connectors on loopback ports, real SQLite, the real Rego engine. For each operand the compiler knows
there is one case where the agreement is stricter than the bound module and the agreement is what denies
(every reason starts with "agreement:"), and one where the agreement admits the request and the module
denies it (no reason starts with "agreement:").

The agreements here come from real negotiations; to state an operand the negotiation does not bargain over
(anything but purpose, count and elapsedTime), a test rewrites the provider's stored agreement through its
store before the first use: the data plane must enforce whatever ODRL the agreement holds. Time moves
through the provider's `Runtime.clock` (a Python attribute; no HTTP interface can move it).
"""

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from starlette.applications import Starlette

from connector.agreements import Agreement
from connector.app import create_app
from connector.runtime import Runtime
from policies.patterns import PatternUse, render
from tests.dataspace import (
    Dataspace,
    Site,
    dataspace,
    management_client,
    negotiate,
    start_transfer,
    write_people_csv,
)
from tests.utils import run_server

pytestmark = pytest.mark.asyncio(loop_scope="module")

OPEN = "package tessera.usage.open\n\ndefault allow := true\n"  # a bound module that admits everything
TESSERA = "https://w3id.org/tessera/v1/"
_packages = itertools.count(1)


@dataclass
class Space:
    provider: Site
    provider_app: Starlette
    consumer: Site  # region EU-FR, jurisdiction FR, roles member and researcher, security profile base
    consumer_app: Starlette
    people_csv: Path

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.provider_app.state.runtime
        return runtime

    @property
    def consumer_runtime(self) -> Runtime:
        runtime: Runtime = self.consumer_app.state.runtime
        return runtime


async def _start(space: Dataspace, name: str, region: str, **claims: Any) -> tuple[Site, Starlette]:
    """A connector whose app (and so its runtime and clock) the test can reach."""
    config = await space.admit(name, region=region, **claims)
    app = create_app(config)
    await space.stack.enter_async_context(run_server(app, config.port))
    site = Site(config, await space.stack.enter_async_context(management_client(config)))
    space.sites[config.participant_id] = site
    return site, app


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def space(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Space]:
    root = tmp_path_factory.mktemp("agreement")
    async with dataspace(root / "space") as running:
        provider, app = await _start(running, "provider", "EU-DE")
        consumer, consumer_app = await _start(
            running, "consumer", "EU-FR", jurisdiction="FR", roles=["member", "researcher"]
        )
        yield Space(provider, app, consumer, consumer_app, write_people_csv(root / "people.csv"))


@pytest.fixture(autouse=True)
def real_time(space: Space) -> Any:
    yield
    space.runtime.clock = lambda: datetime.now(UTC)


@dataclass
class Agreed:
    space: Space
    agreement_id: str
    transfer_id: str

    async def pull(
        self, purpose: str | None = "research", transfer_id: str | None = None, event: str | None = None
    ) -> httpx.Response:
        params = {k: v for k, v in {"purpose": purpose, "event": event}.items() if v}
        path = f"/transfers/{transfer_id or self.transfer_id}/data"
        return await self.space.consumer.api.get(path, params=params)

    async def another_transfer(self) -> str:
        transfer = await start_transfer(self.space.consumer, self.agreement_id)
        assert transfer["state"] == "STARTED", transfer
        return str(transfer["id"])

    async def explain(self, purpose: str) -> dict[str, Any]:
        return await self.space.provider.post(
            "/explain/use", {"agreement_id": self.agreement_id, "purpose": purpose}, 200
        )


async def agree(
    space: Space,
    module: str = OPEN,
    *,
    terms: dict[str, Any] | None = None,
    needs: dict[str, Any] | None = None,
    agreement: list[dict[str, Any]] | None = None,
    asset: dict[str, Any] | None = None,
) -> Agreed:
    """Publish an offer of an asset (with the fields in `asset`) bound to `module`, negotiate it (with
    `needs`), optionally let the agreement's permission say `agreement`, and start a pull transfer."""
    provider, consumer = space.provider, space.consumer
    fields = {"title": "People", "format": "csv", "path": str(space.people_csv)} | (asset or {})
    asset = await provider.post("/assets", fields)
    policy = await provider.post("/policies", {"title": "bound", "source": module})
    offer_body = {"asset_id": asset["id"], "usage_policy_id": policy["id"], "terms": terms or {}}
    offer = await provider.post("/offers", offer_body)
    body = {"provider_id": provider.id, "provider_url": provider.dsp_url, "offer_id": offer["id"]}
    started = await consumer.post("/negotiations", body | {"target": offer["asset_id"], "needs": needs})
    done = await consumer.wait_for(f"/negotiations/{started['id']}", "FINALIZED", "TERMINATED")
    assert done["state"] == "FINALIZED", done
    if agreement is not None:
        await _agreement_says(space.runtime, done["agreement_id"], agreement)
    transfer = await start_transfer(consumer, done["agreement_id"])
    assert transfer["state"] == "STARTED", transfer
    return Agreed(space, done["agreement_id"], transfer["id"])


async def _agreement_says(runtime: Runtime, agreement_id: str, constraints: list[dict[str, Any]]) -> None:
    async with runtime.transaction() as session:
        stored = await session.get(Agreement, agreement_id)
        assert stored is not None
        document = {k: v for k, v in stored.document.items() if k not in ("prohibition", "obligation")}
        stored.document = document | {"permission": [{"action": "use", "constraint": constraints}]}


async def _duties_say(runtime: Runtime, agreement_id: str, duties: list[dict[str, Any]]) -> None:
    async with runtime.transaction() as session:
        stored = await session.get(Agreement, agreement_id)
        assert stored is not None
        permission = [{**stored.document["permission"][0], "duty": duties}]
        stored.document = {**stored.document, "permission": permission}


def delete_within(period: str) -> dict[str, Any]:
    right = {"@value": period, "@type": "http://www.w3.org/2001/XMLSchema#duration"}
    return {"action": "delete", "constraint": [constraint("delayPeriod", "eq", right)]}


def rendered(*uses: PatternUse) -> str:
    return render(f"tessera.usage.bound_{next(_packages)}", list(uses))


def constraint(left: str, operator: str, right: Any) -> dict[str, Any]:
    return {"leftOperand": left, "operator": operator, "rightOperand": right}


def refused(response: httpx.Response) -> list[str]:
    assert response.status_code == 403, response.text
    reasons: list[str] = response.json()["reasons"]
    return reasons


def by_agreement(reasons: list[str]) -> bool:
    return bool(reasons) and all(reason.startswith("agreement:") for reason in reasons)


def by_module(reasons: list[str]) -> bool:
    return bool(reasons) and not any(reason.startswith("agreement:") for reason in reasons)


def later(days: int) -> Callable[[], datetime]:
    return lambda: datetime.now(UTC) + timedelta(days=days)


# -- the example ------------------------------------------------------------------------------------


async def test_the_agreed_terms_are_enforced_not_only_the_offers_module(space: Space) -> None:
    # The offer's module allows research and grid-planning and 5 uses; the consumer agreed to less.
    module = rendered(
        PatternUse.of("purpose", allowed_purposes=["research", "grid-planning"]), PatternUse.of("max_uses", max_uses=5)
    )
    terms = {"purposes": ["research", "grid-planning"], "uses": 5, "duration_days": 30}
    needs = {"purposes": ["research"], "uses": 1, "duration_days": 1}
    agreed = await agree(space, module, terms=terms, needs=needs)
    document = (await space.provider.api.get(f"/agreements/{agreed.agreement_id}")).json()["agreement"]
    assert {"leftOperand": "count", "operator": "lteq", "rightOperand": "1"} in document["permission"][0]["constraint"]

    assert (await agreed.pull()).status_code == 200
    second = refused(await agreed.pull())
    assert second == ['agreement: count lteq "1" does not hold (this would be use 2)']
    fresh = await agreed.another_transfer()
    assert refused(await agreed.pull(transfer_id=fresh)) == second  # count is per agreement, across transfers
    grid = refused(await agreed.pull("grid-planning"))
    assert 'agreement: purpose isAnyOf ["research"] does not hold ("grid-planning")' in grid
    space.runtime.clock = later(2)
    two_days = refused(await agreed.pull())
    assert any(reason.startswith('agreement: elapsedTime lteq "P1D" does not hold') for reason in two_days)
    usage = [
        c for c in (await space.provider.api.get("/usage")).json()["items"] if c["agreement_id"] == agreed.agreement_id
    ]
    assert (usage[0]["uses"], usage[0]["denials"]) == (1, 4)


# -- one operand at a time: the agreement denies, then the module denies --------------------------------------


async def test_purpose_agreement_denies(space: Space) -> None:
    module = rendered(PatternUse.of("purpose", allowed_purposes=["research", "marketing"]))
    agreed = await agree(space, module, agreement=[constraint("purpose", "isAnyOf", ["research"])])
    assert (await agreed.pull("research")).status_code == 200
    assert refused(await agreed.pull("marketing")) == [
        'agreement: purpose isAnyOf ["research"] does not hold ("marketing")'
    ]


async def test_purpose_module_denies(space: Space) -> None:
    module = rendered(PatternUse.of("purpose", allowed_purposes=["research"]))
    agreed = await agree(space, module, agreement=[constraint("purpose", "isAnyOf", ["research", "marketing"])])
    reasons = refused(await agreed.pull("marketing"))
    assert by_module(reasons) and "marketing" in reasons[0]


async def test_count_agreement_denies_across_transfers(space: Space) -> None:
    agreed = await agree(space, rendered(PatternUse.of("max_uses", max_uses=5)), terms={"uses": 5}, needs={"uses": 1})
    assert (await agreed.pull()).status_code == 200
    reasons = refused(await agreed.pull(transfer_id=await agreed.another_transfer()))
    assert reasons == ['agreement: count lteq "1" does not hold (this would be use 2)']


def handwritten(rule: str) -> str:
    """A bound module written by hand: the offer's ODRL then says only its terms, so the module may be
    stricter than the agreement (a module rendered from patterns puts its own limits in the offer)."""
    package = f"tessera.usage.handwritten_{next(_packages)}"
    return f"package {package}\n\ndefault allow := false\n\nallow if count(deny) == 0\n\n{rule}\n"


async def test_count_module_denies_across_transfers(space: Space) -> None:
    module = handwritten(
        "deny contains msg if {\n\tinput.uses >= 1\n"
        '\tmsg := sprintf("uses: %d uses consumed, limit %d", [input.uses, 1])\n}'
    )
    agreed = await agree(space, module, terms={"uses": 5}, needs={"uses": 5})
    assert (await agreed.pull()).status_code == 200
    reasons = refused(await agreed.pull(transfer_id=await agreed.another_transfer()))
    assert by_module(reasons) and reasons == ["uses: 1 uses consumed, limit 1"]


async def test_date_time_agreement_denies(space: Space) -> None:
    yesterday = (datetime.now(UTC) - timedelta(days=1)).isoformat(timespec="seconds").replace("+00:00", "Z")
    module = rendered(PatternUse.of("time_window", not_before="2020-01-01T00:00:00Z", not_after="2100-01-01T00:00:00Z"))
    agreed = await agree(space, module, agreement=[constraint("dateTime", "lt", yesterday)])
    reasons = refused(await agreed.pull())
    assert by_agreement(reasons) and reasons[0].startswith(f'agreement: dateTime lt "{yesterday}" does not hold')


async def test_date_time_module_denies(space: Space) -> None:
    module = rendered(PatternUse.of("time_window", not_before="2020-01-01T00:00:00Z", not_after="2021-01-01T00:00:00Z"))
    agreed = await agree(space, module, agreement=[constraint("dateTime", "lt", "2100-01-01T00:00:00Z")])
    reasons = refused(await agreed.pull())
    assert by_module(reasons) and reasons[0].startswith("time interval:")


async def test_elapsed_time_agreement_denies_two_days_later(space: Space) -> None:
    module = rendered(PatternUse.of("duration", max_duration_seconds=30 * 86400))
    agreed = await agree(space, module, terms={"duration_days": 30}, needs={"duration_days": 1})
    assert (await agreed.pull()).status_code == 200
    space.runtime.clock = later(2)
    reasons = refused(await agreed.pull())
    assert by_agreement(reasons) and reasons[0].startswith('agreement: elapsedTime lteq "P1D" does not hold')


async def test_elapsed_time_module_denies_two_days_later(space: Space) -> None:
    module = handwritten(
        'deny contains "duration: more than one day since the agreement" if {\n'
        "\ttime.parse_rfc3339_ns(input.now) - time.parse_rfc3339_ns(input.agreement.timestamp) > 86400 * 1000000000\n}"
    )
    agreed = await agree(space, module, terms={"duration_days": 30}, needs={"duration_days": 30})
    assert (await agreed.pull()).status_code == 200
    space.runtime.clock = later(2)
    reasons = refused(await agreed.pull())
    assert by_module(reasons) and reasons[0].startswith("duration:")


async def test_spatial_agreement_denies(space: Space) -> None:
    module = rendered(PatternUse.of("regions", allowed_regions=["EU-DE", "EU-FR"]))
    agreed = await agree(space, module, agreement=[constraint("spatial", "isAnyOf", ["EU-DE"])])
    assert refused(await agreed.pull()) == ['agreement: spatial isAnyOf ["EU-DE"] does not hold ("EU-FR")']


async def test_spatial_module_denies(space: Space) -> None:
    module = rendered(PatternUse.of("regions", allowed_regions=["EU-DE"]))
    agreed = await agree(space, module, agreement=[constraint("spatial", "isAnyOf", ["EU-FR"])])
    assert refused(await agreed.pull()) == ['region: "EU-FR" not in allowed regions ["EU-DE"]']


@pytest.mark.parametrize("operand", ["recipient", "assignee"])
async def test_recipient_agreement_denies(space: Space, operand: str) -> None:
    module = rendered(PatternUse.of("consumer", allowed_consumers=[space.consumer.id]))
    agreed = await agree(space, module, agreement=[constraint(operand, "eq", "urn:tessera:someone-else")])
    assert refused(await agreed.pull()) == [
        f'agreement: {operand} eq "urn:tessera:someone-else" does not hold ("{space.consumer.id}")'
    ]


@pytest.mark.parametrize("operand", ["recipient", "assignee"])
async def test_recipient_module_denies(space: Space, operand: str) -> None:
    module = rendered(PatternUse.of("consumer", allowed_consumers=["urn:tessera:someone-else"]))
    agreed = await agree(space, module, agreement=[constraint(operand, "eq", space.consumer.id)])
    assert refused(await agreed.pull()) == [
        f'consumer: "{space.consumer.id}" not in allowed consumers ["urn:tessera:someone-else"]'
    ]


async def test_system_agreement_denies(space: Space) -> None:
    module = rendered(PatternUse.of("connector", allowed_connectors=[space.consumer.dsp_url]))
    agreed = await agree(space, module, agreement=[constraint("system", "eq", "https://elsewhere.example/dsp")])
    reasons = refused(await agreed.pull())
    assert reasons == [
        f'agreement: system eq "https://elsewhere.example/dsp" does not hold ("{space.consumer.dsp_url}")'
    ]


async def test_system_module_denies(space: Space) -> None:
    module = rendered(PatternUse.of("connector", allowed_connectors=["https://elsewhere.example/dsp"]))
    agreed = await agree(space, module, agreement=[constraint("system", "eq", space.consumer.dsp_url)])
    assert by_module(refused(await agreed.pull()))


async def test_security_level_agreement_denies(space: Space) -> None:
    module = rendered(PatternUse.of("security_profile", minimum_security_profile="base"))
    agreed = await agree(space, module, agreement=[constraint("tessera:securityLevel", "gteq", "trust")])
    assert refused(await agreed.pull()) == ['agreement: tessera:securityLevel gteq "trust" does not hold ("base")']


async def test_security_level_module_denies(space: Space) -> None:
    module = rendered(PatternUse.of("security_profile", minimum_security_profile="trust"))
    agreed = await agree(space, module, agreement=[constraint(TESSERA + "securityLevel", "gteq", "base")])
    reasons = refused(await agreed.pull())
    assert by_module(reasons) and reasons[0].startswith("security profile:")


# Roles and jurisdiction come from the consumer's token (the authority's record); both directions each.
async def test_role_agreement_denies(space: Space) -> None:
    module = rendered(PatternUse.of("role", required_roles=["researcher"]))
    agreed = await agree(space, module, agreement=[constraint("tessera:role", "isAnyOf", ["auditor"])])
    expected = 'agreement: tessera:role isAnyOf ["auditor"] does not hold (["member","researcher"])'
    assert refused(await agreed.pull()) == [expected]


async def test_role_module_denies(space: Space) -> None:
    module = rendered(PatternUse.of("role", required_roles=["auditor"]))
    agreed = await agree(space, module, agreement=[constraint(TESSERA + "role", "isAnyOf", ["researcher"])])
    assert refused(await agreed.pull()) == ['role: caller roles ["member","researcher"] hold none of ["auditor"]']


async def test_jurisdiction_agreement_denies(space: Space) -> None:
    module = rendered(PatternUse.of("cross_border", home_jurisdiction="DE", allowed_jurisdictions=["FR"]))
    agreed = await agree(space, module, agreement=[constraint("tessera:jurisdiction", "isAnyOf", ["DE"])])
    assert refused(await agreed.pull()) == ['agreement: tessera:jurisdiction isAnyOf ["DE"] does not hold ("FR")']


async def test_jurisdiction_module_denies(space: Space) -> None:
    module = rendered(PatternUse.of("cross_border", home_jurisdiction="DE", allowed_jurisdictions=["CH"]))
    agreed = await agree(space, module, agreement=[constraint(TESSERA + "jurisdiction", "isNoneOf", ["US"])])
    assert refused(await agreed.pull()) == [
        'jurisdiction: "FR" is neither home "DE" nor in allowed jurisdictions ["CH"]'
    ]


async def test_roles_and_jurisdiction_both_holding_allow(space: Space) -> None:
    module = rendered(
        PatternUse.of("role", required_roles=["researcher"]),
        PatternUse.of("cross_border", home_jurisdiction="DE", allowed_jurisdictions=["FR"]),
    )
    terms = [constraint("tessera:role", "isAllOf", ["researcher"]), constraint("tessera:jurisdiction", "eq", "FR")]
    agreed = await agree(space, module, agreement=terms)
    assert (await agreed.pull()).status_code == 200


# The pull declares the event in progress (?event=…): the agreement and the module each deny alone.
async def test_event_agreement_denies(space: Space) -> None:
    module = rendered(PatternUse.of("event", allowed_events=["incident-response", "maintenance"]))
    agreed = await agree(space, module, agreement=[constraint("event", "isAnyOf", ["incident-response"])])
    assert (await agreed.pull(event="incident-response")).status_code == 200
    expected = 'agreement: event isAnyOf ["incident-response"] does not hold ("maintenance")'
    assert refused(await agreed.pull(event="maintenance")) == [expected]


async def test_event_module_denies(space: Space) -> None:
    module = rendered(PatternUse.of("event", allowed_events=["maintenance"]))
    agreed = await agree(
        space, module, agreement=[constraint("event", "isAnyOf", ["incident-response", "maintenance"])]
    )
    assert refused(await agreed.pull(event="incident-response")) == [
        'event: "incident-response" not in allowed events ["maintenance"]'
    ]


# The asset's labels and lifecycle state reach the agreement (input.asset.classification, input.artifact.state).
@pytest.mark.parametrize(
    ("left", "asset", "holds", "fails"),
    [
        ("tessera:classification", {"classification": "general"}, ["general"], ["important"]),
        ("tessera:artifactState", {"state": "draft"}, ["draft", "released"], ["released"]),
    ],
)
async def test_asset_operands_read_the_assets_labels(
    space: Space, left: str, asset: dict[str, str], holds: list[str], fails: list[str]
) -> None:
    kept = await agree(space, OPEN, agreement=[constraint(left, "isAnyOf", holds)], asset=asset)
    assert (await kept.pull()).status_code == 200
    broken = await agree(space, OPEN, agreement=[constraint(left, "isAnyOf", fails)], asset=asset)
    reasons = refused(await broken.pull())
    value = next(iter(asset.values()))
    assert by_agreement(reasons) and reasons[0].endswith(f'does not hold ("{value}")')


# -- fail closed, and one decision path ----------------------------------------------------------------------


async def test_an_agreement_we_cannot_enforce_denies_naming_the_problem(space: Space) -> None:
    agreed = await agree(space, OPEN, agreement=[constraint("https://example.org/moonPhase", "eq", "full")])
    reasons = refused(await agreed.pull())
    assert "agreement: cannot be enforced: permission 1: constraint https://example.org/moonPhase" in reasons[0]
    assert "unknown left operand" in reasons[0]


async def test_explain_decides_like_the_data_plane_without_side_effects(space: Space) -> None:
    module = rendered(PatternUse.of("purpose", allowed_purposes=["research", "marketing"]))
    agreed = await agree(space, module, agreement=[constraint("purpose", "isAnyOf", ["research"])])
    audit_before = len((await space.provider.api.get("/audit", params={"limit": 1000})).json()["items"])
    answer = await agreed.explain("marketing")
    assert answer["allow"] is False
    assert answer["reasons"] == ['agreement: purpose isAnyOf ["research"] does not hold ("marketing")']
    assert answer["agreement_module"]["problems"] == []
    (purpose,) = answer["patterns"]  # the bound module's patterns, each explained
    assert purpose["pattern"] == "purpose" and purpose["allow"] is True
    assert (await agreed.explain("research"))["allow"] is True
    assert refused(await agreed.pull("marketing")) == answer["reasons"]
    assert len((await space.provider.api.get("/audit", params={"limit": 1000})).json()["items"]) == audit_before + 1


# -- the consumer carries out the agreement's duties ---------------------------------------------------------


async def _copy_of(space: Space, transfer_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The consumer's copy of a transfer's latest pull, and the audit entry that recorded it."""
    copies = [c for c in (await space.consumer.api.get("/copies")).json()["items"] if c["transfer_id"] == transfer_id]
    entries = (await space.consumer.api.get("/audit", params={"limit": 1000})).json()["items"]
    (entry,) = [e for e in entries if e["action"] == "copy.received" and e["details"]["copy"] == copies[-1]["id"]]
    return copies[-1], entry["details"]


def _seconds_until(copy: dict[str, Any]) -> float:
    received, due = (datetime.fromisoformat(copy[k].replace("Z", "+00:00")) for k in ("received_at", "delete_at"))
    return (due - received).total_seconds()


async def test_the_consumer_deletes_its_copy_as_the_agreement_requires_without_any_header(space: Space) -> None:
    agreed = await agree(space, OPEN)
    await _duties_say(space.consumer_runtime, agreed.agreement_id, [delete_within("PT1S")])
    pulled = await agreed.pull()
    assert pulled.status_code == 200 and "Tessera-Delete-After" not in pulled.headers
    copy, entry = await _copy_of(space, agreed.transfer_id)
    assert 0 <= _seconds_until(copy) <= 2 and entry["agreement_delete_at"] and entry["provider_delete_at"] is None
    for _ in range(100):
        copy, _entry = await _copy_of(space, agreed.transfer_id)
        if copy["deleted_at"]:
            break
        await asyncio.sleep(0.05)
    assert copy["deleted_at"]


@pytest.mark.parametrize(("header_seconds", "agreement_period", "within"), [(30 * 86400, "PT5S", 6), (5, "P30D", 6)])
async def test_the_stricter_of_header_and_agreement_decides_when_the_copy_goes(
    space: Space, header_seconds: int, agreement_period: str, within: float
) -> None:
    agreed = await agree(space, rendered(PatternUse.of("delete_after", delete_after_seconds=header_seconds)))
    await _duties_say(space.consumer_runtime, agreed.agreement_id, [delete_within(agreement_period)])
    pulled = await agreed.pull()
    assert pulled.status_code == 200 and "Tessera-Delete-After" in pulled.headers
    copy, entry = await _copy_of(space, agreed.transfer_id)
    assert 0 <= _seconds_until(copy) <= within
    assert entry["provider_delete_at"] and entry["agreement_delete_at"]


async def test_the_agreements_next_policy_is_recorded_with_the_copy(space: Space) -> None:
    agreed = await agree(space, OPEN)
    policy_hash = "sha256:" + "cd" * 32
    duty = {
        "action": "nextPolicy",
        "constraint": [
            constraint(TESSERA + "policyId", "eq", "third-party"),
            constraint(TESSERA + "policyHash", "eq", policy_hash),
        ],
    }
    await _duties_say(space.consumer_runtime, agreed.agreement_id, [duty])
    assert (await agreed.pull()).status_code == 200
    copy, entry = await _copy_of(space, agreed.transfer_id)
    assert entry["next_policy"] == [{"policy": "third-party", "hash": policy_hash}]
    assert copy["delete_at"] is None and entry["duty_problems"] == []


async def test_a_duty_the_consumer_cannot_carry_out_means_it_may_not_keep_the_copy(space: Space) -> None:
    agreed = await agree(space, OPEN)
    await _duties_say(space.consumer_runtime, agreed.agreement_id, [{"action": "https://example.org/dance"}])
    assert (await agreed.pull()).status_code == 200
    copy, entry = await _copy_of(space, agreed.transfer_id)
    assert _seconds_until(copy) == 0 and entry["duty_problems"]


async def test_an_offer_the_connector_could_not_enforce_is_refused_at_publication(space: Space) -> None:
    provider, consumer = space.provider, space.consumer
    asset = await provider.post("/assets", {"title": "People", "format": "csv", "path": str(space.people_csv)})
    policy = await provider.post("/policies", {"patterns": [{"name": "max_uses", "params": {"max_uses": 5}}]})
    offer = {"id": "stated-in-odrl", "asset_id": asset["id"], "usage_policy_id": policy["id"]}
    moon = {"leftOperand": "https://example.org/moonPhase", "operator": "eq", "rightOperand": "full"}
    refused = await provider.post("/offers", {**offer, "constraints": [moon]}, 400)
    assert "the offer cannot be enforced" in refused["detail"] and "moonPhase" in refused["detail"]
    unreadable = await provider.post("/offers", {**offer, "constraints": [{"operator": "eq"}]}, 400)
    assert "constraints[0]" in unreadable["detail"]
    assert (await provider.api.get("/offers/stated-in-odrl")).status_code == 404  # nothing half-published
    # A constraint it can enforce is published, agreed and enforced like any other.
    spatial = {"leftOperand": "spatial", "operator": "isAnyOf", "rightOperand": ["EU-DE"]}
    published = await provider.post("/offers", {**offer, "constraints": [spatial]})
    asked = {"provider_url": provider.dsp_url, "provider_id": provider.id}
    catalog = await consumer.post("/catalog/request", asked, 200)
    (odrl,) = [o for d in catalog["dataset"] for o in d["hasPolicy"] if o["@id"] == published["id"]]
    assert spatial in odrl["permission"][0]["constraint"]
    negotiation = await negotiate(consumer, provider, published)
    assert negotiation["state"] == "FINALIZED", negotiation
    transfer = await start_transfer(consumer, negotiation["agreement_id"])
    pulled = await consumer.api.get(f"/transfers/{transfer['id']}/data", params={"purpose": "research"})
    assert pulled.status_code == 403, pulled.text
    assert 'agreement: spatial isAnyOf ["EU-DE"] does not hold ("EU-FR")' in pulled.json()["reasons"]


@pytest.mark.parametrize(
    ("left", "asset", "use", "says"),
    [
        (
            "tessera:classification",
            {"classification": "general"},
            PatternUse.of("classification", classification_level="important"),
            'classification: important data needs security profile "trust", caller has "base"',
        ),
        (
            "tessera:artifactState",
            {"state": "draft"},
            PatternUse.of("artifact_state", allowed_states=["released"]),
            'artifact state: "draft" not in allowed states ["released"]',
        ),
    ],
)
async def test_asset_operands_module_denies_where_the_agreement_holds(
    space: Space, left: str, asset: dict[str, str], use: PatternUse, says: str
) -> None:
    holds = [next(iter(asset.values()))]
    agreed = await agree(space, rendered(use), agreement=[constraint(left, "isAnyOf", holds)], asset=asset)
    assert refused(await agreed.pull()) == [says]
