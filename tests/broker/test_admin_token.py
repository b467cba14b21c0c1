"""The console's admin key: `broker init` makes one, old broker.toml files load without it, and
`TESSERA_ADMIN_TOKEN` overrides it when `broker serve` starts (the console then takes that key)."""

import asyncio
import os
import sys
import tomllib
from pathlib import Path

import httpx
from typer.testing import CliRunner

from broker.cli import broker_app
from broker.config import BrokerConfig
from tests.utils import unused_port

TESSERA = Path(sys.executable).parent / "tessera"


def _init(directory: Path, port: int = 8500) -> str:
    url = f"http://127.0.0.1:{port}"
    result = CliRunner().invoke(broker_app, ["init", "--dir", str(directory), "--url", url, "--port", str(port)])
    assert result.exit_code == 0, result.output
    token: str = tomllib.loads((directory / "broker.toml").read_text())["admin_token"]
    return token


def test_init_writes_a_random_admin_token_that_load_reads(tmp_path: Path) -> None:
    first, second = _init(tmp_path / "a"), _init(tmp_path / "b")

    assert len(first) >= 32 and first != second
    loaded = BrokerConfig.load(tmp_path / "a")
    assert loaded.admin_token == first
    assert first not in repr(loaded)


def test_a_broker_toml_without_an_admin_token_still_loads_with_the_console_closed(tmp_path: Path) -> None:
    (tmp_path / "broker.toml").write_text('url = "https://broker.example"\n')

    assert BrokerConfig.load(tmp_path).admin_token == ""


async def test_the_environment_overrides_the_admin_token_at_serve(tmp_path: Path) -> None:
    port = unused_port()
    written = _init(tmp_path / "broker", port)
    environment = {**os.environ, "TESSERA_ADMIN_TOKEN": "key-from-a-secret"}
    command = [str(TESSERA), "broker", "serve", "--dir", str(tmp_path / "broker")]
    quiet = asyncio.subprocess.DEVNULL
    server = await asyncio.create_subprocess_exec(*command, env=environment, stdout=quiet, stderr=quiet)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/console") as browser_like:
            await _wait_until_up(browser_like)
            codes = [await _sign_in(browser_like, key) for key in (written, "key-from-a-secret")]
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), 30)

    assert codes == [401, 303]


async def _wait_until_up(client: httpx.AsyncClient) -> None:
    for _ in range(300):
        try:
            await client.get("/signin")
            return
        except httpx.TransportError:
            await asyncio.sleep(0.05)
    raise AssertionError("the broker did not start")


async def _sign_in(client: httpx.AsyncClient, key: str) -> int:
    form = await client.get("/signin")
    csrf = form.text.split('name="csrf" value="')[1].split('"')[0]
    return (await client.post("/signin", data={"key": key, "csrf": csrf})).status_code
