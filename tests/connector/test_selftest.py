"""`tessera selftest` against a running connector: exit codes, the table and the JSON report.

The command runs its own event loop, so it runs in a worker thread while the test's loop serves the
broker and the connector under test. `tests/connector/test_tck.py` runs every scenario one by one.
"""

import asyncio
import json
from pathlib import Path

import typer
from typer.testing import CliRunner, Result

from connector.selftest.command import selftest
from tests.dataspace import Dataspace, Site, publish
from tests.dsp_schemas import VALIDATOR
from tests.utils import unused_port

app = typer.Typer()
app.command()(selftest)


async def invoke(*args: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, app, list(args))


async def harness(space: Dataspace) -> list[str]:
    identity = await space.admit("tck")
    return ["--dir", str(identity.directory), "--schemas", str(VALIDATOR.parent), "--timeout", "5"]


def operated(site: Site) -> list[str]:
    return [
        "--peer",
        site.dsp_url,
        "--peer-id",
        site.id,
        "--management-url",
        site.config.url + "/api",
        "--api-key",
        site.config.management_token,
    ]


async def test_negotiation_scenarios_pass_in_both_roles_against_one_connector(
    space: Dataspace, provider: Site, people_csv: Path
) -> None:
    await publish(provider, people_csv)
    result = await invoke(*operated(provider), *await harness(space), "--only", "CN*", "--json")
    report = json.loads(result.stdout)
    assert result.exit_code == 0, report
    assert report["summary"] == {"passed": 31, "failed": 0, "skipped": 0}
    assert {r["id"].split(":")[0] for r in report["results"]} == {"CN", "CN_C"}


async def test_transfer_scenarios_print_a_table(space: Dataspace, provider: Site, people_csv: Path) -> None:
    await publish(provider, people_csv)
    result = await invoke(*operated(provider), *await harness(space), "--only", "TP_C:01-*")
    assert result.exit_code == 0, result.stdout
    assert "TP_C:01-01" in result.stdout and "TP_C:01-06" in result.stdout
    assert "6 passed, 0 failed, 0 skipped" in result.stdout


async def test_operator_scenarios_are_skipped_without_the_management_api(
    space: Dataspace, provider: Site, people_csv: Path
) -> None:
    await publish(provider, people_csv)
    peer = ["--peer", provider.dsp_url, "--peer-id", provider.id]
    result = await invoke(*peer, *await harness(space), "--only", "C*", "--json")
    report = json.loads(result.stdout)
    assert result.exit_code == 0, report
    outcomes = {r["id"]: r["outcome"] for r in report["results"]}
    assert outcomes["CAT:01-01"] == outcomes["CN:01-01"] == outcomes["CN:03-04"] == "passed"
    assert outcomes["CN:01-02"] == outcomes["CN_C:01-01"] == "skipped"


async def test_an_unreachable_connector_fails(space: Dataspace) -> None:
    peer = f"http://127.0.0.1:{unused_port()}/dsp"
    result = await invoke("--peer", peer, "--peer-id", "urn:tessera:nobody", *await harness(space), "--only", "MET*")
    assert result.exit_code == 1
    assert "failed" in result.stdout


async def test_usage_errors_exit_2(space: Dataspace, provider: Site, tmp_path: Path) -> None:
    no_identity = await invoke("--peer", provider.dsp_url, "--dir", str(tmp_path / "nowhere"))
    assert no_identity.exit_code == 2
    no_peer_id = await invoke("--peer", provider.dsp_url, *await harness(space), "--only", "MET*")
    assert no_peer_id.exit_code == 2
    assert "--peer-id" in no_peer_id.stderr


async def test_plain_mode_plays_a_plain_dsp_peer(space: Dataspace, provider: Site, people_csv: Path) -> None:
    await publish(provider, people_csv)
    result = await invoke(*operated(provider), *await harness(space), "--plain", "--only", "CN*", "--json")
    report = json.loads(result.stdout)
    assert result.exit_code == 0, report
    assert report["mode"] == "plain"
    assert report["summary"] == {"passed": 31, "failed": 0, "skipped": 0}
