"""Cross-border uses: a caller whose verified jurisdiction is not the data's home. The connector's own rules
(`[cross_border]`: levels and categories that never leave, allowed destinations) apply besides the
agreement; an allowed use is filed in the audit chain (出境 存证备案) in the transaction that counts it, with
the bytes when the stream ends, and `tessera usage report --cross-border` lists the filings.

Real broker tokens carry the caller's jurisdiction and registry id (`Dataspace.admit(..., jurisdiction=…)`).
"""

import asyncio
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from connector.config import ConnectorConfig, CrossBorderRules
from tests.dataspace import Dataspace, Site, negotiate, publish, start_transfer, tessera

OPEN = "package tessera.usage.open\n\ndefault allow := true\n"
RULES = CrossBorderRules(
    destinations=("DE", "FR"), never_leave_levels=("important", "core"), never_leave_categories=("genomics",)
)
HOME = {"home_jurisdiction": "CN", "category": "health", "personal_information": True}
USCC = {"registry_type": "uscc", "registry_id": "91350100M000100Y43"}


async def provider_with(space: Dataspace, rules: CrossBorderRules = RULES) -> Site:
    config = replace(await space.admit("provider", jurisdiction="CN"), cross_border=rules)
    config.save()
    return await space.start(config)


async def use(consumer: Site, provider: Site, offer: dict[str, Any]) -> tuple[str, Any]:
    """Negotiate, start a pull and pull once: (agreement id, response)."""
    negotiation = await negotiate(consumer, provider, offer)
    assert negotiation["state"] == "FINALIZED", negotiation
    transfer = await start_transfer(consumer, negotiation["agreement_id"])
    assert transfer["state"] == "STARTED", transfer
    return negotiation["agreement_id"], await consumer.api.get(f"/transfers/{transfer['id']}/data")


async def filings_of(site: Site, *, within: float = 5.0) -> list[dict[str, Any]]:
    """The filings, once every one knows its bytes (they commit just after the last chunk is sent)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        items: list[dict[str, Any]] = (await site.api.get("/usage/cross-border")).json()["items"]
        if all(item["bytes"] is not None for item in items) or asyncio.get_running_loop().time() > deadline:
            return items
        await asyncio.sleep(0.02)


async def audit_of(site: Site) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = (await site.api.get("/audit", params={"limit": 1000})).json()["items"]
    return entries[::-1]  # oldest first


async def test_an_allowed_cross_border_use_is_filed_in_the_audit_chain(space: Dataspace, people_csv: Path) -> None:
    provider = await provider_with(space)
    consumer = await space.start(await space.admit("consumer", jurisdiction="DE", **USCC))
    offer = await publish(provider, people_csv, policy=OPEN, **HOME)
    agreement_id, response = await use(consumer, provider, offer)
    assert response.status_code == 200, response.text

    [listed] = await filings_of(provider)
    entries = await audit_of(provider)
    [allowed] = [e for e in entries if e["action"] == "usage.allowed"]
    [filed] = [e for e in entries if e["action"] == "crossborder.filed"]
    [sent] = [e for e in entries if e["action"] == "crossborder.sent"]
    assert filed["seq"] == allowed["seq"] + 1  # one transaction: never a use without its filing
    assert allowed["details"]["cross_border"] == {"from": "CN", "to": "DE"}
    details = filed["details"]
    assert details == {
        "filing": details["filing"],
        "agreement": agreement_id,
        "transfer": allowed["details"]["transfer"],
        "asset": offer["asset_id"],
        "recipient": consumer.id,
        "recipient_org": "Consumer",
        "registry_id": {"type": "uscc", "value": "91350100M000100Y43"},
        "jurisdiction_from": "CN",
        "jurisdiction_to": "DE",
        "category": "health",
        "level": "general",
        "personal_information": True,
    }
    assert sent["details"] == {"filing": details["filing"], "bytes": len(response.content)}

    assert listed == {
        "id": details["filing"],
        "at": filed["at"],
        "seq": filed["seq"],
        **{k: v for k, v in details.items() if k != "filing"},
        "bytes": len(response.content),
    }
    code, out, err = await tessera(
        "usage", "report", "--cross-border", "--dir", str(provider.config.directory), "--json"
    )
    assert code == 0, err
    assert json.loads(out) == [listed]
    code, out, err = await tessera("usage", "report", "--cross-border", "--dir", str(provider.config.directory))
    assert code == 0, err
    assert "Cross-border filings" in out and "urn:tessera:consumer" in out and "91350100M000100Y43" in out
    code, out, _err = await tessera("audit", "verify", "--dir", str(provider.config.directory), "--json")
    assert code == 0 and json.loads(out)["ok"] is True


async def test_a_use_at_home_files_nothing(space: Dataspace, people_csv: Path) -> None:
    provider = await provider_with(space)
    consumer = await space.start(await space.admit("consumer", jurisdiction="CN"))
    offer = await publish(provider, people_csv, policy=OPEN, **HOME | {"category": "genomics"})
    _agreement, response = await use(consumer, provider, offer)
    assert response.status_code == 200, response.text
    assert (await provider.api.get("/usage/cross-border")).json()["items"] == []
    [allowed] = [e for e in await audit_of(provider) if e["action"] == "usage.allowed"]
    assert allowed["details"]["cross_border"] is None


@pytest.mark.parametrize(
    ("claims", "labels", "reasons"),
    [
        (
            {"jurisdiction": "US"},
            {},
            ['cross_border.destinations: "US" is not among the allowed destinations ["DE", "FR"]'],
        ),
        (
            {},
            {},
            ['cross_border: the caller\'s token proves no jurisdiction: a use of data from "CN" is cross-border'],
        ),
        (
            {"jurisdiction": "DE", "security_profile": "trust"},
            {"classification": "important"},
            ['cross_border.never_leave_levels: important data never leaves "CN" (to "DE")'],
        ),
        (
            {"jurisdiction": "FR"},
            {"category": "genomics"},
            ['cross_border.never_leave_categories: category "genomics" never leaves "CN" (to "FR")'],
        ),
    ],
    ids=["destination", "no-jurisdiction", "level", "category"],
)
async def test_a_cross_border_use_the_rules_refuse_is_denied_and_audited(
    space: Dataspace, people_csv: Path, claims: dict[str, str], labels: dict[str, str], reasons: list[str]
) -> None:
    provider = await provider_with(space)
    consumer = await space.start(await space.admit("consumer", **claims))
    offer = await publish(provider, people_csv, policy=OPEN, **HOME | labels)
    _agreement, response = await use(consumer, provider, offer)
    assert response.status_code == 403
    assert response.json()["reasons"] == reasons
    [denied] = [e for e in await audit_of(provider) if e["action"] == "usage.denied"]
    assert denied["details"]["reasons"] == reasons
    assert denied["details"]["cross_border"] == {"from": "CN", "to": claims.get("jurisdiction")}
    assert (await provider.api.get("/usage/cross-border")).json()["items"] == []


async def test_no_destination_is_allowed_unless_configured(space: Dataspace, people_csv: Path) -> None:
    provider = await provider_with(space, CrossBorderRules())
    consumer = await space.start(await space.admit("consumer", jurisdiction="DE"))
    offer = await publish(provider, people_csv, policy=OPEN, **HOME)
    _agreement, response = await use(consumer, provider, offer)
    assert response.status_code == 403
    assert response.json()["reasons"] == ['cross_border.destinations: "DE" is not among the allowed destinations []']


async def test_assets_without_a_home_take_the_connectors(space: Dataspace, people_csv: Path) -> None:
    provider = await provider_with(space, replace(RULES, home_jurisdiction="CN"))
    unnamed = await provider.post("/assets", {"title": "People", "format": "csv", "path": str(people_csv)})
    named = await provider.post(
        "/assets", {"title": "People", "format": "csv", "path": str(people_csv), "home_jurisdiction": "FR"}
    )
    assert (unnamed["home_jurisdiction"], named["home_jurisdiction"]) == ("CN", "FR")


def test_the_rules_take_only_iso_codes_and_known_levels(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cross_border: must be an ISO 3166-1 alpha-2 country code"):
        CrossBorderRules(destinations=("XX",))
    with pytest.raises(ValueError, match="never_leave_levels must be among"):
        CrossBorderRules(never_leave_levels=("secret",))
    config = ConnectorConfig(
        directory=tmp_path,
        participant_id="urn:tessera:p",
        url="http://127.0.0.1:1",
        broker_url="http://127.0.0.1:2",
        cross_border=RULES,
    )
    config.save()
    assert ConnectorConfig.load(tmp_path).cross_border == RULES


async def test_connector_init_writes_the_cross_border_rules(tmp_path: Path) -> None:
    code, _out, err = await tessera(
        "connector", "init", "--dir", str(tmp_path), "--participant-id", "urn:tessera:p",
        "--url", "http://127.0.0.1:1", "--broker-url", "http://127.0.0.1:2", "--home-jurisdiction", "CN",
        "--cross-border-destination", "DE", "--cross-border-destination", "FR", "--never-leave-level", "core",
        "--never-leave-category", "genomics",
    )  # fmt: skip
    assert code == 0, err
    assert ConnectorConfig.load(tmp_path).cross_border == CrossBorderRules(
        home_jurisdiction="CN",
        destinations=("DE", "FR"),
        never_leave_levels=("core",),
        never_leave_categories=("genomics",),
    )
    code, _out, err = await tessera(
        "connector", "init", "--dir", str(tmp_path / "bad"), "--participant-id", "urn:tessera:p",
        "--url", "http://127.0.0.1:1", "--broker-url", "http://127.0.0.1:2", "--cross-border-destination", "Germany",
    )  # fmt: skip
    assert code == 2 and "ISO 3166-1 alpha-2" in err
