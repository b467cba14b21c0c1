"""The broker's `/metrics`: off without a `metrics_token`, refused without it, and counting registrations,
searches and requests by route template once a connector has registered."""

import dataclasses
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from broker.app import create_app
from broker.config import BrokerConfig
from tessera.errors import BadRequest
from tessera.tracing import chosen
from tests.dataspace import Dataspace, Site, publish
from tests.utils import run_server


async def test_broker_metrics_are_off_without_a_token(space: Dataspace) -> None:
    async with httpx.AsyncClient(base_url=space.broker_url) as http:
        off = await http.get("/metrics", headers={"Authorization": "Bearer anything"})
    assert off.status_code == 404 and "metrics_token" in off.json()["detail"]


async def test_broker_metrics_count_registrations_searches_and_requests(
    space: Dataspace, provider: Site, people_csv: Path
) -> None:
    assert space.broker_config is not None
    await publish(provider, people_csv)
    registered = await provider.api.put("/registration", json={"title": "Provider"})
    assert registered.status_code == 200, registered.text
    # A second replica of the broker on the same database, with metrics on: the gauges are the
    # database's, the counters this process's (the registration went to the first).
    config = dataclasses.replace(space.broker_config, metrics_token="scrape-me")
    async with run_server(create_app(config, crawl=False)) as url, httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/metrics")).status_code == 401
        assert (await http.get("/search", params={"q": "People"})).status_code == 200
        gauges = _samples((await http.get("/metrics", headers={"Authorization": "Bearer scrape-me"})).text)
        token = await provider.token_for(space.broker_url)
        deleted = await http.delete(f"/registrations/{provider.id}", headers={"Authorization": f"Bearer {token}"})
        assert deleted.status_code == 204, deleted.text
        response = await http.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
    assert gauges[("tessera_broker_connectors", (("state", "ONLINE"),))] == 1
    assert gauges[("tessera_broker_offerings", ())] == 1
    samples = _samples(response.text)
    assert samples[("tessera_broker_searches_total", ())] == 1
    assert samples[("tessera_broker_registrations_total", (("action", "deleted"),))] == 1
    assert ("tessera_broker_registrations_total", (("action", "created"),)) not in samples
    assert samples[("tessera_broker_offerings", ())] == 0
    delete = (("method", "DELETE"), ("route", "/registrations/{participant_id}"), ("status", "2xx"))
    assert samples[("tessera_broker_http_request_duration_seconds_count", delete)] == 1
    assert not [labels for _, labels in samples if ("route", f"/registrations/{provider.id}") in labels]


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_observability_settings_round_trip_and_bad_values_are_refused(tmp_path: Path) -> None:
    config = BrokerConfig(directory=tmp_path, url="http://b", metrics_token="t", log_format="json", tracing="otlp")
    config.save()
    loaded = BrokerConfig.load(tmp_path)
    assert (loaded.metrics_token, loaded.log_format, loaded.tracing) == ("t", "json", "otlp")
    assert "metrics_token" not in repr(loaded)
    with pytest.raises(BadRequest, match="log_format must be one of"):
        BrokerConfig.from_mapping(tmp_path, {"url": "http://b", "log_format": "xml"})
    with pytest.raises(BadRequest, match="`tracing` must be a string"):
        BrokerConfig.from_mapping(tmp_path, {"url": "http://b", "tracing": 1})


def test_an_otlp_endpoint_in_the_environment_turns_tracing_on() -> None:
    assert chosen("off", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}) == "otlp"
    assert chosen("off", {}) == "off" and chosen("otlp", {}) == "otlp"
