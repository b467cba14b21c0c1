"""The TCK-style scenario table (`connector.selftest`) against real Tessera connectors, in both modes.

Each scenario is one test with its own data space: a broker, the connector under test (a provider
with a published offer, or a consumer) and the harness's own participant identity. Every message the
connector sends the harness, and every answer it gives, is checked against the DSP 2025-1 schemas.
Mode `tessera`: the harness signs and binds usage policies as a Tessera connector does; mode `plain`:
it is a plain DSP peer with the Eclipse TCK's message shapes (`tessera selftest --plain`).
`tests/connector/test_selftest.py` runs the same table through `tessera selftest`.
"""

from pathlib import Path

import httpx
import pytest

from connector.selftest import SCENARIOS, Management, Peer, Scenario, Schemas, Target, run_all
from tests.dataspace import Dataspace, publish
from tests.dsp_schemas import VALIDATOR

MODES = ("tessera", "plain")
# Scenarios the connector does not pass yet: (mode, id) -> what it does, and what DSP requires.
KNOWN_GAPS: dict[tuple[str, str], str] = {}


def _param(mode: str, scenario: Scenario) -> object:
    gap = KNOWN_GAPS.get((mode, scenario.id))
    marks = [pytest.mark.xfail(strict=True, reason=gap)] if gap else []
    return pytest.param(mode, scenario, id=f"{mode}-{scenario.id}", marks=marks)


@pytest.mark.parametrize(("mode", "scenario"), [_param(mode, s) for mode in MODES for s in SCENARIOS])
async def test_scenario(space: Dataspace, people_csv: Path, mode: str, scenario: Scenario) -> None:
    as_consumer = scenario.role == "consumer"
    site = await space.start(await space.admit("consumer" if as_consumer else "provider"))
    if not as_consumer:
        await publish(site, people_csv)
    identity = await space.admit("tck")
    management = Management(site.config.url + "/api", site.config.management_token)
    target = Target(site.dsp_url, site.id, management)
    async with httpx.AsyncClient(timeout=10) as http:
        peer = Peer(identity, Schemas(VALIDATOR.parent), http, plain=mode == "plain")
        async with peer.serving():
            [result] = await run_all([scenario], peer, target, within=5)
    assert result.outcome == "passed", result.detail


def test_the_table_covers_the_tck_areas() -> None:
    prefixes = [s.id.split(":")[0] for s in SCENARIOS]
    counts = {prefix: prefixes.count(prefix) for prefix in dict.fromkeys(prefixes)}
    assert counts == {"MET": 1, "CAT": 3, "CN": 15, "TP": 16, "CN_C": 16, "TP_C": 16}
    assert len({s.id for s in SCENARIOS}) == len(SCENARIOS) == 67
