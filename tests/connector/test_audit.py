"""The audit chain: every step leaves an entry, and `tessera audit verify` finds tampering."""

import json
from pathlib import Path

from tests.dataspace import Site, json_value, negotiate, publish, sql, start_transfer, tessera


async def verify(site: Site) -> tuple[int, str, str]:
    """`tessera audit verify --json` in a subprocess, while the servers it asks keep running."""
    return await tessera("audit", "verify", "--dir", str(site.config.directory), "--json")


async def exchange(provider: Site, consumer: Site, data: Path) -> None:
    offer = await publish(provider, data)
    negotiation = await negotiate(consumer, provider, offer)
    transfer = await start_transfer(consumer, negotiation["agreement_id"])
    for purpose in ("research", "marketing"):
        await consumer.api.get(f"/transfers/{transfer['id']}/data", params={"purpose": purpose})


async def test_each_step_and_decision_is_recorded(provider: Site, consumer: Site, people_csv: Path) -> None:
    await exchange(provider, consumer, people_csv)
    actions = [e["action"] for e in reversed((await provider.api.get("/audit")).json()["items"])]
    assert actions[:3] == ["asset.created", "usagepolicy.created", "offer.created"]
    for action in (
        "negotiation.requested",
        "negotiation.agreed",
        "negotiation.verified",
        "negotiation.finalized",
        "transfer.requested",
        "transfer.started",
        "usage.allowed",
        "usage.denied",
    ):
        assert action in actions
    denied = next(e for e in (await provider.api.get("/audit")).json()["items"] if e["action"] == "usage.denied")
    assert denied["details"]["purpose"] == "marketing"
    assert denied["details"]["reasons"]
    report = (await provider.api.get("/audit/verify", params={"local": "true"})).json()
    assert report == {
        "ok": True,
        "entries": len(actions),
        "first_broken": None,
        "problem": None,
        "hashes": ["sha256"],
        "anchored": False,
        "checkpoints": 0,
        "latest_checkpoint": None,
        "unreachable": [],
        "refused": [],
    }
    assert (await verify(provider))[0] == 0
    assert (await verify(consumer))[0] == 0


async def test_tampering_is_detected_and_the_first_broken_entry_named(
    provider: Site, consumer: Site, people_csv: Path
) -> None:
    await exchange(provider, consumer, people_csv)
    (denied,) = await sql(provider.config, "SELECT seq, details FROM audit_entry WHERE action = 'usage.denied'")
    seq, forged = denied["seq"], json_value(denied["details"]) | {"purpose": "research"}
    await sql(
        provider.config,
        "UPDATE audit_entry SET details = :details WHERE seq = :seq",
        details=json.dumps(forged),
        seq=seq,
    )
    code, out, _ = await verify(provider)
    assert code == 1
    report = json.loads(out)
    assert {k: report[k] for k in ("ok", "entries", "first_broken", "problem", "hashes")} == {
        "ok": False,
        "entries": seq,
        "first_broken": seq,
        "problem": f"entry {seq} was altered (hash mismatch)",
        "hashes": ["sha256"],
    }


async def test_a_deleted_entry_breaks_the_chain(provider: Site, consumer: Site, people_csv: Path) -> None:
    await exchange(provider, consumer, people_csv)
    await sql(provider.config, "DELETE FROM audit_entry WHERE seq = 4")
    report = json.loads((await verify(provider))[1])
    assert report["first_broken"] == 4
    assert report["problem"] == "entry 4 is missing"


async def test_usage_report_and_timeline_on_the_command_line(provider: Site, consumer: Site, people_csv: Path) -> None:
    await exchange(provider, consumer, people_csv)
    code, out, err = await tessera("usage", "report", "--dir", str(provider.config.directory), "--json")
    assert code == 0, err
    (row,) = json.loads(out)
    assert (row["uses"], row["denials"], row["consumer_id"]) == (1, 1, consumer.id)
    assert row["bytes"] > 0
    negotiation = (await consumer.api.get("/negotiations")).json()["items"][0]
    code, out, err = await tessera(
        "connector", "timeline", "--dir", str(consumer.config.directory), negotiation["id"], "--json"
    )
    assert code == 0, err
    kinds = [e["message_type"] for e in json.loads(out)["events"] if e["kind"] == "sent"]
    assert kinds == ["ContractRequestMessage", "ContractAgreementVerificationMessage"]
