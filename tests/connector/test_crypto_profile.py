"""The SM crypto profile on real connectors: SM2 agreement signatures, SM3 audit chains, mixed profiles.

Two connectors on `crypto_profile = "sm"` sign and countersign with SM2 and check each other through the
keys their identities bound; a signature changed on the wire is refused; an SM connector's audit chain
is SM3 and `tessera audit verify` checks it. A default and an SM connector still agree, with the other's
signature set aside under "when-offered", or refuse under "required". The vectors are in
tests/tessera/test_crypto.py.
"""

import base64
import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from connector.config import ConnectorConfig
from tessera import dsp
from tessera.crypto import UnacceptedAlgorithm, verify_document
from tessera.identity import canonical_json
from tests.dataspace import Dataspace, Site, json_value, negotiate, publish, sql, start_transfer, tessera
from tests.faults import Relay
from tests.utils import run_server, unused_port


async def start(space: Dataspace, name: str, profile: str = "sm", **settings: Any) -> Site:
    """A connector admitted by the authority and run on `profile`; its SM2 key made as `connector init` does."""
    config = dataclasses.replace(await space.admit(name), crypto_profile=profile, **settings)
    config.crypto.create_keys(sm2_key=config.sm2_key_path)
    config.save()
    return await space.start(config)


async def identity_jwk(space: Dataspace, site: Site) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        jwk: dict[str, Any] = (await http.get(f"{space.broker_url}/participants/{site.id}")).json()["jwk"]
    return jwk


async def agreement_of(site: Site, negotiation: dict[str, Any]) -> dict[str, Any]:
    agreement: dict[str, Any] = (await site.api.get(f"/agreements/{negotiation['agreement_id']}")).json()
    return agreement


async def audit_verify(config: ConnectorConfig) -> tuple[int, dict[str, Any]]:
    """`tessera audit verify`, while the servers it asks for the chain's checkpoints keep running."""
    code, out, _ = await tessera("audit", "verify", "--dir", str(config.directory), "--json")
    return code, json.loads(out)


async def test_two_sm_connectors_sign_countersign_and_verify_each_other(space: Dataspace, people_csv: Path) -> None:
    provider, consumer = await start(space, "provider"), await start(space, "consumer")
    done = await negotiate(consumer, provider, await publish(provider, people_csv))
    assert done["state"] == "FINALIZED", done
    ours, theirs = await agreement_of(consumer, done), await agreement_of(provider, done)
    assert ours["countersigned"] is True and theirs["countersigned"] is True
    assert (ours["provider_signature"], ours["consumer_signature"]) == (
        theirs["provider_signature"],
        theirs["consumer_signature"],
    )
    document = canonical_json(ours["agreement"])
    for signer, signature in ((provider, ours["provider_signature"]), (consumer, ours["consumer_signature"])):
        assert jwt.get_unverified_header(signature)["alg"] == "SM2SM3"
        jwk = await identity_jwk(space, signer)
        assert canonical_json(verify_document(signature, jwk, accept=("SM2SM3",))) == document
        with pytest.raises(UnacceptedAlgorithm):
            verify_document(signature, jwk)  # a default-profile verifier sets it aside
    assert (await start_transfer(consumer, done["agreement_id"]))["state"] == "STARTED"


@pytest.fixture
async def relay(space: Dataspace) -> AsyncIterator[tuple[Site, Site, Relay]]:
    """An SM provider and an SM consumer whose DSP messages both pass a relay that can rewrite them."""
    provider, consumer = await start(space, "provider"), await start(space, "consumer")
    between = Relay(provider.config.url, consumer.config.url)
    port = unused_port()
    between.base = f"http://127.0.0.1:{port}"
    async with run_server(between.app, port):
        yield provider, consumer, between


async def negotiate_through(relay: tuple[Site, Site, Relay], people_csv: Path) -> dict[str, Any]:
    provider, consumer, between = relay
    offer = await publish(provider, people_csv)
    body = {"provider_id": provider.id, "provider_url": f"{between.base}/to-provider/dsp", "offer_id": offer["id"]}
    started = await consumer.post("/negotiations", body | {"target": offer["asset_id"]})
    return await consumer.wait_for(f"/negotiations/{started['id']}", "FINALIZED", "TERMINATED")


def flip_signature(carrier: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A rewrite that changes one bit of the SM2 signature inside what `carrier` returns."""

    def change(message: dict[str, Any]) -> dict[str, Any]:
        holder = carrier(message)
        header, payload, signature = holder[dsp.SIGNATURE].split(".")
        raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
        raw[7] ^= 1
        holder[dsp.SIGNATURE] = f"{header}.{payload}.{base64.urlsafe_b64encode(raw).decode().rstrip('=')}"
        return message

    return change


async def test_a_provider_signature_changed_on_the_wire_is_refused(
    relay: tuple[Site, Site, Relay], people_csv: Path
) -> None:
    _provider, consumer, between = relay
    between.alter("ContractAgreementMessage", flip_signature(lambda message: message["agreement"]))
    done = await negotiate_through(relay, people_csv)
    assert done["state"] == "TERMINATED"
    assert done["reasons"] == [
        "the agreement is refused: the provider signature is refused: signature does not verify: "
        "Signature verification failed"
    ]
    assert (await consumer.api.get("/agreements")).json()["items"] == []


async def test_a_consumer_countersignature_changed_on_the_wire_is_refused(
    relay: tuple[Site, Site, Relay], people_csv: Path
) -> None:
    provider, _consumer, between = relay
    between.alter("ContractAgreementVerificationMessage", flip_signature(lambda message: message))
    await negotiate_through(relay, people_csv)
    [negotiation] = (await provider.api.get("/negotiations")).json()["items"]
    ended = await provider.wait_for(f"/negotiations/{negotiation['id']}", "TERMINATED")
    assert ended["reasons"] == [
        "the consumer signature is refused: signature does not verify: Signature verification failed"
    ]
    assert (await provider.api.get("/agreements")).json()["items"] == []


async def test_an_sm_connectors_audit_chain_is_sm3_verifies_and_shows_a_changed_entry(
    space: Dataspace, people_csv: Path
) -> None:
    provider, consumer = await start(space, "provider"), await start(space, "consumer")
    assert (await negotiate(consumer, provider, await publish(provider, people_csv)))["state"] == "FINALIZED"
    code, report = await audit_verify(provider.config)
    assert (code, report["ok"], report["hashes"]) == (0, True, ["sm3"])
    served = (await provider.api.get("/audit/verify")).json()
    assert (served["ok"], served["hashes"]) == (True, ["sm3"])
    assert {row["hash_alg"] for row in await sql(provider.config, "SELECT hash_alg FROM audit_entry")} == {"sm3"}
    [verified] = await sql(
        provider.config, "SELECT seq, details FROM audit_entry WHERE action = 'negotiation.verified'"
    )
    seq, changed = verified["seq"], json.dumps(json_value(verified["details"]) | {"x": 1})
    await sql(provider.config, "UPDATE audit_entry SET details = :details WHERE seq = :seq", details=changed, seq=seq)
    code, report = await audit_verify(provider.config)
    assert (code, report["first_broken"], report["problem"]) == (1, seq, f"entry {seq} was altered (hash mismatch)")


async def test_relabelling_an_sm3_entry_as_sha256_is_detected(space: Dataspace, people_csv: Path) -> None:
    provider = await start(space, "provider")
    await publish(provider, people_csv)
    await sql(provider.config, "UPDATE audit_entry SET hash_alg = 'sha256' WHERE seq = 2")
    code, report = await audit_verify(provider.config)
    assert (code, report["first_broken"], report["hashes"]) == (1, 2, ["sm3"])


@pytest.mark.parametrize(("provider_profile", "consumer_profile"), [("default", "sm"), ("sm", "default")])
async def test_a_default_and_an_sm_connector_agree_with_each_others_signature_set_aside(
    space: Dataspace, people_csv: Path, provider_profile: str, consumer_profile: str
) -> None:
    provider = await start(space, "provider", provider_profile)
    consumer = await start(space, "consumer", consumer_profile)
    done = await negotiate(consumer, provider, await publish(provider, people_csv))
    assert done["state"] == "FINALIZED", done
    for site, theirs, signed in ((provider, "consumer", "verified"), (consumer, "provider", "agreed")):
        kept = await agreement_of(site, done)
        assert kept["countersigned"] is False and kept[f"{theirs}_signature"] is None
        audit = (await site.api.get("/audit")).json()["items"]
        [entry] = [e for e in audit if e["action"] == f"negotiation.{signed}"]
        profile = site.config.crypto
        assert entry["details"]["signature_ignored"].endswith(
            f"crypto profile {profile.name} accepts {profile.signature}"
        )
    assert (await start_transfer(consumer, done["agreement_id"]))["state"] == "STARTED"


async def test_required_signatures_refuse_a_provider_on_the_other_profile(space: Dataspace, people_csv: Path) -> None:
    provider = await start(space, "provider", "default")
    consumer = await start(space, "consumer", "sm", agreement_signatures="required")
    done = await negotiate(consumer, provider, await publish(provider, people_csv))
    assert done["state"] == "TERMINATED"
    assert done["reasons"] == [
        "the agreement is refused: the provider signature is ES256; crypto profile sm accepts SM2SM3, "
        "and this connector requires a signature"
    ]


async def test_required_signatures_refuse_a_consumer_on_the_other_profile(space: Dataspace, people_csv: Path) -> None:
    provider = await start(space, "provider", "sm", agreement_signatures="required")
    consumer = await start(space, "consumer", "default")
    await negotiate(consumer, provider, await publish(provider, people_csv), until=("TERMINATED",))
    [negotiation] = (await provider.api.get("/negotiations")).json()["items"]
    ended = await provider.wait_for(f"/negotiations/{negotiation['id']}", "TERMINATED")
    assert ended["reasons"] == [
        "the consumer signature is ES256; crypto profile sm accepts SM2SM3, and this connector requires a signature"
    ]


async def test_connector_init_with_the_sm_profile_makes_an_sm2_key(tmp_path: Path) -> None:
    args = ("--participant-id", "urn:tessera:acme", "--url", "http://127.0.0.1:9", "--broker-url", "http://b")
    code, out, err = await tessera(
        "connector", "init", "--dir", str(tmp_path), *args, "--crypto-profile", "sm", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["crypto_profile"] == "sm"
    config = ConnectorConfig.load(tmp_path)
    assert config.crypto_profile == "sm"
    assert oct(config.sm2_key_path.stat().st_mode & 0o777) == "0o600"
    config.sm2_key_path.unlink()
    code, _, err = await tessera("connector", "serve", "--dir", str(tmp_path))
    message = " ".join(err.split())  # rich wraps long lines
    assert code == 2 and "crypto profile sm:" in message and "connector.sm2.key does not exist" in message


async def test_an_unknown_crypto_profile_is_refused_naming_the_allowed_ones(tmp_path: Path) -> None:
    args = ("--participant-id", "urn:tessera:acme", "--url", "http://127.0.0.1:9", "--broker-url", "http://b")
    code, _, err = await tessera("connector", "init", "--dir", str(tmp_path), *args, "--crypto-profile", "rsa")
    assert code == 2
    assert "crypto_profile must be one of ('default', 'sm'), not 'rsa'" in " ".join(err.split())
    assert not (tmp_path / "connector.key").exists()
