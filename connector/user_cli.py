"""A data user's commands: `tessera search`, `tessera catalog`, `tessera negotiate`, `tessera agreements`,
`tessera transfer start` (and the connector's `tessera transfer pull`).

They run against the user's own (consumer) connector, `--dir D`: its management API at the URL and with
the key its config names, and its broker. `--json` prints the API's answer; a spinner or the plain words
go to the terminal otherwise.

Exit codes: 0 done (found, agreed, started), 1 refused (a negotiation or transfer terminated, a denial),
2 bad input (an unknown id or offer, a missing flag, no config in --dir), 3 unreachable (the connector,
the broker or the provider) or a wait that ran out.
"""

import dataclasses
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.table import Table

from connector.config import CONFIG_FILE, SECRET_SETTINGS, ConnectorConfig
from connector.data_user import BAD_INPUT, REFUSED, CommandFailed, Management, offers_in, registered_endpoint
from connector.data_user import search as broker_search
from tessera import words
from tessera.odrl import InvalidPolicy, parse_policy
from tessera.serving import secret_overrides

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

EXIT_CODES = "Exit 0 done, 1 refused or terminated, 2 bad input, 3 unreachable or timed out."
agreements_app = typer.Typer(
    help=f"The agreements this connector holds. {EXIT_CODES}", invoke_without_command=True, no_args_is_help=False
)

DirOption = Annotated[Path, typer.Option("--dir", "-d", help="The connector's directory (config, key, database).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
ProviderOption = Annotated[
    str, typer.Option("--provider", help="The provider's participant id, e.g. urn:tessera:acme.")
]
ProviderUrlOption = Annotated[
    str | None,
    typer.Option("--provider-url", help="The provider's DSP URL; default: the endpoint it registered at the broker."),
]
WaitOption = Annotated[bool, typer.Option("--wait/--no-wait", help="Follow it until it settles, or return at once.")]
TimeoutOption = Annotated[float, typer.Option("--timeout", help="Seconds to wait before giving up (exit 3).")]


def register(app: typer.Typer, transfer_app: typer.Typer) -> None:
    """Plug a data user's commands into the root `tessera` command (and `transfer start` into `transfer`)."""
    app.command("search")(search)
    app.command("catalog")(catalog)
    app.command("negotiate")(negotiate)
    app.add_typer(agreements_app, name="agreements")
    transfer_app.command("start")(transfer_start)


# -- search and catalog --------------------------------------------------------------------------------------


def search(
    query: Annotated[str, typer.Argument(help="Words to find in titles, descriptions, keywords; '' lists all.")] = "",
    directory: Annotated[
        Path | None, typer.Option("--dir", "-d", help="The connector's directory; its broker is the default.")
    ] = None,
    broker: Annotated[str | None, typer.Option("--broker", help="The broker's URL (instead of --dir's).")] = None,
    provider: Annotated[list[str] | None, typer.Option("--provider", help="Only this provider (repeatable).")] = None,
    category: Annotated[list[str] | None, typer.Option("--category", help="Only this category (repeatable).")] = None,
    data_format: Annotated[list[str] | None, typer.Option("--format", help="Only this format, e.g. csv.")] = None,
    classification: Annotated[
        list[str] | None, typer.Option("--classification", help="Only this grade, e.g. general.")
    ] = None,
    region: Annotated[list[str] | None, typer.Option("--region", help="Only this region, e.g. EU-DE.")] = None,
    keyword: Annotated[str | None, typer.Option("--keyword", help="Only offerings with this keyword.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100, help="At most this many hits.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Find offerings at the broker: each hit names its provider, the dataset id and the offer id a
    negotiation needs. Exit 0 (also when nothing matches), 2 bad input, 3 broker unreachable."""
    broker_url = broker or (_config(directory).broker_url if directory is not None else None)
    if not broker_url:
        _fail("name the broker with --broker URL, or the connector with --dir D", code=BAD_INPUT)
    filters = {"participant": provider, "theme": category, "format": data_format}
    filters |= {"classification": classification, "region": region}
    params: list[tuple[str, str | int]] = [("q", query), ("limit", limit), ("facets", "false")]
    params += [(name, value) for name, values in filters.items() for value in values or ()]
    params += [("keyword", keyword)] if keyword else []
    with _failing():
        answer = broker_search(broker_url, params)
    if as_json:
        typer.echo(json.dumps(answer))
        return
    table = _table("title", "provider", "dataset id", "offer id", "labels", title=f"{answer['total']} found")
    for hit in answer["results"]:
        offering = hit["offering"]
        table.add_row(offering["title"], hit["participant_id"], offering["dataset_id"], offering["id"], _labels(hit))
    console.print(table)


def _labels(hit: dict[str, Any]) -> str:
    offering = hit["offering"]
    shown = [offering[name] for name in ("classification", "theme", "format", "region") if offering[name]]
    state = hit["liveness"]["state"]
    return ", ".join(shown + ([state.lower()] if state != "ONLINE" else []))


def catalog(
    provider: Annotated[str, typer.Argument(help="The provider's participant id, e.g. urn:tessera:acme.")],
    directory: DirOption,
    provider_url: ProviderUrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """The provider's datasets and offers as it shows them to us, each offer's terms in plain words.
    Exit 0, 2 bad input (not registered, no participant id), 3 connector or provider unreachable."""
    if provider.startswith(("http://", "https://")):
        _fail("PROVIDER is the participant id (urn:…); give its URL with --provider-url", code=BAD_INPUT)
    config = _config(directory)
    with _failing(), _management(config) as api:
        url = provider_url or registered_endpoint(config.broker_url, provider)
        found = api.call("POST", "/catalog/request", {"provider_url": url, "provider_id": provider})
    rows = offers_in(found)
    if as_json:
        typer.echo(json.dumps({"provider_id": provider, "provider_url": url, "offers": [r.to_dict() for r in rows]}))
        return
    table = _table("dataset", "dataset id", "offer id", "terms", title=f"{provider} at {url}", show_lines=True)
    for row in rows:
        table.add_row(row.title, row.dataset_id, row.offer_id, "\n".join(row.terms))
    console.print(table if rows else f"{provider} shows us no offers")


# -- negotiate -------------------------------------------------------------------------------------------


def negotiate(
    directory: DirOption,
    provider: ProviderOption,
    offer: Annotated[str, typer.Option("--offer", help="The offer's id (a search hit's offer id).")],
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="The dataset's id; default: the one holding --offer in the catalog.")
    ] = None,
    provider_url: ProviderUrlOption = None,
    purpose: Annotated[
        list[str] | None, typer.Option("--purpose", help="A purpose we need (repeatable); the agent asks for it.")
    ] = None,
    uses: Annotated[int | None, typer.Option("--uses", min=1, help="The number of uses we need.")] = None,
    days: Annotated[int | None, typer.Option("--days", min=1, help="The days of use we need.")] = None,
    wait: WaitOption = True,
    timeout: TimeoutOption = 30.0,
    as_json: JsonOption = False,
) -> None:
    """Negotiate an agreement for an offer and follow it until agreed or terminated. Exit 0 agreed (with
    --no-wait: started), 1 terminated or refused, 2 bad input (unknown offer), 3 unreachable or timed out."""
    config = _config(directory)
    needs = {"purposes": purpose or None, "uses": uses, "duration_days": days}
    with _failing(), _management(config) as api:
        url = provider_url or registered_endpoint(config.broker_url, provider)
        target = dataset or _dataset_of(api, provider, url, offer)
        body: dict[str, Any] = {"provider_id": provider, "provider_url": url, "offer_id": offer, "target": target}
        if any(value is not None for value in needs.values()):
            body["needs"] = needs
        started = api.call("POST", "/negotiations", body, expect=201)
        found = _follow(api, f"/negotiations/{started['id']}", {"FINALIZED"}, wait, timeout, as_json) or started
    if as_json:
        typer.echo(json.dumps(found))
    elif found["state"] == "FINALIZED":
        console.print(f"[green]agreed[/]: agreement {found['agreement_id']} (negotiation {found['id']})")
    elif found["state"] != "TERMINATED":
        console.print(f"negotiation {found['id']} is {found['state']}")
    if found["state"] == "TERMINATED":
        _fail(
            f"negotiation {found['id']} was terminated: {'; '.join(found['reasons']) or 'no reason given'}",
            code=REFUSED,
        )


def _dataset_of(api: Management, provider: str, url: str, offer: str) -> str:
    """The id of the dataset holding `offer` in the provider's catalog, as it shows it to us."""
    rows = offers_in(api.call("POST", "/catalog/request", {"provider_url": url, "provider_id": provider}))
    for row in rows:
        if row.offer_id == offer:
            return row.dataset_id
    raise CommandFailed(f"{provider}'s catalog shows us no offer {offer}", BAD_INPUT)


def _follow(
    api: Management, path: str, wanted: set[str], wait: bool, timeout: float, quiet: bool
) -> dict[str, Any] | None:
    """Wait for a process with a spinner naming its state; None without --wait."""
    if not wait:
        return None
    noun = path.split("/")[1].removesuffix("s")
    with err_console.status(f"{noun} requested…") as status:
        if quiet:
            status.stop()

        def show(found: dict[str, Any]) -> None:
            waiting = f" ({found['waiting']})" if found.get("waiting") else ""
            status.update(f"{noun} {found['id']}: {found['state']}{waiting}")

        return api.wait(path, wanted, within=timeout, watch=show)


# -- agreements ------------------------------------------------------------------------------------------


@agreements_app.callback()
def agreements(
    context: typer.Context,
    directory: Annotated[Path | None, typer.Option("--dir", "-d", help="The connector's directory.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List the agreements this connector holds (as consumer or provider)."""
    if context.invoked_subcommand is not None:
        return
    if directory is None:
        _fail("name the connector with --dir D", code=BAD_INPUT)
    with _failing(), _management(_config(directory)) as api:
        items = api.call("GET", "/agreements")["items"]
    if as_json:
        typer.echo(json.dumps(items))
        return
    table = _table("agreement", "role", "provider", "dataset id", "offer id", "signed at", "terms", show_lines=True)
    for item in sorted(items, key=lambda found: str(found["signed_at"])):
        cells = (item["id"], item["role"], item["provider_id"], item["target"], item["offer_id"], item["signed_at"])
        table.add_row(*cells, _terms(item))
    console.print(table if items else "no agreements yet")


@agreements_app.command("show")
def agreements_show(
    agreement_id: Annotated[str, typer.Argument(help="The agreement's id.")],
    directory: DirOption,
    as_json: JsonOption = False,
) -> None:
    """One agreement: its parties, dataset, offer, signatures and terms. Exit 0, 2 unknown, 3 unreachable."""
    with _failing(), _management(_config(directory)) as api:
        found = api.call("GET", f"/agreements/{agreement_id}")
    if as_json:
        typer.echo(json.dumps(found))
        return
    table = _table("", "", show_header=False, title=f"agreement {found['id']}", title_justify="left")
    for name in ("role", "provider_id", "consumer_id", "target", "offer_id", "usage_policy_hash", "signed_at"):
        table.add_row(name.replace("_", " "), str(found[name]))
    table.add_row("signed by", "provider and consumer" if found["countersigned"] else "provider only")
    table.add_row("terms", _terms(found))
    console.print(table)


def _terms(agreement: dict[str, Any]) -> str:
    try:
        return "\n".join(words.lines(parse_policy(agreement["agreement"], where="agreement")))
    except InvalidPolicy as exc:
        return f"(not readable: {exc})"


# -- transfer start --------------------------------------------------------------------------------------


def transfer_start(
    agreement_id: Annotated[str, typer.Argument(help="The agreement to transfer under (ours, as consumer).")],
    directory: DirOption,
    wait: WaitOption = True,
    timeout: TimeoutOption = 30.0,
    as_json: JsonOption = False,
) -> None:
    """Start an HTTP-pull transfer and wait until the provider has started it; prints the transfer's id
    (for `tessera transfer pull`). Exit 0 started, 1 terminated or refused, 2 unknown agreement, 3
    unreachable or timed out."""
    with _failing(), _management(_config(directory)) as api:
        started = api.call("POST", "/transfers", {"agreement_id": agreement_id}, expect=201)
        found = _follow(api, f"/transfers/{started['id']}", {"STARTED"}, wait, timeout, as_json) or started
    if as_json:
        typer.echo(json.dumps(found))
    else:
        typer.echo(found["id"])  # alone on stdout, for `ID=$(tessera transfer start …)`
    if found["state"] in ("TERMINATED", "COMPLETED") and wait:
        _fail(f"transfer {found['id']} is {found['state']}: {'; '.join(found['reasons']) or 'no reason'}", code=REFUSED)


# -- shared ----------------------------------------------------------------------------------------------


def _table(*columns: str, **options: Any) -> Table:
    """A table whose ids wrap rather than end in an ellipsis: they are there to be copied."""
    table = Table(**options)
    for name in columns:
        table.add_column(name, overflow="fold")
    return table


def _config(directory: Path) -> ConnectorConfig:
    """connector.toml, with the secrets a container passes in its environment (as `tessera connector` does)."""
    try:
        config = ConnectorConfig.load(directory)
        return dataclasses.replace(config, **secret_overrides(os.environ, SECRET_SETTINGS))
    except FileNotFoundError:
        _fail(f"no {CONFIG_FILE} in {directory}; run `tessera connector init` first", code=BAD_INPUT)
    except (TypeError, ValueError) as exc:
        _fail(f"{directory / CONFIG_FILE} is invalid: {exc}", code=BAD_INPUT)


@contextmanager
def _management(config: ConnectorConfig) -> Iterator[Management]:
    headers = {"Authorization": f"Bearer {config.management_token}"}
    # The read timeout outlasts one long poll (data_user.LONG_POLL).
    with httpx.Client(base_url=f"{config.url}/api", headers=headers, timeout=httpx.Timeout(60, connect=5)) as http:
        yield Management(http)


@contextmanager
def _failing() -> Iterator[None]:
    try:
        yield
    except CommandFailed as exc:
        _fail(exc.message, code=exc.code)


def _fail(message: str, *, code: int) -> NoReturn:
    err_console.print(f"[red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(code)
