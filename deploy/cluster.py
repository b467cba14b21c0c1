"""A local cluster of Tessera processes: a broker and connectors on free loopback ports.

Used by the quickstart and the benchmarks; everything goes through the `tessera` CLI, as an operator
would do it.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx

TESSERA = str(Path(sys.executable).parent / "tessera")


class StepFailed(Exception):
    """A step of a scripted run failed; the message says how."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tessera(*args: str) -> str:
    done = subprocess.run([TESSERA, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise StepFailed(f"`tessera {' '.join(args)}` exited {done.returncode}: {done.stderr.strip() or done.stdout}")
    return done.stdout


class Processes:
    """The services this run started; all are stopped on exit, whatever happens."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, *args: str, health: str) -> None:
        log = (self.logs / f"{name}.log").open("wb")
        process = subprocess.Popen([TESSERA, *args], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.running.append((name, process))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise StepFailed(f"{name} exited with {process.returncode}; see {self.logs / f'{name}.log'}")
            try:
                if httpx.get(health, timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise StepFailed(f"{name} did not answer at {health} within 30 s")

    def stop_all(self) -> None:
        for _name, process in reversed(self.running):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for _name, process in self.running:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def management(directory: Path) -> httpx.Client:
    config = tomllib.loads((directory / "connector.toml").read_text())
    headers = {"Authorization": f"Bearer {config['management_token']}"}
    return httpx.Client(base_url=f"{config['url']}/api", headers=headers, timeout=15)


def init_broker(work: Path, url: str, port: int) -> None:
    tessera("broker", "init", "--dir", str(work / "broker"), "--url", url, "--port", str(port))


def init_connector(
    work: Path, name: str, participant_id: str, url: str, broker_url: str, port: int, *options: str
) -> None:
    """`tessera connector init` for `name`; `options` are further flags (rules by grade, cross-border)."""
    tessera(
        "connector",
        "init",
        "--dir",
        str(work / name),
        "--participant-id",
        participant_id,
        "--url",
        url,
        "--broker-url",
        broker_url,
        "--port",
        str(port),
        *options,
    )


def admit(work: Path, name: str, participant_id: str, org: str, region: str, *options: str) -> None:
    """`tessera participant add` with a base profile; `options` are further claims (`--jurisdiction DE`)."""
    tessera(
        "participant",
        "add",
        participant_id,
        "--broker-dir",
        str(work / "broker"),
        "--jwk",
        str(work / name / "connector.jwk.json"),
        "--org",
        org,
        "--region",
        region,
        "--security-profile",
        "base",
        *options,
    )
