"""Run a service under uvicorn the way an orchestrator stops it: SIGTERM drains, then exits 0.

On SIGTERM (or Ctrl-C) uvicorn stops accepting connections, lets requests in flight finish for at most
`drain` seconds, cancels what is left, and runs the app's lifespan shutdown (background tasks stop,
leases are released, the database closes). uvicorn then raises the captured signal again; we catch
that one, so a drained stop is a success (exit 0) and `restart: on-failure` does not restart it.
"""

import math
import signal
from collections.abc import Mapping
from types import FrameType
from typing import Any

import uvicorn
from starlette.types import ASGIApp

ENVIRONMENT_PREFIX = "TESSERA_"


def serve(app: ASGIApp, *, host: str, port: int, drain: float, log_config: dict[str, Any] | None = None) -> None:
    """Serve `app` until SIGTERM or SIGINT, then drain for at most `drain` seconds; `log_config` as uvicorn's."""
    previous = signal.signal(signal.SIGTERM, _stopped)
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level="info",
            log_config=log_config,
            timeout_graceful_shutdown=math.ceil(drain),
        )
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stopped(_signal: int, _frame: FrameType | None) -> None:
    """The SIGTERM uvicorn re-raises after its graceful shutdown: nothing is left to do."""


def secret_overrides(environ: Mapping[str, str], names: tuple[str, ...]) -> dict[str, Any]:
    """Settings a container takes from its environment (a Kubernetes Secret) rather than a file:
    `TESSERA_DATABASE_URL` for `database_url`, and so on; unset or empty variables change nothing."""
    found = {name: environ.get(ENVIRONMENT_PREFIX + name.upper(), "") for name in names}
    return {name: value for name, value in found.items() if value}
