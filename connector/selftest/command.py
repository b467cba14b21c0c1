"""`tessera selftest`: the TCK's negotiation and transfer flows against a running connector.

Exit codes: 0 every scenario that ran passed, 1 a scenario failed, 2 usage or setup error.
"""

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from connector.config import ConnectorConfig
from connector.selftest.peer import Peer
from connector.selftest.runner import DEFAULT_WITHIN, ScenarioResult, participant_id_of, run_all, select
from connector.selftest.scenarios import Scenario
from connector.selftest.schemas import Schemas, SchemaSetupError
from connector.selftest.steps import Management, Target

STYLE = {"passed": "green", "failed": "red", "skipped": "yellow"}


def selftest(
    peer: Annotated[
        str, typer.Option("--peer", help="DSP base URL of the connector under test, e.g. http://host:8181/dsp.")
    ],
    identity_dir: Annotated[
        Path,
        typer.Option(
            "--dir",
            "-d",
            help="A connector directory whose participant the same broker admitted: the harness's identity.",
        ),
    ],
    peer_id: Annotated[
        str | None, typer.Option(help="The connector under test's participant id (default: from an open catalog).")
    ] = None,
    management_url: Annotated[
        str | None, typer.Option(help="Its management API (e.g. http://host:8181/api): enables operator scenarios.")
    ] = None,
    api_key: Annotated[str | None, typer.Option(help="The management API key.", envvar="TESSERA_API_KEY")] = None,
    only: Annotated[str | None, typer.Option(help="Run the scenarios whose id matches this glob or prefix.")] = None,
    schemas: Annotated[Path | None, typer.Option(help="DSP schema directory (default ../shared/dsp).")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for a message or a state.")] = DEFAULT_WITHIN,
    plain: Annotated[
        bool,
        typer.Option(
            "--plain", help="Behave as a plain DSP peer (the TCK's message shapes, no Tessera signatures or terms)."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    """Run the TCK's scenarios against a running connector, validating every message, and print a table."""
    err = Console(stderr=True)
    try:
        config = ConnectorConfig.load(identity_dir)
        validator = Schemas(schemas)
    except (OSError, TypeError, ValueError, SchemaSetupError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    scenarios = select(only)
    if not scenarios:
        err.print(f"[red]error:[/] no scenario matches {only!r}")
        raise typer.Exit(2)
    management = Management(management_url, api_key or "") if management_url else None
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err, transient=True
    ) as progress:
        task = progress.add_task("self-test", total=len(scenarios))

        def advance(result: ScenarioResult) -> None:
            progress.update(task, advance=1, description=f"{result.id} {result.outcome}")

        results = asyncio.run(
            _run(
                config,
                validator,
                peer,
                peer_id,
                management,
                scenarios,
                within=timeout,
                plain=plain,
                on_result=advance,
                err=err,
            )
        )
    _print(results, as_json, plain)
    raise typer.Exit(1 if any(r.outcome == "failed" for r in results) else 0)


async def _run(
    config: ConnectorConfig,
    validator: Schemas,
    dsp_url: str,
    peer_id: str | None,
    management: Management | None,
    scenarios: list[Scenario],
    *,
    within: float,
    plain: bool,
    on_result: Callable[[ScenarioResult], None],
    err: Console,
) -> list[ScenarioResult]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(within, connect=3.0)) as http:
        participant = peer_id or await participant_id_of(http, dsp_url)
        if participant is None:
            err.print("[red]error:[/] its catalog needs a token addressed to it; give --peer-id")
            raise typer.Exit(2)
        peer = Peer(config, validator, http, plain=plain)
        target = Target(dsp_url.rstrip("/"), participant, management)
        async with peer.serving():
            return await run_all(scenarios, peer, target, within=within, on_result=on_result)


def _print(results: list[ScenarioResult], as_json: bool, plain: bool) -> None:
    counts = {outcome: sum(r.outcome == outcome for r in results) for outcome in STYLE}
    mode = "plain" if plain else "tessera"
    if as_json:
        report = {"mode": mode, "results": [r.to_dict() for r in results], "summary": counts}
        typer.echo(json.dumps(report, indent=2))
        return
    table = Table("id", "title", "outcome", "detail", title=f"DSP 2025-1 self-test ({mode} peer)")
    for r in results:
        table.add_row(r.id, r.title, f"[{STYLE[r.outcome]}]{r.outcome}[/]", r.detail)
    console = Console()
    console.print(table)
    console.print(", ".join(f"[{STYLE[k]}]{v} {k}[/]" for k, v in counts.items()))
