"""Revocation within seconds: a participant the broker suspends is refused by connectors within 10 s, though
its access and data tokens are still valid, and admitted again after it is resumed. A real broker, two
connectors, the operator's CLI. The status document itself is tested in tests/broker/test_participant_status.py.
"""

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from tests.dataspace import Dataspace, Site, negotiate, publish, rows, start_transfer, tessera

DEADLINE = 10.0  # seconds from the operator's command to every connector refusing
# No use limit, so the polls below are refused only for the suspension.
ANYONE = "package tessera.usage.anyone\n\ndefault allow := true\n"
CATALOG_REQUEST = {"@context": ["https://w3id.org/dspace/2025/1/context.jsonld"], "@type": "CatalogRequestMessage"}


async def within(deadline: float, holds: Callable[[], Awaitable[bool]], *, since: float) -> float:
    """Poll `holds` until it is true; the seconds from `since` (loop time), or AssertionError past `deadline`."""
    loop = asyncio.get_running_loop()
    started = since
    while not await holds():
        if loop.time() - started > deadline:
            raise AssertionError(f"still not so after {deadline} s")
        await asyncio.sleep(0.1)
    return loop.time() - started


async def operator(space: Dataspace, command: str, participant_id: str) -> None:
    assert space.broker_config is not None
    space.broker_config.save()  # the operator's commands read broker.toml
    code, _, err = await tessera(
        "participant", command, participant_id, "--broker-dir", str(space.broker_config.directory)
    )
    assert code == 0, err


async def test_a_suspended_consumer_is_refused_within_seconds_and_resumed(
    space: Dataspace, provider: Site, consumer: Site, people_csv: Path
) -> None:
    offer = await publish(provider, people_csv, policy=ANYONE)
    agreement = (await negotiate(consumer, provider, offer))["agreement_id"]
    transfer = await start_transfer(consumer, agreement)
    data = f"/transfers/{transfer['id']}/data"
    assert len(rows(await consumer.api.get(data, params={"purpose": "research"}))) == 3
    # Tokens obtained before the suspension: the broker issues none afterwards, these stay valid 300 s.
    access_token = await consumer.token_for(provider.id)
    bearer = {"Authorization": f"Bearer {access_token}"}

    async with httpx.AsyncClient(base_url=provider.config.url, headers=bearer) as peer:

        async def catalog() -> httpx.Response:
            return await peer.post("/dsp/catalog/request", json=CATALOG_REQUEST)

        async def pull() -> httpx.Response:
            return await consumer.api.get(data, params={"purpose": "research"})

        async def refused() -> bool:
            return (await pull()).status_code == 403 and (await catalog()).status_code == 403

        async def allowed() -> bool:
            return (await pull()).status_code == 200 and (await catalog()).status_code == 200

        loop = asyncio.get_running_loop()
        suspended_at = loop.time()
        await operator(space, "suspend", consumer.id)
        took = await within(DEADLINE, refused, since=suspended_at)

        pulled, listed = await pull(), await catalog()
        assert "participant urn:tessera:consumer is suspended at the broker" in pulled.json()["detail"]
        assert listed.json()["@type"] == "CatalogError"
        assert listed.json()["reason"] == ["participant urn:tessera:consumer is suspended at the broker"]
        refresh = await peer.post(f"/data/{transfer['provider_pid']}/token")
        assert refresh.status_code == 403  # nor may it trade its access token for a fresh data token
        via_its_connector = await consumer.api.post(
            "/catalog/request", json={"provider_id": provider.id, "provider_url": provider.dsp_url}
        )
        assert via_its_connector.status_code == 502 and "suspended at the broker" in via_its_connector.text

        resumed_at = loop.time()
        await operator(space, "resume", consumer.id)
        took_back = await within(DEADLINE, allowed, since=resumed_at)

    assert len(rows(await pull())) == 3
    print(f"refused {took:.1f} s after `participant suspend` started, allowed {took_back:.1f} s after `resume`")
