"""OpaServerEngine against a real `opa run --server`; skipped where no opa binary is on PATH.

The same decisions as tests/policies/test_engine.py asks of the embedded engine.
"""

import asyncio
import shutil
from collections.abc import AsyncIterator

import httpx
import pytest

from policies import read_pattern
from tessera.policy import Decision, OpaServerEngine, PolicyModule, create_engine
from tests.policies.ports import unused_port
from tests.policies.test_engine import BROKEN, REQUEST, compile_error

pytestmark = pytest.mark.skipif(shutil.which("opa") is None, reason="no opa binary on PATH")


@pytest.fixture
async def opa_url() -> AsyncIterator[str]:
    port = unused_port()
    url = f"http://127.0.0.1:{port}"
    proc = await asyncio.create_subprocess_exec(
        "opa", "run", "--server", f"--addr=127.0.0.1:{port}", stdout=asyncio.subprocess.DEVNULL
    )
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(100):
                try:
                    if (await client.get(f"{url}/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        await proc.wait()


@pytest.fixture
async def engine(opa_url: str) -> AsyncIterator[OpaServerEngine]:
    engine = create_engine("opa", opa_url=opa_url)
    assert isinstance(engine, OpaServerEngine)
    yield engine
    await engine.aclose()


async def test_opa_compile_returns_package_and_locates_errors(engine: OpaServerEngine) -> None:
    assert await engine.compile(read_pattern("examples/research_limited")) == "data.tessera.usage.research_limited"
    assert (await compile_error(engine, BROKEN)).line == 4


async def test_opa_decides_like_the_embedded_engine(engine: OpaServerEngine) -> None:
    module = PolicyModule(id="research-limited", source=read_pattern("examples/research_limited"))
    assert await engine.decide(module, REQUEST) == Decision(allow=True, mask=("email",))
    denied = await engine.decide(module, {**REQUEST, "uses": 3})
    assert denied == Decision(allow=False, reasons=("use limit reached: 3 of 3 uses consumed",))
