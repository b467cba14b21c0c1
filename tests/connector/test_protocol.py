"""DSP endpoints: tokens are verified, bad input gets DSP errors, and every message we send is valid."""

import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from connector import replies
from tessera.identity import SigningKey, generate_key
from tests.dataspace import Dataspace, Site, json_value, negotiate, publish, sql, start_transfer
from tests.dsp_schemas import validate_message

CONTEXT = ["https://w3id.org/dspace/2025/1/context.jsonld"]


async def token_as(space: Dataspace, name: str, audience: str) -> str:
    return await space.sites[f"urn:tessera:{name}"].token_for(audience)


def authority_token(space: Dataspace, **claims: Any) -> str:
    """A token signed with the authority's real key, with claims the test chooses."""
    assert space.broker_config is not None
    now = int(time.time())
    base = {"iss": space.broker_url, "iat": now, "exp": now + 60, "jti": str(uuid.uuid4())}
    return SigningKey.load(space.broker_config.key_path).sign_jwt({**base, **claims}, typ="at+jwt")


def dsp_message(kind: str, **fields: Any) -> dict[str, Any]:
    """A DSP message as a peer writes it: the 2025-1 context, the @type, then `fields` in order."""
    return {"@context": CONTEXT, "@type": kind, **fields}


def catalog_request() -> dict[str, Any]:
    return dsp_message("CatalogRequestMessage")


def termination(provider_pid: str, consumer_pid: str, *, code: str, reason: str) -> dict[str, Any]:
    return dsp_message(
        "ContractNegotiationTerminationMessage",
        providerPid=provider_pid,
        consumerPid=consumer_pid,
        code=code,
        reason=[reason],
    )


def transfer_request(consumer_pid: str, agreement_id: str, callback_address: str) -> dict[str, Any]:
    return dsp_message(
        "TransferRequestMessage",
        consumerPid=consumer_pid,
        agreementId=agreement_id,
        format="HttpData-PULL",
        callbackAddress=callback_address,
    )


async def dsp_post(site: Site, path: str, body: Any, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient() as http:
        if isinstance(body, (bytes, str)):
            return await http.post(site.dsp_url + path, content=body, headers=headers)
        return await http.post(site.dsp_url + path, json=body, headers=headers)


async def test_version_metadata_needs_no_token(provider: Site) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(provider.config.url + "/.well-known/dspace-version")
    assert response.status_code == 200
    [version] = response.json()["protocolVersions"]
    assert version == {
        "version": "2025-1",
        "path": "/dsp",
        "binding": "HTTPS",
        "serviceId": provider.dsp_url + "#data-service",  # the catalog's DataService
        "auth": {"protocol": "OAuth", "version": "2", "profile": ["client_credentials", "private_key_jwt"]},
    }
    assert validate_message(response.json()) == []


async def test_valid_token_is_accepted(space: Dataspace, provider: Site, consumer: Site) -> None:
    response = await dsp_post(
        provider, "/catalog/request", catalog_request(), await token_as(space, "consumer", provider.id)
    )
    assert response.status_code == 200
    assert validate_message(response.json()) == []


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda s, p: None, id="missing"),
        pytest.param(lambda s, p: "not-a-jwt", id="malformed"),
        pytest.param(
            lambda s, p: SigningKey(generate_key(), SigningKey.load(s.broker_config.key_path).kid).sign_jwt(
                {
                    "iss": s.broker_url,
                    "sub": "urn:tessera:consumer",
                    "aud": p.id,
                    "iat": int(time.time()),
                    "exp": int(time.time()) + 60,
                    "jti": "x",
                }
            ),
            id="bad-signature",
        ),
        pytest.param(
            lambda s, p: authority_token(s, sub="urn:tessera:consumer", aud="urn:tessera:someone-else"),
            id="wrong-audience",
        ),
        pytest.param(
            lambda s, p: authority_token(
                s, sub="urn:tessera:consumer", aud=p.id, iat=int(time.time()) - 900, exp=int(time.time()) - 600
            ),
            id="expired",
        ),
        pytest.param(
            lambda s, p: authority_token(s, sub="urn:tessera:consumer", aud=p.id, iss="http://evil.example"),
            id="wrong-issuer",
        ),
    ],
)
async def test_bad_tokens_are_rejected_with_a_dsp_error(
    space: Dataspace, provider: Site, consumer: Site, forge: Callable[[Dataspace, Site], str | None]
) -> None:
    response = await dsp_post(provider, "/catalog/request", catalog_request(), forge(space, provider))
    assert response.status_code == 401
    assert response.json()["@type"] == "CatalogError"
    assert validate_message(response.json()) == []


async def test_a_participant_cannot_act_on_another_participants_negotiation(
    space: Dataspace, provider: Site, consumer: Site, people_csv: Path
) -> None:
    mallory = await space.start(await space.admit("mallory"))
    offer = await publish(provider, people_csv)
    negotiation = await negotiate(consumer, provider, offer)
    provider_pid = (await provider.api.get("/negotiations")).json()["items"][0]["id"]
    token = await token_as(space, "mallory", provider.id)
    async with httpx.AsyncClient() as http:
        seen = await http.get(
            f"{provider.dsp_url}/negotiations/{provider_pid}", headers={"Authorization": f"Bearer {token}"}
        )
    assert seen.status_code == 404
    hijack = termination(provider_pid, negotiation["consumer_pid"], code="x", reason="hijack")
    response = await dsp_post(provider, f"/negotiations/{provider_pid}/termination", hijack, token)
    assert response.status_code == 404
    transfer = transfer_request("urn:uuid:m", negotiation["agreement_id"], mallory.dsp_url)
    response = await dsp_post(provider, "/transfers/request", transfer, token)
    assert response.status_code == 400  # the agreement is not Mallory's
    assert (await provider.api.get(f"/negotiations/{provider_pid}")).json()["state"] == "FINALIZED"


@pytest.mark.parametrize(
    ("path", "body", "status", "kind"),
    [
        ("/negotiations/request", b"{not json", 400, "ContractNegotiationError"),
        ("/negotiations/request", dsp_message("ContractRequestMessage"), 400, "ContractNegotiationError"),
        (
            "/negotiations/request",
            dsp_message(
                "ContractRequestMessage",
                consumerPid="c",
                offer={"@id": "urn:uuid:nope"},
                callbackAddress="http://127.0.0.1:9",
            ),
            400,
            "ContractNegotiationError",
        ),
        ("/negotiations/urn:uuid:unknown", None, 404, "ContractNegotiationError"),
        (
            "/negotiations/urn:uuid:unknown/termination",
            dsp_message("ContractNegotiationTerminationMessage", providerPid="urn:uuid:unknown", consumerPid="c"),
            404,
            "ContractNegotiationError",
        ),
        (
            "/transfers/request",
            transfer_request("c", "urn:uuid:none", "http://127.0.0.1:9"),
            400,
            "TransferError",
        ),
        (
            "/transfers/urn:uuid:unknown/completion",
            dsp_message("TransferCompletionMessage", providerPid="urn:uuid:unknown", consumerPid="c"),
            404,
            "TransferError",
        ),
        ("/catalog/request", dsp_message("CatalogRequestMessage", filter=[{"x": 1}]), 400, "CatalogError"),
    ],
)
async def test_bad_messages_get_dsp_errors_and_change_nothing(
    space: Dataspace, provider: Site, consumer: Site, path: str, body: Any, status: int, kind: str
) -> None:
    token = await token_as(space, "consumer", provider.id)
    if body is None:
        async with httpx.AsyncClient() as http:
            response = await http.get(provider.dsp_url + path, headers={"Authorization": f"Bearer {token}"})
    else:
        response = await dsp_post(provider, path, body, token)
    assert response.status_code == status, response.text
    assert response.json()["@type"] == kind
    assert validate_message(response.json()) == []
    assert (await provider.api.get("/negotiations")).json()["items"] == []
    assert (await provider.api.get("/transfers")).json()["items"] == []


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"@type": "ContractRequestMessage", "consumerPid": NaN}', "NaN is not a JSON number"),
        (b'{"@type": "ContractRequestMessage", "consumerPid": "\\ud800"}', "lone surrogate"),
        (b'{"@type": "ContractRequestMessage", "@type": "x"}', "appears twice"),
        (b'{"a": ' * 3000 + b"1" + b"}" * 3000, "nested deeper"),
        (b"[" * 200_000 + b"]" * 200_000, "nested deeper"),
    ],
)
async def test_json_that_is_not_strict_json_is_a_dsp_error(
    space: Dataspace, provider: Site, consumer: Site, body: bytes, says: str
) -> None:
    response = await dsp_post(provider, "/negotiations/request", body, await token_as(space, "consumer", provider.id))
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["@type"] == "ContractNegotiationError" and validate_message(answer) == []
    assert any(says in reason for reason in answer["reason"])


async def test_a_message_holding_nul_is_a_dsp_error_naming_the_field(
    space: Dataspace, provider: Site, consumer: Site, people_csv: Path
) -> None:
    """Valid JSON, but PostgreSQL cannot store U+0000 in text: it was a 500 there (and stored on SQLite)."""
    offer = await publish(provider, people_csv)
    request = dsp_message(
        "ContractRequestMessage",
        consumerPid="urn:uuid:c\u0000",
        offer={"@id": offer["id"], "target": offer["asset_id"]},
        callbackAddress=consumer.dsp_url,
    )
    response = await dsp_post(
        provider, "/negotiations/request", request, await token_as(space, "consumer", provider.id)
    )
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["@type"] == "ContractNegotiationError" and validate_message(answer) == []
    assert any("consumerPid: must not hold U+0000" in reason for reason in answer["reason"])
    assert (await provider.api.get("/negotiations")).json()["items"] == []


async def test_a_body_past_the_limit_is_refused_before_it_is_read_whole(
    space: Dataspace, provider: Site, consumer: Site
) -> None:
    token = await token_as(space, "consumer", provider.id)

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit must hold while streaming
        for _ in range(64):
            yield b" " * 65536

    async with httpx.AsyncClient() as http:
        response = await http.post(
            provider.dsp_url + "/negotiations/request", content=chunks(), headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 413, response.text
        assert response.json()["@type"] == "ContractNegotiationError"
        managed = await http.post(
            provider.config.url + "/api/assets",
            content=chunks(),
            headers={"Authorization": f"Bearer {provider.config.management_token}"},
        )
    assert managed.status_code == 413 and managed.headers["content-type"] == "application/problem+json"


async def test_management_endpoints_take_strict_json_only(provider: Site) -> None:
    response = await provider.api.post(
        "/assets", content=b'{"title": "x", "format": "csv", "path": "/etc/hostname", "keywords": [NaN]}'
    )
    assert response.status_code == 400 and response.headers["content-type"] == "application/problem+json"
    assert "NaN is not a JSON number" in response.json()["detail"]


async def test_messages_after_a_final_state_are_refused(
    space: Dataspace, provider: Site, consumer: Site, people_csv: Path
) -> None:
    offer = await publish(provider, people_csv)
    negotiation = await negotiate(consumer, provider, offer)
    provider_pid = negotiation["provider_pid"]
    token = await token_as(space, "consumer", provider.id)
    late = termination(provider_pid, negotiation["consumer_pid"], code="late", reason="too late")
    response = await dsp_post(provider, f"/negotiations/{provider_pid}/termination", late, token)
    assert response.status_code == 400
    assert validate_message(response.json()) == []
    verification = dsp_message(
        "ContractAgreementVerificationMessage", providerPid=provider_pid, consumerPid=negotiation["consumer_pid"]
    )
    response = await dsp_post(provider, f"/negotiations/{provider_pid}/agreement/verification", verification, token)
    assert response.status_code == 400
    assert (await provider.api.get(f"/negotiations/{provider_pid}")).json()["state"] == "FINALIZED"


async def test_repeated_transfer_request_answers_as_the_first(
    space: Dataspace, provider: Site, consumer: Site, people_csv: Path
) -> None:
    offer = await publish(provider, people_csv)
    negotiation = await negotiate(consumer, provider, offer)
    token = await token_as(space, "consumer", provider.id)
    request = transfer_request("urn:uuid:same", negotiation["agreement_id"], consumer.dsp_url)
    first = await dsp_post(provider, "/transfers/request", request, token)
    second = await dsp_post(provider, "/transfers/request", request, token)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert validate_message(first.json()) == []
    assert len((await provider.api.get("/transfers")).json()["items"]) == 1


async def test_a_retry_after_a_crash_past_the_state_commit_is_answered_as_the_first(
    space: Dataspace, provider: Site, consumer: Site, people_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The answer commits with the change it reports: a crash right after that commit (here: the step after
    it fails) still leaves the retry its answer, not a 400 for a transition already made."""
    offer = await publish(provider, people_csv)
    negotiation = await negotiate(consumer, provider, offer)
    token = await token_as(space, "consumer", provider.id)
    request = transfer_request("urn:uuid:crash", negotiation["agreement_id"], consumer.dsp_url)
    provider_pid = (await dsp_post(provider, "/transfers/request", request, token)).json()["providerPid"]
    body = dsp_message(
        "TransferTerminationMessage", providerPid=provider_pid, consumerPid="urn:uuid:crash", code="x", reason=["r"]
    )

    async def crash(*_args: Any) -> None:
        raise RuntimeError("the process died after the state transaction committed")

    monkeypatch.setattr(replies, "remember", crash)
    first = await dsp_post(provider, f"/transfers/{provider_pid}/termination", body, token)
    monkeypatch.undo()
    assert first.status_code == 500  # the sender saw no answer: it retries
    retried = await dsp_post(provider, f"/transfers/{provider_pid}/termination", body, token)
    assert retried.status_code == 200, retried.text
    assert retried.json()["state"] == "TERMINATED"
    assert validate_message(retried.json()) == []


async def test_every_message_either_side_sent_is_valid_dsp(
    space: Dataspace, provider: Site, consumer: Site, people_csv: Path
) -> None:
    offer = await publish(provider, people_csv)
    negotiation = await negotiate(consumer, provider, offer)
    completed = await start_transfer(consumer, negotiation["agreement_id"])
    await consumer.post(f"/transfers/{completed['id']}/complete", {}, 200)
    terminated = await start_transfer(consumer, negotiation["agreement_id"])
    await consumer.post(f"/transfers/{terminated['id']}/terminate", {"reason": "no longer needed"}, 200)
    refused = await publish(provider, people_csv, access="package deny_all\ndefault allow := false\n")
    assert (await negotiate(consumer, provider, refused))["state"] == "TERMINATED"
    for transfer, state in ((completed, "COMPLETED"), (terminated, "TERMINATED")):
        await provider.wait_for(f"/transfers/{transfer['provider_pid']}", state)

    sent = await outbox(provider) + await outbox(consumer)
    assert {message["@type"] for message in sent} == {
        "ContractRequestMessage",
        "ContractAgreementMessage",
        "ContractAgreementVerificationMessage",
        "ContractNegotiationEventMessage",
        "ContractNegotiationTerminationMessage",
        "TransferRequestMessage",
        "TransferStartMessage",
        "TransferCompletionMessage",
        "TransferTerminationMessage",
    }
    for message in sent:
        assert validate_message(message) == [], message


async def outbox(site: Site) -> list[dict[str, Any]]:
    """The DSP messages a connector sent (audit checkpoints go beside DSP, to the broker and the peer)."""
    statement = "SELECT body FROM outbox_message WHERE process_id NOT LIKE 'audit-checkpoints:%'"
    return [json_value(row["body"]) for row in await sql(site.config, statement)]


async def test_peers_dialects_are_understood_and_answered_in_2025_1_form(
    space: Dataspace, provider: Site, consumer: Site, people_csv: Path
) -> None:
    """EDC-style messages: extra contexts and terms, prefixed terms, node and value objects, bare reason."""
    offer = await publish(provider, people_csv)
    token = await token_as(space, "consumer", provider.id)
    request = {
        "@context": [*CONTEXT, {"edc": "https://w3id.org/edc/v0.0.1/ns/"}],
        "@type": "dspace:ContractRequestMessage",
        "dspace:consumerPid": {"@value": "urn:uuid:edc-1"},
        "dspace:offer": {
            "@type": "odrl:Offer",
            "@id": offer["id"],
            "odrl:target": {"@id": offer["asset_id"]},
            "odrl:permission": {"odrl:action": {"@id": "odrl:use"}},
        },
        "dspace:callbackAddress": consumer.dsp_url,
        "edc:extra": "ignored",
    }
    response = await dsp_post(provider, "/negotiations/request", request, token)
    assert response.status_code == 201, response.text
    assert response.json()["consumerPid"] == "urn:uuid:edc-1"
    assert response.json()["@context"] == CONTEXT
    assert validate_message(response.json()) == []
    bare_reason = dsp_message(
        "ContractNegotiationTerminationMessage",
        providerPid=response.json()["providerPid"],
        consumerPid="urn:uuid:edc-1",
        reason="changed plans",
    )
    ended = await dsp_post(provider, f"/negotiations/{response.json()['providerPid']}/termination", bare_reason, token)
    assert ended.status_code in (200, 400)  # 400 when the provider already finalized on its own
