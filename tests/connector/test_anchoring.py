"""The audit chain anchored outside the database: signed checkpoints held by the broker and counter-parties.

A negotiation's and a transfer's end send a checkpoint of the chain's head to the broker and to the
counter-party; the connector also sends one periodically. `tessera audit verify` checks the chain against
them, so cutting entries off or rewriting one and recomputing every later hash is found, although the
chain alone still links. Holders refuse a checkpoint that does not verify or goes back; a checkpoint made
while its recipient is down reaches it after a restart; a receipt verifies offline.
"""

import asyncio
import base64
import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from connector.config import ConnectorConfig
from tessera.audit import AuditEntry
from tessera.checkpoints import Checkpoint, sign_checkpoint
from tessera.crypto import Es256Signer
from tessera.identity import SigningKey, TokenClient, generate_key, save_private_key
from tests.dataspace import Dataspace, Site, json_value, negotiate, publish, sql, start_transfer, tessera
from tests.utils import unused_port


async def verify(site: Site, *options: str) -> tuple[int, dict[str, Any]]:
    code, out, err = await tessera("audit", "verify", "--dir", str(site.config.directory), "--json", *options)
    assert out, err
    return code, json.loads(out)


async def head(site: Site) -> int:
    seq: int = (await site.api.get("/audit", params={"limit": "1"})).json()["items"][0]["seq"]
    return seq


async def broker_latest(space: Dataspace, site: Site) -> dict[str, Any] | None:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{space.broker_url}/checkpoints/{quote(site.id, safe='')}/latest")
    return response.json() if response.status_code == 200 else None


def payload(receipt: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint a receipt carries, read without verifying (the tests verify elsewhere)."""
    part = receipt["checkpoint"].split(".")[1]
    document: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return document


async def wait_anchored(space: Dataspace, site: Site, within: float = 10.0) -> dict[str, Any]:
    """The broker's latest receipt of `site`, once it checkpoints the chain's head."""
    for _ in range(int(within / 0.05)):
        receipt = await broker_latest(space, site)
        if receipt is not None and payload(receipt)["seq"] == await head(site):
            return receipt
        await asyncio.sleep(0.05)
    raise AssertionError(f"the broker never held a checkpoint of {site.id}'s head: {await broker_latest(space, site)}")


async def token(config: ConnectorConfig, audience: str) -> str:
    async with httpx.AsyncClient() as http:
        signer = SigningKey.load(config.key_path)
        tokens = TokenClient(http, signer=signer, participant_id=config.participant_id, authority_url=config.broker_url)
        return await tokens.token_for(audience)


async def exchange_to_the_end(provider: Site, consumer: Site, data: Path) -> None:
    """Negotiate, transfer, pull (one use allowed, one denied) and complete: both processes end on both sides."""
    negotiation = await negotiate(consumer, provider, await publish(provider, data))
    transfer = await start_transfer(consumer, negotiation["agreement_id"])
    for purpose in ("research", "marketing"):
        await consumer.api.get(f"/transfers/{transfer['id']}/data", params={"purpose": purpose})
    await consumer.post(f"/transfers/{transfer['id']}/complete", {}, expect=200)
    ours = (await provider.api.get("/transfers")).json()["items"][0]
    await provider.wait_for(f"/transfers/{ours['id']}", "COMPLETED")


async def recompute_from(config: ConnectorConfig, seq: int, **changed: Any) -> None:
    """Rewrite entry `seq`'s details and recompute every hash from there on: the chain alone still links."""
    rows = await sql(config, "SELECT * FROM audit_entry WHERE seq >= :seq ORDER BY seq", seq=seq)
    (before,) = await sql(config, "SELECT hash FROM audit_entry WHERE seq = :seq", seq=seq - 1)
    prev = before["hash"]
    for row in rows:
        details = json_value(row["details"]) | (changed if row["seq"] == seq else {})
        entry = AuditEntry(**(row | {"details": details, "prev_hash": prev}))
        entry.hash = entry.computed_hash()
        await sql(
            config,
            "UPDATE audit_entry SET details = :details, prev_hash = :prev, hash = :hash WHERE seq = :seq",
            details=json.dumps(details),
            prev=prev,
            hash=entry.hash,
            seq=entry.seq,
        )
        prev = entry.hash


async def test_an_untouched_chain_verifies_against_the_broker_and_the_counterparty(
    space: Dataspace, provider: Site, consumer: Site, people_csv: Path
) -> None:
    await exchange_to_the_end(provider, consumer, people_csv)
    receipt = await wait_anchored(space, provider)
    assert receipt["held_by"] == space.broker_url
    made = (await provider.api.get("/audit/checkpoints")).json()["items"]
    reasons = [checkpoint["reason"].split()[::2] for checkpoint in made]
    assert reasons[:2] == [["transfer", "COMPLETED"], ["negotiation", "FINALIZED"]]
    assert made[0]["recipients"] == made[1]["recipients"] == [space.broker_url, consumer.id]
    # the counter-party holds the same checkpoint, and shows it to the provider only
    latest_url = consumer.dsp_url + "/audit/checkpoints/latest"
    async with httpx.AsyncClient() as http:
        mine = await http.get(
            latest_url, headers={"Authorization": f"Bearer {await token(provider.config, consumer.id)}"}
        )
        held = (mine.json(), await http.get(latest_url))
    assert payload(held[0])["seq"] == payload(receipt)["seq"] and held[0]["held_by"] == consumer.id
    assert held[1].status_code == 401
    code, report = await verify(provider)
    assert (code, report["ok"], report["anchored"], report["unreachable"]) == (0, True, True, [])
    assert report["checkpoints"] >= 3  # the broker's two, the counter-party's latest
    assert report["latest_checkpoint"]["seq"] == payload(receipt)["seq"]
    served = (await provider.api.get("/audit/verify")).json()
    assert (served["ok"], served["anchored"], served["checkpoints"]) == (True, True, report["checkpoints"])
    assert (await verify(consumer))[0] == 0


async def test_cutting_off_the_last_entries_is_detected(
    space: Dataspace, provider: Site, consumer: Site, people_csv: Path
) -> None:
    await exchange_to_the_end(provider, consumer, people_csv)
    last = payload(await wait_anchored(space, provider))["seq"]
    await provider.server.stop()
    await sql(provider.config, "DELETE FROM audit_entry WHERE seq > :seq", seq=last - 2)
    assert (await verify(provider, "--local"))[0] == 0  # the chain alone cannot tell
    code, report = await verify(provider)
    assert (code, report["ok"], report["first_broken"]) == (1, False, last - 1)
    assert report["problem"].startswith(f"the chain ends at entry {last - 2}, but ")
    assert f"holds a checkpoint of entry {last} made " in report["problem"]


async def test_rewriting_an_entry_and_recomputing_every_later_hash_is_detected(
    space: Dataspace, provider: Site, consumer: Site, people_csv: Path
) -> None:
    await exchange_to_the_end(provider, consumer, people_csv)
    await wait_anchored(space, provider)
    made = [checkpoint["seq"] for checkpoint in (await provider.api.get("/audit/checkpoints")).json()["items"]]
    denied = next(e for e in (await provider.api.get("/audit")).json()["items"] if e["action"] == "usage.denied")
    await provider.server.stop()
    await recompute_from(provider.config, denied["seq"], purpose="research")
    assert (await verify(provider, "--local"))[0] == 0  # the chain alone links again
    code, report = await verify(provider)
    anchored_before = max(seq for seq in made if seq < denied["seq"])
    first_after = min(seq for seq in made if seq >= denied["seq"])
    assert (code, report["first_broken"]) == (1, first_after)
    assert report["problem"].startswith(f"entry {first_after} is not the entry ")
    assert report["problem"].endswith(f"the chain was rewritten after entry {anchored_before}")


async def test_a_forged_or_backward_checkpoint_is_refused_by_broker_and_peer(
    space: Dataspace, provider: Site, consumer: Site, people_csv: Path
) -> None:
    await negotiate(consumer, provider, await publish(provider, people_csv))
    held = payload(await wait_anchored(space, provider))
    own = Es256Signer(SigningKey.load(provider.config.key_path))
    stranger_key = provider.config.directory / "stranger.key"
    save_private_key(generate_key(), stranger_key)
    forged = Es256Signer(SigningKey.load(stranger_key))

    def signed(signer: Es256Signer, seq: int, participant: str = provider.id) -> str:
        return sign_checkpoint(Checkpoint.now(participant, seq, "ab" * 32, "sha256"), signer)

    broker = f"{space.broker_url}/checkpoints/{quote(provider.id, safe='')}"
    peer = consumer.dsp_url + "/audit/checkpoints"
    for url, audience in ((broker, space.broker_url), (peer, consumer.id)):
        headers = {"Authorization": f"Bearer {await token(provider.config, audience)}"}
        async with httpx.AsyncClient(headers=headers) as http:
            forgery = await http.post(url, json={"checkpoint": signed(forged, held["seq"] + 5)})
            assert forgery.status_code == 400, forgery.text
            assert "signature does not verify" in forgery.json()["detail"]
            someone_else = await http.post(url, json={"checkpoint": signed(own, held["seq"] + 5, consumer.id)})
            assert someone_else.status_code == 400 and "is of 'urn:tessera:consumer'" in someone_else.json()["detail"]
            backward = await http.post(url, json={"checkpoint": signed(own, held["seq"] - 1)})
            assert backward.status_code == 409, backward.text
            other_hash = await http.post(url, json={"checkpoint": signed(own, held["seq"])})
            assert other_hash.status_code == 409
            assert (await http.post(url, json={"checkpoint": "not a JWS"})).status_code == 400
            assert (await http.post(url, content=b'{"checkpoint": NaN}')).status_code == 400
    # the broker keeps only a participant's own checkpoints, the peer only those of whom it dealt with
    consumer_token = await token(consumer.config, space.broker_url)
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {consumer_token}"}) as http:
        assert (await http.post(broker, json={"checkpoint": signed(own, held["seq"] + 1)})).status_code == 403
    stranger = await space.admit("stranger")
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {await token(stranger, consumer.id)}"}) as http:
        theirs = sign_checkpoint(
            Checkpoint.now(stranger.participant_id, 1, "cd" * 32, "sha256"),
            Es256Signer(SigningKey.load(stranger.key_path)),
        )
        assert (await http.post(peer, json={"checkpoint": theirs})).status_code == 403
    assert payload(await broker_latest(space, provider) or {})["seq"] == held["seq"]  # nothing forged got in
    assert (await verify(provider))[0] == 0


async def test_a_checkpoint_made_while_its_recipient_is_down_arrives_after_a_restart(
    space: Dataspace, provider: Site, consumer: Site, people_csv: Path
) -> None:
    negotiation = await negotiate(consumer, provider, await publish(provider, people_csv))
    await start_transfer(consumer, negotiation["agreement_id"])
    ours = (await provider.api.get("/transfers")).json()["items"][0]
    await consumer.server.stop()
    await provider.post(f"/transfers/{ours['id']}/terminate", {"reason": "maintenance"}, expect=200)
    made = (await provider.api.get("/audit/checkpoints")).json()["items"][0]
    assert made["reason"].endswith("TERMINATED") and consumer.id in made["recipients"]
    await provider.server.restart()  # the checkpoint is in the outbox, not yet at the consumer
    await consumer.server.start()
    latest_url = consumer.dsp_url + "/audit/checkpoints/latest"
    headers = {"Authorization": f"Bearer {await token(provider.config, consumer.id)}"}
    async with httpx.AsyncClient(headers=headers) as http:
        for _ in range(300):
            held = await http.get(latest_url)
            if held.status_code == 200 and payload(held.json())["seq"] == made["seq"]:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"the consumer never received checkpoint {made['seq']}: {held.text}")
    assert payload(await broker_latest(space, provider) or {})["seq"] == made["seq"]


async def test_a_receipt_verifies_offline_and_against_the_chain(
    space: Dataspace, provider: Site, consumer: Site, people_csv: Path, tmp_path: Path
) -> None:
    await exchange_to_the_end(provider, consumer, people_csv)
    receipt = await wait_anchored(space, provider)
    receipt_file, record_file, other_file = tmp_path / "receipt.json", tmp_path / "record.json", tmp_path / "other.json"
    receipt_file.write_text(json.dumps(receipt))
    async with httpx.AsyncClient() as http:
        record_file.write_text((await http.get(f"{space.broker_url}/participants/{provider.id}")).text)
        other_file.write_text((await http.get(f"{space.broker_url}/participants/{consumer.id}")).text)
    # The consumer's management API lists what it holds of the provider's chain, as a receipt to verify.
    held = await consumer.wait_for("/audit/receipts", "present")
    listed = next(item for item in held["items"] if item["participant_id"] == provider.id)  # the newest
    assert listed["receipt"]["held_by"] == consumer.id and payload(listed["receipt"])["seq"] == listed["seq"]
    listed_file = tmp_path / "listed.json"
    listed_file.write_text(json.dumps(listed["receipt"]))
    await provider.server.stop()
    await space.stack.aclose()  # no broker, no peers: offline

    assert (await tessera("audit", "verify-receipt", str(listed_file), "--jwks", str(record_file)))[0] == 0

    code, out, _ = await tessera("audit", "verify-receipt", str(receipt_file), "--jwks", str(record_file), "--json")
    result = json.loads(out)
    assert (code, result["ok"], result["key"], result["checkpoint"]) == (0, True, "given", payload(receipt))
    code, out, _ = await tessera("audit", "verify-receipt", str(receipt_file), "--dir", str(provider.config.directory))
    assert code == 0 and "matches" in out and "the receipt's own" in out
    assert (await tessera("audit", "verify-receipt", str(receipt_file), "--jwks", str(other_file)))[0] == 1
    header, _, signature = receipt["checkpoint"].split(".")
    changed = base64.urlsafe_b64encode(json.dumps(payload(receipt) | {"seq": 1}).encode()).rstrip(b"=").decode()
    receipt_file.write_text(json.dumps(receipt | {"checkpoint": f"{header}.{changed}.{signature}"}))
    assert (await tessera("audit", "verify-receipt", str(receipt_file)))[0] == 1
    assert (await tessera("audit", "verify-receipt", str(tmp_path / "missing.json")))[0] == 2

    receipt_file.write_text(json.dumps(receipt))
    await sql(provider.config, "DELETE FROM audit_entry WHERE seq = :seq", seq=payload(receipt)["seq"])
    code, out, _ = await tessera(
        "audit", "verify-receipt", str(receipt_file), "--dir", str(provider.config.directory), "--json"
    )
    assert (code, json.loads(out)["chain"]["first_broken"]) == (1, payload(receipt)["seq"])


async def test_a_periodic_checkpoint_anchors_a_chain_that_grew(space: Dataspace, people_csv: Path) -> None:
    config = dataclasses.replace(await space.admit("provider"), audit_checkpoint_interval=0.2)
    config.save()
    provider = await space.start(config)
    await publish(provider, people_csv)  # three entries, no process ends
    receipt = await wait_anchored(space, provider)
    assert payload(receipt)["seq"] == 3
    made = (await provider.api.get("/audit/checkpoints")).json()["items"]
    # A slow machine may see the chain at one or two entries first; each checkpoint follows growth.
    assert {(m["reason"], tuple(m["recipients"])) for m in made} == {("periodic", (space.broker_url,))}
    seqs = sorted(m["seq"] for m in made)
    assert seqs[-1] == 3 and len(set(seqs)) == len(seqs)
    await asyncio.sleep(0.5)  # no growth, no new checkpoint
    assert len((await provider.api.get("/audit/checkpoints")).json()["items"]) == len(made)


async def test_an_sm_connector_anchors_its_sm3_chain_with_sm2_signatures(space: Dataspace, people_csv: Path) -> None:
    config = dataclasses.replace(await space.admit("provider"), crypto_profile="sm", audit_checkpoint_interval=0.2)
    config.crypto.create_keys(sm2_key=config.sm2_key_path)
    config.save()
    provider = await space.start(config)
    await publish(provider, people_csv)
    receipt = await wait_anchored(space, provider)
    assert payload(receipt)["hash_alg"] == "sm3"
    header = json.loads(base64.urlsafe_b64decode(receipt["checkpoint"].split(".")[0] + "=="))
    assert header["alg"] == "SM2SM3"
    code, report = await verify(provider)
    assert (code, report["hashes"], report["latest_checkpoint"]["seq"]) == (0, ["sm3"], 3)


async def test_verify_without_the_broker_exits_3_unless_local(
    space: Dataspace, provider: Site, people_csv: Path, tmp_path: Path
) -> None:
    await publish(provider, people_csv)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(provider.config.key_path, elsewhere / "connector.key")
    away = f"http://127.0.0.1:{unused_port()}"
    dataclasses.replace(provider.config, directory=elsewhere, broker_url=away).save()
    code, out, err = await tessera("audit", "verify", "--dir", str(elsewhere), "--json")
    assert (code, json.loads(out)["unreachable"], json.loads(out)["ok"]) == (3, [away], True)
    assert "could not be asked" in err
    assert (await tessera("audit", "verify", "--dir", str(elsewhere), "--local"))[0] == 0
