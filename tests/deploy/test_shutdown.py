"""Graceful shutdown of `tessera connector serve`, as Kubernetes and compose stop it: SIGTERM.

The provider runs as its own process; a consumer pulls a large file slowly, the provider gets SIGTERM
mid-way, refuses new connections, lets the pull finish and exits 0. With a short `shutdown_drain` a
stalled pull is cut and the process still stops in time.
"""

import asyncio
import dataclasses
import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from tests.dataspace import Dataspace, Site, management_client, negotiate, publish, start_transfer
from tests.faults import ConnectorProcess

ROWS = 1_200_000


@pytest.fixture
def big_csv(tmp_path: Path) -> Path:
    """About 50 MB (30 MB as pulled): more than loopback socket buffers hold, so the pull is really in flight."""
    path = tmp_path / "people.csv"
    lines = (f"Person {i},person{i}@example.org,DE,{20 + i % 60}" for i in range(ROWS))
    path.write_text("name,email,country,age\n" + "\n".join(lines) + "\n")
    return path


async def pull_address(space: Dataspace, consumer: Site, process: ConnectorProcess, data: Path) -> tuple[str, dict]:
    async with management_client(process.config) as api:
        provider = Site(process.config, api)
        offer = await publish(provider, data)
        negotiation = await negotiate(consumer, provider, offer)
        transfer = await start_transfer(consumer, negotiation["agreement_id"])
    with sqlite3.connect(consumer.config.directory / "connector.db", timeout=30) as db:
        (text,) = db.execute("SELECT data_address FROM transfer WHERE id = ?", (transfer["id"],)).fetchone()
    address = json.loads(text)
    token = next(p["value"] for p in address["endpointProperties"] if p["name"] == "authorization")
    return address["endpoint"], {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def provider_process(space: Dataspace, request: pytest.FixtureRequest) -> AsyncIterator[ConnectorProcess]:
    config = await space.admit("provider")
    drain = getattr(request, "param", None)
    if drain is not None:
        config = dataclasses.replace(config, shutdown_drain=drain)
        config.save()
    process = ConnectorProcess(config)
    await process.start()
    try:
        yield process
    finally:
        process.kill()


@asynccontextmanager
async def pulling(url: str, headers: dict[str, str]) -> AsyncIterator[tuple[AsyncIterator[bytes], bytes]]:
    """A pull in flight: its chunks still to come (kept referenced: a dropped iterator closes the connection)
    and the first one, already read."""
    async with (
        httpx.AsyncClient(headers=headers, timeout=60) as http,
        http.stream("GET", url, params={"purpose": "research"}) as response,
    ):
        assert response.status_code == 200
        chunks = response.aiter_bytes()
        yield chunks, await anext(chunks)


def terminate(process: ConnectorProcess) -> None:
    assert process.process is not None
    os.killpg(process.process.pid, signal.SIGTERM)


async def exit_code(process: ConnectorProcess, within: float) -> int | None:
    assert process.process is not None
    try:
        return await asyncio.to_thread(process.process.wait, within)
    except subprocess.TimeoutExpired:
        return None


async def test_sigterm_lets_an_in_flight_pull_finish_then_exits_0(
    space: Dataspace, consumer: Site, provider_process: ConnectorProcess, big_csv: Path
) -> None:
    url, headers = await pull_address(space, consumer, provider_process, big_csv)
    async with pulling(url, headers) as (chunks, body):
        terminate(provider_process)
        await asyncio.sleep(0.5)
        with pytest.raises(httpx.ConnectError):  # draining: no new connections
            await httpx.AsyncClient().get(provider_process.config.url + "/health")
        async for chunk in chunks:
            body += chunk
    lines = body.decode().splitlines()
    assert len(lines) == ROWS + 1 and lines[-1].startswith(f'"Person {ROWS - 1}",')
    assert await exit_code(provider_process, within=30) == 0
    log = (provider_process.config.directory / "serve.log").read_text()
    assert "Waiting for connections to close" in log and "Finished server process" in log


@pytest.mark.parametrize("provider_process", [1.0], indirect=True)
async def test_a_stalled_pull_is_cut_after_the_drain_time(
    space: Dataspace, consumer: Site, provider_process: ConnectorProcess, big_csv: Path
) -> None:
    url, headers = await pull_address(space, consumer, provider_process, big_csv)
    async with pulling(url, headers):
        started = time.monotonic()
        terminate(provider_process)  # and read no more: the pull stalls
        code = await exit_code(provider_process, within=20)
    assert code == 0 and time.monotonic() - started < 10
    log = (provider_process.config.directory / "serve.log").read_text()
    assert "timeout graceful shutdown exceeded" in log
