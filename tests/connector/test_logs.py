"""Structured logs: `tessera connector serve --log-format json` writes one JSON object per line, uvicorn's
access log too, each naming the negotiation or transfer it is about; an outbox delivery's lines name its
process; OpenTelemetry spans when tracing is on, and nothing of OpenTelemetry imported when it is off."""

import asyncio
import dataclasses
import io
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from connector.app import create_app
from tessera.logs import JsonFormatter
from tests.dataspace import Dataspace, Site, management_client, publish, tessera
from tests.faults import TESSERA
from tests.utils import run_server


async def test_serve_with_json_logs_names_the_process_of_each_request(space: Dataspace) -> None:
    config = await space.admit("logged")
    log = config.directory / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: ASYNC220 (spawning returns at once)
            [TESSERA, "connector", "serve", "--dir", str(config.directory), "--log-format", "json"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        async with management_client(config) as api:
            for _ in range(200):
                try:
                    if (await api.get("/negotiations")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            assert (await api.get("/transfers/no-such-transfer")).status_code == 404
            gone = {"provider_id": "urn:tessera:gone", "provider_url": "http://127.0.0.1:9/dsp"}
            started = await api.post("/negotiations", json=gone | {"offer_id": "o", "target": "a"})
            assert started.status_code == 201
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    lines = [json.loads(line) for line in log.read_text().splitlines()]  # every line is one JSON object
    assert {"time", "level", "logger", "message"} <= lines[0].keys()
    access = [line for line in lines if line["logger"] == "uvicorn.access" and "no-such-transfer" in line["message"]]
    assert len(access) == 1 and access[0]["process_id"] == "no-such-transfer"
    created = [
        line for line in lines if line["logger"] == "uvicorn.access" and "POST /api/negotiations " in line["message"]
    ]
    assert len(created) == 1 and created[0]["process_id"] == started.json()["id"]  # named as soon as it exists
    assert all("process_id" not in line for line in lines if "GET /api/negotiations " in line["message"])


async def test_an_outbox_delivery_logs_with_its_process_id(space: Dataspace) -> None:
    consumer = await space.start(await space.admit("consumer"))
    captured = io.StringIO()
    handler = logging.StreamHandler(captured)
    handler.setFormatter(JsonFormatter())
    outbox = logging.getLogger("tessera.outbox")
    outbox.addHandler(handler)
    try:
        gone = {"provider_id": "urn:tessera:gone", "provider_url": "http://127.0.0.1:9/dsp"}
        started = await consumer.post("/negotiations", gone | {"offer_id": "o", "target": "a"})
        for _ in range(200):
            if "failed" in captured.getvalue():
                break
            await asyncio.sleep(0.02)
    finally:
        outbox.removeHandler(handler)
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    failed = [line for line in lines if line["level"] == "WARNING"]
    assert failed and {line["process_id"] for line in failed} == {started["id"]}


def test_without_tracing_nothing_of_opentelemetry_is_imported(tmp_path: Path) -> None:
    program = (
        "import sys; from pathlib import Path\n"
        "from connector.app import create_app; from connector.config import ConnectorConfig\n"
        "from broker.app import create_app as broker_app; from broker.config import BrokerConfig\n"
        f"d = Path({str(tmp_path)!r})\n"
        "create_app(ConnectorConfig(directory=d, participant_id='urn:x', url='http://x', broker_url='http://b'))\n"
        "broker_app(BrokerConfig(directory=d, url='http://b'))\n"
        "assert not [m for m in sys.modules if m.startswith('opentelemetry')], 'imported'\n"
    )
    subprocess.run([sys.executable, "-c", program], check=True, env=os.environ | {"PYTHONPATH": str(Path.cwd())})


async def test_tracing_makes_server_and_client_spans(space: Dataspace, provider: Site, people_csv: Path) -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    config = dataclasses.replace(await space.admit("traced"), tracing="otlp")
    app = create_app(config, tracer_provider=tracer_provider)
    async with run_server(app, config.port), management_client(config) as api:
        offer = await publish(provider, people_csv)
        request = {"provider_url": provider.dsp_url, "provider_id": provider.id}
        assert (await api.post("/catalog/request", json=request)).status_code == 200, offer
    spans = exporter.get_finished_spans()
    server = [s for s in spans if s.kind.name == "SERVER" and "/api/catalog/request" in s.name]
    client = [s for s in spans if s.kind.name == "CLIENT" and s.attributes and "POST" in s.name]
    assert server and client
    assert {s.context.trace_id for s in client} & {s.context.trace_id for s in server}  # one trace


async def test_serve_refuses_an_unknown_log_format(space: Dataspace) -> None:
    config = await space.admit("misconfigured")
    code, _out, err = await tessera("connector", "serve", "--dir", str(config.directory), "--log-format", "xml")
    assert code == 2 and "log_format must be one of ('text', 'json')" in err
