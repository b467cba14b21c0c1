"""A data user's commands (connector/user_cli.py) against a real broker and two connectors on loopback: the
whole exchange with commands only (search → catalog → negotiate → agreements → transfer start → pull), and
their exit codes. The CLI runs in-process (typer's runner) in a worker thread, so the servers keep serving."""

import asyncio
import csv
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tessera.cli import create_app
from tests.dataspace import Dataspace, Site
from tests.utils import unused_port

PATTERNS = [
    {"name": "purpose", "params": {"allowed_purposes": ["research"]}},
    {"name": "max_uses", "params": {"max_uses": 3}},
    {"name": "masked_fields", "params": {"masked_fields": ["email"]}},
]


async def tessera(*args: str | Path) -> tuple[int, str, str]:
    """Run `tessera ARGS` in-process, off the event loop: (exit code, stdout, stderr)."""
    result = await asyncio.to_thread(CliRunner().invoke, create_app(), [str(arg) for arg in args])
    return result.exit_code, result.stdout, result.stderr


async def published(provider: Site, data: Path) -> dict[str, Any]:
    """An asset under a pattern policy, offered and registered at the broker; the offer."""
    asset = await provider.post("/assets", {"title": "Wearables study", "format": "csv", "path": str(data)})
    policy = await provider.post("/policies", {"title": "research, 3 uses", "patterns": PATTERNS})
    offer = await provider.post("/offers", {"asset_id": asset["id"], "usage_policy_id": policy["id"]})
    registered = await provider.api.put("/registration", json={"title": "Provider"})
    assert registered.status_code == 200, registered.text
    return offer


async def test_a_data_user_finds_negotiates_and_pulls_with_commands_only(
    provider: Site, consumer: Site, people_csv: Path, tmp_path: Path
) -> None:
    offer = await published(provider, people_csv)
    home = consumer.config.directory

    code, out, _ = await tessera("search", "wearables", "--dir", home, "--json")
    assert code == 0
    (hit,) = json.loads(out)["results"]
    assert hit["offering"]["id"] == offer["id"] and hit["offering"]["dataset_id"] == offer["asset_id"]
    code, table, _ = await tessera("search", "wearables", "--broker", consumer.config.broker_url, "--category", "x")
    assert code == 0 and "0 found" in table

    code, out, _ = await tessera("catalog", provider.id, "--dir", home, "--json")
    assert code == 0
    (row,) = json.loads(out)["offers"]
    assert (row["offer_id"], row["dataset_id"]) == (offer["id"], offer["asset_id"])
    assert row["terms"][:3] == ["Allowed: Use the data", "  Only for the purposes: research", "  At most 3 uses"]
    code, table, _ = await tessera("catalog", provider.id, "--dir", home)
    assert code == 0 and "Wearables study" in table and "fields: email" in table

    dataset = hit["offering"]["dataset_id"]
    code, out, _ = await tessera(
        "negotiate", "--dir", home, "--provider", provider.id, "--offer", offer["id"], "--dataset", dataset, "--json"
    )
    assert code == 0, out
    negotiation = json.loads(out)
    assert negotiation["state"] == "FINALIZED"
    agreement_id = negotiation["agreement_id"]

    code, out, _ = await tessera("agreements", "--dir", home, "--json")
    assert code == 0 and [a["id"] for a in json.loads(out)] == [agreement_id]
    code, out, _ = await tessera("agreements", "show", agreement_id, "--dir", home, "--json")
    assert code == 0 and json.loads(out)["target"] == dataset
    code, table, _ = await tessera("agreements", "show", agreement_id, "--dir", home)
    assert code == 0 and "provider and consumer" in table

    code, transfer_id, _ = await tessera("transfer", "start", agreement_id, "--dir", home)
    assert code == 0
    transfer_id = transfer_id.strip()
    code, out, _ = await tessera(
        "transfer", "pull", transfer_id, "-o", tmp_path / "out.csv", "--purpose", "research", "--dir", home, "--json"
    )
    assert code == 0, out
    records = list(csv.DictReader((tmp_path / "out.csv").read_text().splitlines()))
    assert len(records) == 3 and "email" not in records[0]


async def test_negotiate_finds_the_dataset_itself_and_says_how_it_ended(
    provider: Site, consumer: Site, people_csv: Path
) -> None:
    offer = await published(provider, people_csv)
    home = consumer.config.directory
    negotiate = ("negotiate", "--dir", home, "--provider", provider.id)

    agreed = await tessera(*negotiate, "--offer", offer["id"])
    unknown = await tessera(*negotiate, "--offer", "no-such-offer")
    refused = await tessera(*negotiate, "--offer", offer["id"], "--purpose", "marketing", "--json")
    bad_id = await tessera("negotiate", "--dir", home, "--provider", "not a urn", "--offer", "o", "--dataset", "d")

    assert agreed[0] == 0 and "agreed" in agreed[1]
    assert unknown[0] == 2 and "no offer no-such-offer" in unknown[2]
    assert refused[0] == 1 and json.loads(refused[1])["state"] == "TERMINATED" and "terminated" in refused[2]
    assert bad_id[0] == 2


async def test_commands_name_what_is_unreachable_or_missing(space: Dataspace, consumer: Site, tmp_path: Path) -> None:
    offline = await space.admit("offline")  # its config names a port nothing listens on
    transfer_start = await tessera("transfer", "start", "some-agreement", "--dir", offline.directory)
    no_provider = await tessera("catalog", "urn:tessera:offline", "--dir", consumer.config.directory)
    gone_provider = await tessera(
        "catalog", "urn:tessera:offline", "--provider-url", f"http://127.0.0.1:{unused_port()}/dsp",
        "--dir", consumer.config.directory,
    )  # fmt: skip
    broker_down = await tessera("search", "--broker", f"http://127.0.0.1:{unused_port()}")
    no_config = await tessera("agreements", "--dir", tmp_path / "nothing-here")
    unknown_agreement = await tessera("transfer", "start", "no-such-agreement", "--dir", consumer.config.directory)
    unknown_shown = await tessera("agreements", "show", "no-such-agreement", "--dir", consumer.config.directory)

    assert transfer_start[0] == 3 and "not reachable" in transfer_start[2]
    assert no_provider[0] == 2 and "not registered" in no_provider[2]
    assert gone_provider[0] == 3
    assert broker_down[0] == 3 and "broker" in broker_down[2]
    assert no_config[0] == 2 and "connector init" in no_config[2]
    assert unknown_agreement[0] == 2
    assert unknown_shown[0] == 2


@pytest.mark.parametrize("command", ["search", "catalog", "negotiate", "agreements", "transfer start"])
async def test_each_command_documents_its_exit_codes(command: str) -> None:
    code, out, _ = await tessera(*command.split(), "--help")
    assert code == 0 and "Exit 0" in " ".join(out.split())
