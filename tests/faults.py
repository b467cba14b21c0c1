"""Fault injection for tests: a relay between two connectors, and connectors as killable processes.

`Relay` forwards DSP traffic between a consumer and a provider and can hold back one kind of message
(answering 503, so the sender's outbox retries) or play dead, which lets a test stop an exchange at an
exact step, kill a process there, restart it and let the exchange go on. It can also rewrite one kind of
message on its way, as a forger on the wire would.
"""

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connector.config import ConnectorConfig

TESSERA = str(Path(sys.executable).parent / "tessera")


class Relay:
    """`/to-provider/...` and `/to-consumer/...` forward to each side; callback addresses are rewritten."""

    def __init__(self, provider_url: str, consumer_url: str) -> None:
        self.targets = {"to-provider": provider_url.rstrip("/"), "to-consumer": consumer_url.rstrip("/")}
        self.base = ""  # set once served
        self.held: set[str] = set()
        self.changes: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {}
        self.down = False
        self.arrived: dict[str, asyncio.Event] = {}
        self.app = Starlette(routes=[Route("/{side}/{path:path}", self.forward, methods=["GET", "POST"])])

    def hold(self, message_type: str) -> asyncio.Event:
        """Answer 503 to `message_type` until released; the event is set when the first one arrives."""
        self.held.add(message_type)
        return self.arrived.setdefault(message_type, asyncio.Event())

    def release(self, message_type: str) -> None:
        self.held.discard(message_type)

    def alter(self, message_type: str, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """Forward every `message_type` message as `change` rewrites it."""
        self.changes[message_type] = change

    async def forward(self, request: Request) -> Response:
        if self.down:
            return Response(status_code=503)
        body = await request.body()
        kind = message_type(body)
        if kind in self.held:
            self.arrived.setdefault(kind, asyncio.Event()).set()
            return Response(status_code=503)
        if kind in self.changes:
            body = json.dumps(self.changes[kind](json.loads(body))).encode()
        body = body.replace(f"{self.targets['to-consumer']}/dsp".encode(), f"{self.base}/to-consumer/dsp".encode())
        url = f"{self.targets[request.path_params['side']]}/{request.path_params['path']}"
        headers = {k: v for k, v in request.headers.items() if k in ("authorization", "content-type")}
        try:
            async with httpx.AsyncClient() as http:
                answer = await http.request(request.method, url, content=body, headers=headers)
        except httpx.TransportError:
            return Response(status_code=502)
        return Response(answer.content, status_code=answer.status_code, media_type=answer.headers.get("content-type"))


def message_type(body: bytes) -> str | None:
    """The `@type` of a DSP message body, None when it is not a JSON object."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    return document.get("@type") if isinstance(document, dict) else None


class ConnectorProcess:
    """`tessera connector serve` in its own process, which a test can kill with SIGKILL."""

    def __init__(self, config: ConnectorConfig) -> None:
        self.config = config
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        log = (self.config.directory / "serve.log").open("ab")
        self.process = subprocess.Popen(  # noqa: ASYNC220 (spawning returns at once)
            [TESSERA, "connector", "serve", "--dir", str(self.config.directory)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        async with httpx.AsyncClient() as http:
            for _ in range(300):
                if self.process.poll() is not None:
                    raise RuntimeError(f"connector exited: {(self.config.directory / 'serve.log').read_text()}")
                try:
                    # its own port: the public `url` may be a balancer in front of replicas
                    health = f"http://127.0.0.1:{self.config.port}/health"
                    if (await http.get(health)).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
        raise RuntimeError("connector did not start")

    def kill(self) -> None:
        """A crash: no shutdown, no flush, no goodbye."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    async def restart_after_crash(self) -> None:
        self.kill()
        await self.start()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
