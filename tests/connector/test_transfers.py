"""Transfer processes: suspension and resumption from either side, completion, push, token refresh,
pulls from data addresses without a Tessera data token, and a provider that starts asynchronously
(`transfer_start = "async"`)."""

import asyncio
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tessera import dsp
from tessera.identity import SigningKey
from tests.dataspace import PEOPLE, Dataspace, Site, json_value, negotiate, publish, rows, sql, start_transfer
from tests.utils import run_server


async def agreed(provider: Site, consumer: Site, data: Path) -> str:
    offer = await publish(provider, data)
    agreement_id: str = (await negotiate(consumer, provider, offer))["agreement_id"]
    return agreement_id


async def pushed(provider: Site, consumer: Site, data: Path, purpose: str) -> dict[str, Any]:
    """A push transfer for `purpose` under a fresh agreement, once it has completed or been terminated."""
    agreement = await agreed(provider, consumer, data)
    return await start_transfer(consumer, agreement, until=("COMPLETED",), format="HttpData-PUSH", purpose=purpose)


async def test_consumer_suspends_and_resumes_a_pull_transfer(provider: Site, consumer: Site, people_csv: Path) -> None:
    transfer = await start_transfer(consumer, await agreed(provider, consumer, people_csv))
    data = f"/transfers/{transfer['id']}/data"
    await consumer.post(f"/transfers/{transfer['id']}/suspend", {"reason": "maintenance"}, 200)
    await provider.wait_for(f"/transfers/{transfer['provider_pid']}", "SUSPENDED")
    assert (await consumer.api.get(data, params={"purpose": "research"})).status_code == 403
    await consumer.post(f"/transfers/{transfer['id']}/resume", {}, 200)
    await provider.wait_for(f"/transfers/{transfer['provider_pid']}", "STARTED")
    assert (await consumer.api.get(data, params={"purpose": "research"})).status_code == 200


async def test_provider_suspends_and_resumes_with_a_new_data_address(
    provider: Site, consumer: Site, people_csv: Path
) -> None:
    transfer = await start_transfer(consumer, await agreed(provider, consumer, people_csv))
    ours = f"/transfers/{transfer['provider_pid']}"
    await provider.post(f"{ours}/suspend", {"reason": "policy review"}, 200)
    suspended = await consumer.wait_for(f"/transfers/{transfer['id']}", "SUSPENDED")
    assert suspended["reasons"] == ["policy review"]
    await provider.post(f"{ours}/resume", {}, 200)
    await consumer.wait_for(f"/transfers/{transfer['id']}", "STARTED")
    pulled = await consumer.api.get(f"/transfers/{transfer['id']}/data", params={"purpose": "research"})
    assert pulled.status_code == 200


async def test_a_suspended_transfer_cannot_complete(provider: Site, consumer: Site, people_csv: Path) -> None:
    transfer = await start_transfer(consumer, await agreed(provider, consumer, people_csv))
    await consumer.post(f"/transfers/{transfer['id']}/suspend", {}, 200)
    refused = await consumer.api.post(f"/transfers/{transfer['id']}/complete", json={})
    assert refused.status_code == 400
    assert "SUSPENDED" in refused.json()["detail"]


async def test_completed_transfer_takes_no_more_messages(provider: Site, consumer: Site, people_csv: Path) -> None:
    transfer = await start_transfer(consumer, await agreed(provider, consumer, people_csv))
    await provider.post(f"/transfers/{transfer['provider_pid']}/complete", {}, 200)
    await consumer.wait_for(f"/transfers/{transfer['id']}", "COMPLETED")
    for action in ("suspend", "terminate", "complete", "resume"):
        assert (await consumer.api.post(f"/transfers/{transfer['id']}/{action}", json={})).status_code == 400


async def test_push_transfer_delivers_masked_data_and_completes(
    provider: Site, consumer: Site, people_csv: Path
) -> None:
    done = await pushed(provider, consumer, people_csv, "research")
    assert done["state"] == "COMPLETED" and done["received"]
    received = await consumer.api.get(f"/transfers/{done['id']}/data")
    assert [r["name"] for r in rows(received)] == [p["name"] for p in PEOPLE]
    assert "email" not in received.text
    assert (await provider.api.get("/usage")).json()["items"][0]["uses"] == 1


async def test_push_for_a_wrong_purpose_is_terminated_with_the_reasons(
    provider: Site, consumer: Site, people_csv: Path
) -> None:
    done = await pushed(provider, consumer, people_csv, "marketing")
    assert done["state"] == "TERMINATED"
    assert "marketing" in done["reasons"][0]
    assert not done["received"]


async def test_a_push_that_fails_unexpectedly_ends_its_transfer_with_the_reason(
    provider: Site, consumer: Site, people_csv: Path
) -> None:
    agreement = await agreed(provider, consumer, people_csv)
    await anyio.Path(people_csv).unlink()  # the asset's file is gone: the push fails before a use is counted
    done = await start_transfer(consumer, agreement, until=("COMPLETED",), format="HttpData-PUSH", purpose="research")
    assert done["state"] == "TERMINATED" and not done["received"]
    ours = await provider.wait_for(f"/transfers/{done['provider_pid']}", "TERMINATED")
    assert "cannot be read" in ours["reasons"][0] and "No such file" in ours["reasons"][0]


async def test_an_expired_data_token_is_refreshed_with_the_access_token(
    provider: Site, consumer: Site, people_csv: Path
) -> None:
    transfer = await start_transfer(consumer, await agreed(provider, consumer, people_csv))
    now = int(time.time())
    expired = SigningKey.load(provider.config.key_path).sign_jwt(
        {
            "iss": provider.id,
            "aud": provider.id,
            "sub": consumer.id,
            "transfer": transfer["provider_pid"],
            "agreement": transfer["agreement_id"],
            "iat": now - 900,
            "exp": now - 600,
            "jti": "old",
        }
    )
    (row,) = await sql(consumer.config, "SELECT data_address FROM transfer WHERE id = :id", id=transfer["id"])
    address = json_value(row["data_address"])
    address["endpointProperties"][0]["value"] = expired
    statement = "UPDATE transfer SET data_address = :address WHERE id = :id"
    await sql(consumer.config, statement, address=json.dumps(address), id=transfer["id"])
    pulled = await consumer.api.get(f"/transfers/{transfer['id']}/data", params={"purpose": "research"})
    assert pulled.status_code == 200, pulled.text
    assert len(rows(pulled)) == len(PEOPLE)


# -- transfer_start = "async" ---------------------------------------------------------------------------------


async def async_provider(space: Dataspace, delay: float) -> Site:
    config = await space.admit("provider")
    return await space.start(replace(config, transfer_start="async", transfer_start_delay=delay))


async def requested(consumer: Site, agreement_id: str) -> dict[str, Any]:
    """Request a pull transfer and wait until the consumer has the provider's answer (its providerPid)."""
    transfer = await consumer.post("/transfers", {"agreement_id": agreement_id})
    deadline = asyncio.get_running_loop().time() + 5
    while not transfer.get("provider_pid"):
        assert asyncio.get_running_loop().time() < deadline, transfer
        await asyncio.sleep(0.02)
        transfer = (await consumer.api.get(f"/transfers/{transfer['id']}")).json()
    return transfer


async def test_an_async_provider_answers_requested_and_starts_afterwards(
    space: Dataspace, consumer: Site, people_csv: Path
) -> None:
    provider = await async_provider(space, delay=0.5)
    transfer = await requested(consumer, await agreed(provider, consumer, people_csv))
    assert (await provider.api.get(f"/transfers/{transfer['provider_pid']}")).json()["state"] == "REQUESTED"
    await consumer.wait_for(f"/transfers/{transfer['id']}", "STARTED")
    pulled = await consumer.api.get(f"/transfers/{transfer['id']}/data", params={"purpose": "research"})
    assert pulled.status_code == 200, pulled.text


async def test_an_async_start_survives_a_provider_restart(space: Dataspace, consumer: Site, people_csv: Path) -> None:
    provider = await async_provider(space, delay=1.0)
    transfer = await requested(consumer, await agreed(provider, consumer, people_csv))
    await provider.server.restart()
    assert (await provider.api.get(f"/transfers/{transfer['provider_pid']}")).json()["state"] == "REQUESTED"
    await consumer.wait_for(f"/transfers/{transfer['id']}", "STARTED")
    await provider.wait_for(f"/transfers/{transfer['provider_pid']}", "STARTED")


async def test_an_async_transfer_terminated_while_requested_never_starts(
    space: Dataspace, consumer: Site, people_csv: Path
) -> None:
    provider = await async_provider(space, delay=0.5)
    transfer = await requested(consumer, await agreed(provider, consumer, people_csv))
    await consumer.post(f"/transfers/{transfer['id']}/terminate", {"reason": "changed my mind"}, 200)
    await provider.wait_for(f"/transfers/{transfer['provider_pid']}", "TERMINATED")
    await asyncio.sleep(0.8)  # past the start's due time
    assert (await provider.api.get(f"/transfers/{transfer['provider_pid']}")).json()["state"] == "TERMINATED"
    assert (await consumer.api.get(f"/transfers/{transfer['id']}")).json()["state"] == "TERMINATED"


# -- data addresses without a Tessera data token --------------------------------------------------------------


async def restart_with(provider: Site, consumer: Site, transfer: dict[str, Any], address: dict[str, Any]) -> None:
    """Suspend, then start again as the provider would, with another data address (as another connector does)."""
    await consumer.post(f"/transfers/{transfer['id']}/suspend", {}, 200)
    start = dsp.message(
        "TransferStartMessage", providerPid=transfer["provider_pid"], consumerPid=transfer["id"], dataAddress=address
    )
    headers = {"Authorization": f"Bearer {await provider.token_for(consumer.id)}"}
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{consumer.dsp_url}/transfers/{transfer['id']}/start", json=start, headers=headers)
    assert response.status_code == 200, response.text


async def test_the_consumer_pulls_from_an_open_address_or_with_the_header_the_address_names(
    provider: Site, consumer: Site, people_csv: Path
) -> None:
    seen: list[dict[str, str]] = []

    async def serve(request: Request) -> Response:
        seen.append(dict(request.headers))
        return Response("name\nAda\n", media_type="text/csv")

    transfer = await start_transfer(consumer, await agreed(provider, consumer, people_csv))
    async with run_server(Starlette(routes=[Route("/files/people", serve)])) as elsewhere:
        endpoint = {
            "@type": "DataAddress",
            "endpointType": dsp.HTTP_ENDPOINT_TYPE,
            "endpoint": elsewhere + "/files/people",
        }
        await restart_with(provider, consumer, transfer, endpoint)
        pulled = await consumer.api.get(f"/transfers/{transfer['id']}/data")
        assert pulled.status_code == 200, pulled.text
        assert rows(pulled) == [{"name": "Ada"}]
        assert "authorization" not in seen[-1]

        keyed = [
            {"@type": "EndpointProperty", "name": n, "value": v}
            for n, v in (("authKey", "X-Api-Key"), ("authCode", "k1"))
        ]
        await restart_with(provider, consumer, transfer, {**endpoint, "endpointProperties": keyed})
        assert (await consumer.api.get(f"/transfers/{transfer['id']}/data")).status_code == 200
        assert seen[-1]["x-api-key"] == "k1" and "authorization" not in seen[-1]


async def test_a_pull_start_without_an_endpoint_is_refused(provider: Site, consumer: Site, people_csv: Path) -> None:
    transfer = await start_transfer(consumer, await agreed(provider, consumer, people_csv))
    await consumer.post(f"/transfers/{transfer['id']}/suspend", {}, 200)
    start = dsp.message(
        "TransferStartMessage",
        providerPid=transfer["provider_pid"],
        consumerPid=transfer["id"],
        dataAddress={"@type": "DataAddress", "endpointType": dsp.HTTP_ENDPOINT_TYPE},
    )
    headers = {"Authorization": f"Bearer {await provider.token_for(consumer.id)}"}
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{consumer.dsp_url}/transfers/{transfer['id']}/start", json=start, headers=headers)
    assert response.status_code == 400
    assert response.json()["@type"] == "TransferError" and "endpoint" in response.json()["reason"][0]
    assert (await consumer.api.get(f"/transfers/{transfer['id']}")).json()["state"] == "SUSPENDED"
