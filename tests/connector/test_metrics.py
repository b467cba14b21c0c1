"""`/metrics` of a connector through real exchanges: process gauges from the database, usage decisions by
reason, bytes sent, request latency by route template (never a raw path), caches, and who may scrape it."""

import asyncio
import dataclasses
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.dataspace import Dataspace, Site, negotiate, publish, start_transfer


async def scrape(site: Site, token: str | None = None) -> list[Sample]:
    headers = {"Authorization": f"Bearer {token or site.config.management_token}"}
    async with httpx.AsyncClient() as http:
        response = await http.get(site.config.url + "/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return [sample for family in text_string_to_metric_families(response.text) for sample in family.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    found = [s.value for s in samples if s.name == name and s.labels == labels]
    assert len(found) == 1, f"{name}{labels}: {found}"
    return found[0]


async def test_metrics_count_a_negotiation_a_transfer_its_pulls_and_a_denial(
    provider: Site, consumer: Site, people_csv: Path
) -> None:
    offer = await publish(provider, people_csv)
    negotiation = await negotiate(consumer, provider, offer)
    transfer = await start_transfer(consumer, negotiation["agreement_id"])
    data = f"/transfers/{transfer['id']}/data"
    pulled = await consumer.api.get(data, params={"purpose": "research"})
    denied = await consumer.api.get(data, params={"purpose": "advertising"})
    assert pulled.status_code == 200 and denied.status_code == 403

    for _ in range(100):  # the metering settles when the stream's last chunk went out
        samples = await scrape(provider)
        if value(samples, "tessera_connector_bytes_sent_total") > 0:
            break
        await asyncio.sleep(0.02)
    assert value(samples, "tessera_connector_bytes_sent_total") == len(pulled.content)
    decisions = "tessera_connector_usage_decisions_total"
    assert value(samples, decisions, outcome="allow", reason="none") == 1
    assert value(samples, decisions, outcome="deny", reason="purpose") == 1
    processes = "tessera_connector_processes"
    assert value(samples, processes, kind="negotiation", role="provider", state="FINALIZED") == 1
    assert value(samples, processes, kind="transfer", role="provider", state="STARTED") == 1
    assert value(samples, "tessera_connector_outbox_messages", status="failed") == 0
    latency = "tessera_connector_http_request_duration_seconds_count"
    assert value(samples, latency, method="GET", route="/data/{pid}", status="2xx") == 1
    assert value(samples, latency, method="GET", route="/data/{pid}", status="4xx") == 1
    assert value(samples, "tessera_connector_jwks_fetches_total") == 1
    assert not [
        s for s in samples if any(transfer["id"] in v or ("/data/" in v and "{" not in v) for v in s.labels.values())
    ]

    mine = await scrape(consumer)
    assert value(mine, processes, kind="negotiation", role="consumer", state="FINALIZED") == 1
    assert value(mine, processes, kind="transfer", role="consumer", state="STARTED") == 1
    assert value(mine, "tessera_connector_outbox_deliveries_total", outcome="delivered") >= 2
    assert value(mine, "tessera_connector_outbox_messages", status="pending") == 0
    assert value(mine, "tessera_connector_token_cache_total", result="miss") >= 1  # one per audience
    assert value(mine, "tessera_connector_token_cache_total", result="hit") >= 1
    route = "/api/transfers/{id}/data"
    assert value(mine, latency, method="GET", route=route, status="2xx") == 1


async def test_an_unknown_path_is_one_label_not_one_per_path(provider: Site) -> None:
    async with httpx.AsyncClient(base_url=provider.config.url) as http:
        for n in range(3):
            assert (await http.get(f"/no/such/path/{n}")).status_code == 404
    samples = await scrape(provider)
    latency = "tessera_connector_http_request_duration_seconds_count"
    assert value(samples, latency, method="GET", route="(unmatched)", status="4xx") == 3


async def test_metrics_need_the_metrics_token_or_else_the_management_token(space: Dataspace) -> None:
    plain = await space.start(await space.admit("plain"))
    async with httpx.AsyncClient(base_url=plain.config.url) as http:
        assert (await http.get("/metrics")).status_code == 401
        wrong = await http.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.headers["content-type"] == "application/problem+json"
    await scrape(plain)  # the management token, as no metrics token is set

    config = dataclasses.replace(await space.admit("scraped"), metrics_token="scrape-me")
    scraped = await space.start(config)
    await scrape(scraped, "scrape-me")
    async with httpx.AsyncClient(base_url=config.url) as http:
        management = {"Authorization": f"Bearer {config.management_token}"}
        assert (await http.get("/metrics", headers=management)).status_code == 401
