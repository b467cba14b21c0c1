"""Use counters are atomic and durable: the decision, the count and its audit entry are one transaction.

The requests go straight to the provider's data plane with the transfer's data token, as the consumer's
connector sends them, so 50 of them really are in flight at once.
"""

import asyncio
from pathlib import Path

import httpx

from policies.patterns import PatternUse, render
from tests.dataspace import Site, json_value, negotiate, publish, sql, start_transfer

LIMIT_REASON = "uses: {limit} uses consumed, limit {limit}"


async def _data_plane(provider: Site, consumer: Site, data: Path, max_uses: int) -> tuple[str, dict[str, str], str]:
    """A started pull under "at most `max_uses` uses": the data URL, its headers and the agreement id."""
    policy = render("tessera.usage.counted", [PatternUse.of("max_uses", max_uses=max_uses)])
    offer = await publish(provider, data, policy=policy)
    negotiation = await negotiate(consumer, provider, offer)
    transfer = await start_transfer(consumer, negotiation["agreement_id"])
    (row,) = await sql(consumer.config, "SELECT data_address FROM transfer WHERE id = :id", id=transfer["id"])
    address = json_value(row["data_address"])
    token = next(p["value"] for p in address["endpointProperties"] if p["name"] == "authorization")
    return address["endpoint"], {"Authorization": f"Bearer {token}"}, negotiation["agreement_id"]


async def _counter(provider: Site, agreement_id: str, *, bytes: int) -> dict:
    """The agreement's counter, once `bytes` are metered (bytes commit just after the last chunk is sent)."""
    for _ in range(100):
        items = (await provider.api.get("/usage")).json()["items"]
        (counter,) = [c for c in items if c["agreement_id"] == agreement_id]
        if counter["bytes"] >= bytes:
            break
        await asyncio.sleep(0.02)
    return counter


async def test_fifty_parallel_requests_under_ten_uses_let_exactly_ten_through(
    provider: Site, consumer: Site, people_csv: Path
) -> None:
    url, headers, agreement_id = await _data_plane(provider, consumer, people_csv, max_uses=10)
    async with httpx.AsyncClient(headers=headers, timeout=30) as http:
        responses = await asyncio.gather(*(http.get(url, params={"purpose": "research"}) for _ in range(50)))

    served = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 403]
    assert (len(served), len(refused)) == (10, 40), sorted(r.status_code for r in responses)
    assert len({r.content for r in served}) == 1
    assert all(module_reasons(r) == [LIMIT_REASON.format(limit=10)] for r in refused)
    counter = await _counter(provider, agreement_id, bytes=10 * len(served[0].content))
    assert (counter["uses"], counter["denials"]) == (10, 40)
    assert counter["bytes"] == 10 * len(served[0].content)


async def test_use_count_survives_a_provider_restart(provider: Site, consumer: Site, people_csv: Path) -> None:
    url, headers, agreement_id = await _data_plane(provider, consumer, people_csv, max_uses=2)
    async with httpx.AsyncClient(headers=headers, timeout=10) as http:
        first = await http.get(url, params={"purpose": "research"})
        assert first.status_code == 200
        await provider.server.restart()
        assert (await http.get(url, params={"purpose": "research"})).status_code == 200
        third = await http.get(url, params={"purpose": "research"})
        assert third.status_code == 403
        assert module_reasons(third) == [LIMIT_REASON.format(limit=2)]
        await provider.server.restart()
        assert (await http.get(url, params={"purpose": "research"})).status_code == 403

    counter = await _counter(provider, agreement_id, bytes=2 * len(first.content))
    assert (counter["uses"], counter["denials"], counter["bytes"]) == (2, 2, 2 * len(first.content))


def module_reasons(response: httpx.Response) -> list[str]:
    """The bound module's reasons; the agreement (count lteq the same limit) denies with its own too."""
    return [reason for reason in response.json()["reasons"] if not reason.startswith("agreement: ")]
