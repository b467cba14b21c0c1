"""The quickstart: a whole data space on this machine, end to end, on real parts.

Starts a broker and two connectors (provider and consumer) as separate processes on free loopback
ports, each with its own SQLite file, and walks one exchange through them with the `tessera` CLI and
the connectors' management APIs. Stops everything it started; exits 0, or 1 naming the failed step.

    python deploy/quickstart.py [--keep DIR]
"""

import argparse
import csv
import io
import json
import shutil
import signal
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from cluster import (  # noqa: E402 (deploy/ is a folder of scripts, not a package)
    Processes,
    StepFailed,
    admit,
    free_port,
    init_broker,
    init_connector,
    management,
    tessera,
)

REPO = HERE.parent
SAMPLE = HERE / "sample" / "study_participants.csv"
POLICY = REPO / "policies" / "examples" / "research_limited.rego"
IDS = {"provider": "urn:tessera:sensorlab", "consumer": "urn:tessera:uni-research"}
TESSERA = "https://w3id.org/tessera/v1/"  # our terms in the DSP catalog: the dataset's labels
console = Console(highlight=False)


@contextmanager
def step(title: str) -> Iterator[None]:
    started = time.monotonic()
    with console.status(f"[bold]{title}…"):
        try:
            yield
        except StepFailed as exc:
            console.print(f"[red]✗ {title}[/]: {exc}")
            raise
        except (httpx.HTTPError, AssertionError, KeyError, ValueError) as exc:
            console.print(f"[red]✗ {title}[/]: {type(exc).__name__}: {exc}")
            raise StepFailed(str(exc)) from exc
    console.print(f"[green]✓[/] {title} [dim]({time.monotonic() - started:.2f} s)[/]")


def expect(response: httpx.Response, status: int) -> Any:
    if response.status_code != status:
        raise StepFailed(f"{response.request.method} {response.request.url} → {response.status_code}: {response.text}")
    return response.json() if response.content else None


def wait_state(api: httpx.Client, path: str, wanted: str) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        body: dict[str, Any] = expect(api.get(path), 200)
        if body["state"] == wanted:
            return body
        if body["state"] == "TERMINATED":
            raise StepFailed(f"{path} was terminated: {body.get('reasons')}")
        time.sleep(0.05)
    raise StepFailed(f"{path} did not reach {wanted}")


def start_space(work: Path, processes: Processes) -> dict[str, str]:
    """A broker and two admitted connectors, running; their URLs by name."""
    ports = {name: free_port() for name in ("broker", "provider", "consumer")}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    ids = IDS
    profiles = {
        "provider": ("SensorLab GmbH", "EU-DE", "DE"),
        "consumer": ("University Research Institute", "EU-FR", "FR"),
    }
    # A sample LEI (ISO 17442, its check digits valid) for the consumer: the filing names it.
    registry = {"provider": (), "consumer": ("--registry-type", "lei", "--registry-id", "9695005MSAMPLE0U0192")}
    # The provider's data is at home in DE and may go to FR (a cross-border use, filed); nowhere else.
    rules = {"provider": ("--home-jurisdiction", "DE", "--cross-border-destination", "FR"), "consumer": ()}

    with step("Broker: authority key and configuration (tessera broker init)"):
        init_broker(work, urls["broker"], ports["broker"])
    for role in ("provider", "consumer"):
        with step(f"{role.title()} connector {ids[role]}: key pair and configuration (tessera connector init)"):
            init_connector(work, role, ids[role], urls[role], urls["broker"], ports[role], *rules[role])
        org, region, jurisdiction = profiles[role]
        with step(
            f"Operator admits {ids[role]} ({org}, {region}, jurisdiction {jurisdiction}) (tessera participant add)"
        ):
            admit(work, role, ids[role], org, region, "--jurisdiction", jurisdiction, *registry[role])
    with step(f"Start broker and both connectors as separate processes (logs in {work})"):
        processes.start("broker", "broker", "serve", "--dir", str(work / "broker"), health=urls["broker"] + "/health")
        for role in ("provider", "consumer"):
            processes.start(role, "connector", "serve", "--dir", str(work / role), health=urls[role] + "/health")

    return urls


def run(work: Path, processes: Processes) -> None:
    urls = start_space(work, processes)
    ids = IDS
    provider, consumer = management(work / "provider"), management(work / "consumer")
    with step("Provider publishes the study dataset with usage policy 'research, ≤ 3 uses, e-mail masked'"):
        asset = expect(
            provider.post(
                "/assets",
                json={
                    "title": "Wearables study: participants",
                    "format": "csv",
                    "path": str(SAMPLE),
                    "description": "Resting heart rate and daily steps of study participants",
                    "keywords": ["health", "wearables", "research"],
                    "classification": "general",
                    "category": "health",
                    "personal_information": True,
                },
            ),
            201,
        )
        policy = expect(
            provider.post(
                "/policies", json={"title": "research only, 3 uses, email masked", "source": POLICY.read_text()}
            ),
            201,
        )
        offer = expect(provider.post("/offers", json={"asset_id": asset["id"], "usage_policy_id": policy["id"]}), 201)
        expect(
            provider.put(
                "/registration", json={"title": "SensorLab data connector", "description": "Sensor and wearables data"}
            ),
            200,
        )
        console.print(f"    policy hash {policy['hash'][:23]}…, offer {offer['id']}")
        console.print(
            f"    labels: {asset['classification']}, category {asset['category']}, personal information, "
            f"home jurisdiction {asset['home_jurisdiction']} (the provider's default)"
        )

    with step("Consumer finds the offering at the broker (search 'wearables')"):
        found = expect(httpx.get(urls["broker"] + "/search", params={"q": "wearables"}), 200)
        hit = next(r for r in found["results"] if r["offering"]["id"] == offer["id"])
        console.print(f"    found {hit['offering']['title']!r} from {hit['participant_id']} at {hit['endpoint']}")

    with step("Consumer reads the provider's DSP catalog"):
        catalog = expect(
            consumer.post(
                "/catalog/request", json={"provider_url": hit["endpoint"], "provider_id": hit["participant_id"]}
            ),
            200,
        )
        dataset = next(d for d in catalog["dataset"] if any(o["@id"] == offer["id"] for o in d["hasPolicy"]))
        shown = {k.removeprefix(TESSERA): v for k, v in dataset.items() if k.startswith(TESSERA)}
        console.print("    dataset labels: " + ", ".join(f"{k} {json.dumps(v)}" for k, v in shown.items()))

    with step("Consumer negotiates; the provider agrees and signs, the consumer countersigns"):
        started = expect(
            consumer.post(
                "/negotiations",
                json={
                    "provider_id": ids["provider"],
                    "provider_url": hit["endpoint"],
                    "offer_id": offer["id"],
                    "target": dataset["@id"],
                },
            ),
            201,
        )
        negotiation = wait_state(consumer, f"/negotiations/{started['id']}", "FINALIZED")
        agreement = expect(consumer.get(f"/agreements/{negotiation['agreement_id']}"), 200)
        assert agreement["usage_policy_hash"] == policy["hash"], "the agreement binds another policy"
        console.print(
            f"    agreement {agreement['id']} binds {agreement['usage_policy_hash'][:23]}…, "
            f"signed by provider and consumer (JWS ES256)"
        )

    with step("Consumer starts an HTTP-pull transfer"):
        transfer = expect(consumer.post("/transfers", json={"agreement_id": agreement["id"]}), 201)
        wait_state(consumer, f"/transfers/{transfer['id']}", "STARTED")
    data_path = f"/transfers/{transfer['id']}/data"

    with step("Consumer pulls the data for 'research' (use 1 of 3): the e-mail column is absent"):
        pulled = consumer.get(data_path, params={"purpose": "research"})
        expect_ok(pulled)
        records = list(csv.DictReader(io.StringIO(pulled.text)))
        assert records and "email" not in records[0], "the masked column was delivered"
        show_records(records[:3], len(records))

    with step("Consumer asks for 'marketing': denied with the policy's reasons"):
        show_denial(consumer.get(data_path, params={"purpose": "marketing"}))

    with step("Uses 2 and 3 are allowed; the fourth is denied"):
        for _ in range(2):
            expect_ok(consumer.get(data_path, params={"purpose": "research"}))
        show_denial(consumer.get(data_path, params={"purpose": "research"}))

    with step("Each use crossed from DE to FR: the provider filed it (tessera usage report --cross-border)"):
        filings = json.loads(tessera("usage", "report", "--cross-border", "--dir", str(work / "provider"), "--json"))
        assert len(filings) == 3, f"{len(filings)} filings for 3 uses"
        show_filing(filings[0], len(filings))

    for role in ("provider", "consumer"):
        with step(f"{role.title()}'s audit chain verifies (tessera audit verify)"):
            report = json.loads(tessera("audit", "verify", "--dir", str(work / role), "--json"))
            console.print(f"    {report['entries']} entries, hash chain intact")


def expect_ok(response: httpx.Response) -> None:
    if response.status_code != 200:
        raise StepFailed(f"data request answered {response.status_code}: {response.text}")


def show_records(records: list[dict[str, str]], total: int) -> None:
    table = Table(*records[0].keys(), title=f"{total} records received (first 3)", title_justify="left")
    for record in records:
        table.add_row(*record.values())
    console.print(table)


def show_filing(filing: dict[str, Any], total: int) -> None:
    table = Table("field", "value", title=f"Cross-border filing 1 of {total} (出境 存证备案)", title_justify="left")
    for name in ("at", "agreement", "recipient", "recipient_org"):
        table.add_row(name, str(filing[name]))
    registry = filing["registry_id"]
    table.add_row("registry_id", f"{registry['type']} {registry['value']}" if registry else "(none recorded)")
    table.add_row("from → to", f"{filing['jurisdiction_from']} → {filing['jurisdiction_to']}")
    for name in ("category", "level", "personal_information"):
        table.add_row(name, str(filing[name]))
    table.add_row(
        "bytes", "pending (the stream is still metering)" if filing["bytes"] is None else str(filing["bytes"])
    )
    console.print(table)


def show_denial(response: httpx.Response) -> None:
    if response.status_code != 403:
        raise StepFailed(f"expected a denial (403), got {response.status_code}: {response.text}")
    for reason in response.json().get("reasons", []):
        console.print(f"    [yellow]denied:[/] {reason}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it afterwards")
    parser.add_argument(
        "--console",
        action="store_true",
        help="start the data space and keep it running for the web consoles, without the scripted exchange",
    )
    args = parser.parse_args(argv)
    if args.console:
        return serve_consoles(args.keep or Path(tempfile.mkdtemp(prefix="tessera-console-")))
    work = args.keep or Path(tempfile.mkdtemp(prefix="tessera-quickstart-"))
    work.mkdir(parents=True, exist_ok=True)
    processes = Processes(work)
    started = time.monotonic()
    console.rule("[bold]Tessera quickstart: one data exchange in a trusted data space")
    try:
        run(work, processes)
    except (StepFailed, KeyboardInterrupt):
        console.print(f"[red]quickstart failed[/]; logs in {work}")
        return 1
    finally:
        processes.stop_all()
    console.rule(f"[green]done in {time.monotonic() - started:.1f} s: every process stopped")
    console.print("The same exchange in a browser, in the web consoles: [bold]make console[/] (docs/console.md)")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def serve_consoles(work: Path) -> int:
    """The quickstart's data space for a person at a browser: the consoles' addresses and keys, until Ctrl-C."""
    work.mkdir(parents=True, exist_ok=True)
    processes = Processes(work)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it as Ctrl-C does: every process with it
    console.rule("[bold]Tessera: a data space for the web consoles")
    try:
        urls = start_space(work, processes)
        # Printed whole, one per line: a table would cut the URLs and keys a person copies.
        for role in ("provider", "consumer"):
            key = tomllib.loads((work / role / "connector.toml").read_text())["management_token"]
            console.print(f"[bold]{role} connector[/]: {urls[role]}/console  key [bold]{key}[/]")
        broker = tomllib.loads((work / "broker" / "broker.toml").read_text())
        if broker.get("admin_token"):
            console.print(f"[bold]broker[/]: {urls['broker']}/console  key [bold]{broker['admin_token']}[/]")
        console.print(f"Sample data to publish from the provider: [bold]{SAMPLE}[/]")
        console.print("Walk-through: docs/console.md. Press Ctrl-C to stop every process.")
        while True:
            time.sleep(3600)
    except StepFailed:
        console.print(f"[red]start failed[/]; logs in {work}")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        processes.stop_all()


def _interrupt(_signal: int, _frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
