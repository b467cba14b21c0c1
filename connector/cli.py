"""The connector's commands: `tessera connector …`, `tessera audit …`, `tessera usage …`, `tessera transfer pull`,
`tessera selftest`; and a data user's (`connector.user_cli`): `tessera search`, `catalog`, `negotiate`,
`agreements`, `transfer start`.

Exit codes: 0 success, 1 a check failed (broken audit chain; a database not at this release's schema), 2 usage
or input error, 3 a service could not be reached.
"""

import asyncio
import dataclasses
import json
import os
from pathlib import Path
from typing import Annotated, Any, NoReturn
from urllib.parse import quote

import httpx
import typer
from rich.console import Console
from rich.progress import DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table
from sqlmodel import col, select

from connector import audit_check, cross_border, pull_file, user_cli
from connector.agreements import Agreement
from connector.compute.privacy import PrivacyBudget
from connector.config import (
    CONFIG_FILE,
    CRYPTO_PROFILES,
    DEFAULT_HOST,
    DEFAULT_IMPORTANT_MIN_PROFILE,
    DEFAULT_NEVER_LEAVE_LEVELS,
    DEFAULT_PORT,
    JWK_FILE,
    KEY_FILE,
    SECRET_SETTINGS,
    ConnectorConfig,
    CrossBorderRules,
    GradeRules,
)
from connector.schema import SCHEMA
from connector.selftest.command import selftest
from connector.usage import UsageCounter
from tessera.checkpoints import Checkpoint, CheckpointRefused, Receipt
from tessera.crypto import Sm2Error
from tessera.identity import SigningKey, generate_key, public_jwk, save_private_key
from tessera.logs import log_config
from tessera.migrations_cli import migrate_command
from tessera.policy.auto import ENGINE_KINDS
from tessera.serving import secret_overrides, serve
from tessera.store import Database
from tessera.tracing import TracingUnavailable, chosen

console = Console()
err_console = Console(stderr=True)

connector_app = typer.Typer(help="Set up and run a connector.", no_args_is_help=True)
audit_app = typer.Typer(help="Inspect and verify a connector's audit chain.", no_args_is_help=True)
usage_app = typer.Typer(help="Metering: uses and bytes per agreement; cross-border filings.", no_args_is_help=True)
transfer_app = typer.Typer(help="A consumer's transfers: start them, pull their data into files.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Plug the connector's commands into the root `tessera` command."""
    app.command("selftest")(selftest)
    app.add_typer(connector_app, name="connector")
    app.add_typer(audit_app, name="audit")
    app.add_typer(usage_app, name="usage")
    app.add_typer(transfer_app, name="transfer")
    app.command("query")(query)
    user_cli.register(app, transfer_app)


DirOption = Annotated[Path, typer.Option("--dir", "-d", help="The connector's directory (config, key, database).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
LogFormatOption = Annotated[
    str | None, typer.Option("--log-format", help="Server logs: text, or json (one object per line); default: config.")
]


@connector_app.command("init")
def connector_init(
    directory: DirOption,
    participant_id: Annotated[str, typer.Option(help="This participant's id, e.g. urn:tessera:acme.")],
    url: Annotated[str, typer.Option(help="Public base URL of this connector.")],
    broker_url: Annotated[str, typer.Option(help="The cluster's broker (and identity authority).")],
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(help="Port to listen on.")] = DEFAULT_PORT,
    database_url: Annotated[str, typer.Option(help="SQLAlchemy URL; default SQLite in --dir.")] = "",
    policy_engine: Annotated[
        str, typer.Option(help=f"Where usage policies run: {' | '.join(ENGINE_KINDS)} (docs/policy-engine.md).")
    ] = "embedded",
    opa_url: Annotated[str | None, typer.Option(help="The OPA server's base URL (policy engine opa).")] = None,
    crypto_profile: Annotated[
        str, typer.Option(help=f"Agreement signatures and audit hash: {' | '.join(CRYPTO_PROFILES)} (docs/crypto.md).")
    ] = "default",
    core_data: Annotated[
        str, typer.Option(help="Core data: hidden (never offered to others) or aggregate_only.")
    ] = "hidden",
    important_min_profile: Annotated[
        str, typer.Option(help="Lowest security profile that gets important data (base < trust < trust_plus).")
    ] = DEFAULT_IMPORTANT_MIN_PROFILE,
    home_jurisdiction: Annotated[
        str | None, typer.Option(help="Home jurisdiction (ISO 3166-1 alpha-2) of assets that name none.")
    ] = None,
    cross_border_destination: Annotated[
        list[str] | None, typer.Option(help="A jurisdiction data may go to (repeatable); none: no cross-border use.")
    ] = None,
    never_leave_level: Annotated[
        list[str] | None, typer.Option(help="A level that never leaves its home (repeatable; default important, core).")
    ] = None,
    never_leave_category: Annotated[
        list[str] | None, typer.Option(help="A category that never leaves its home (repeatable).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing key and config.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Create a connector's key pair and configuration (with its rules by grade and across borders)."""
    directory.mkdir(parents=True, exist_ok=True)
    key_path = directory / KEY_FILE
    if key_path.exists() and not force:
        _fail(f"{key_path} exists; use --force to replace the connector's identity", code=2)
    try:
        config = ConnectorConfig(
            directory=directory,
            participant_id=participant_id,
            url=url,
            broker_url=broker_url,
            host=host,
            port=port,
            database_url=database_url,
            policy_engine=policy_engine,
            opa_url=opa_url,
            crypto_profile=crypto_profile,
            grades=GradeRules(core=core_data, important_min_profile=important_min_profile),
            cross_border=CrossBorderRules(
                home_jurisdiction=home_jurisdiction,
                destinations=tuple(cross_border_destination or ()),
                never_leave_levels=tuple(
                    DEFAULT_NEVER_LEAVE_LEVELS if never_leave_level is None else never_leave_level
                ),
                never_leave_categories=tuple(never_leave_category or ()),
            ),
        )
        config.crypto.create_keys(sm2_key=config.sm2_key_path)
    except (ValueError, Sm2Error) as exc:
        _fail(str(exc), code=2)
    key = generate_key()
    save_private_key(key, key_path)
    jwk_path = directory / JWK_FILE
    jwk_path.write_text(json.dumps(public_jwk(key), indent=2))
    config.save()
    result = {
        "participant_id": participant_id,
        "config": str(directory / CONFIG_FILE),
        "public_jwk": str(jwk_path),
        "management_token": config.management_token,
        "crypto_profile": config.crypto_profile,
    }
    if as_json:
        typer.echo(json.dumps(result))
    else:
        console.print(f"[green]connector {participant_id} initialised[/] in {directory}")
        console.print(f"public key for the broker operator: {jwk_path}")
        if config.crypto.needs_sm2_key:
            console.print(f"SM2 agreement-signing key: {config.sm2_key_path} (bound to the identity key at start)")


connector_app.command("migrate")(migrate_command(SCHEMA, lambda directory: _load_config(directory).database_url))


@connector_app.command("serve")
def connector_serve(directory: DirOption, log_format: LogFormatOption = None) -> None:
    """Run the connector (DSP endpoints, data plane, management API, /metrics).

    With OTEL_EXPORTER_OTLP_ENDPOINT set, tracing is on whatever the config says (docs/metrics.md)."""
    from connector.app import create_app

    config = _load_config(directory)
    try:
        config = dataclasses.replace(
            config, log_format=log_format or config.log_format, tracing=chosen(config.tracing, os.environ)
        )
    except ValueError as exc:
        _fail(str(exc), code=2)
    try:  # fail here, naming the key, rather than in the app's startup
        config.crypto.signer(
            SigningKey.load(config.key_path), participant_id=config.participant_id, sm2_key=config.sm2_key_path
        )
    except (OSError, ValueError, Sm2Error) as exc:
        _fail(f"crypto profile {config.crypto_profile}: {exc}", code=2)
    try:
        app = create_app(config)
    except TracingUnavailable as exc:
        _fail(str(exc), code=2)
    serve(
        app, host=config.host, port=config.port, drain=config.shutdown_drain, log_config=log_config(config.log_format)
    )


@connector_app.command("timeline")
def connector_timeline(
    directory: DirOption,
    process_id: Annotated[str, typer.Argument(help="A negotiation or transfer id: ours or the counter-party's.")],
    as_json: JsonOption = False,
) -> None:
    """Every message sent and received, delivery attempt and decision of a negotiation or transfer, and why
    it is waiting."""
    config = _load_config(directory)
    headers = {"Authorization": f"Bearer {config.management_token}"}
    try:
        url = f"{config.url}/api/timeline/{quote(process_id, safe='')}"
        response = httpx.get(url, headers=headers, timeout=10)
    except httpx.TransportError as exc:
        _fail(f"the connector at {config.url} is not reachable: {exc}", code=3)
    if response.status_code != 200:
        _fail(response.json().get("detail", response.text), code=2 if response.status_code == 404 else 3)
    body = response.json()
    if as_json:
        typer.echo(json.dumps(body))
        return
    process = body["process"]
    console.print(f"[bold]{process['id']}[/] ({process['role']}, {process['state']})")
    table = Table("at", "event", "message", "party", "status", "detail")
    for event in body["events"]:
        cells = (event["message_type"], event["party"], event["status"], event["detail"])
        table.add_row(event["at"], event["kind"], *("" if cell is None else str(cell) for cell in cells))
    console.print(table)
    if body["waiting_for"]:
        console.print(f"waiting for: {body['waiting_for']}")
    if process.get("reasons"):
        console.print("reasons: " + "; ".join(process["reasons"]), soft_wrap=True)


def query(
    agreement_id: Annotated[str, typer.Argument(help="The agreement to query under (ours, as consumer).")],
    sql: Annotated[str, typer.Argument(help="SELECT … FROM data … (docs/compute.md: the dialect).")],
    directory: DirOption,
    epsilon: Annotated[
        float | None, typer.Option("--epsilon", help="The ε this query spends, when the answer is noised.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Compute-to-data: run an aggregate query at the provider, under the agreement; only aggregates come back."""
    config = _load_config(directory)
    headers = {"Authorization": f"Bearer {config.management_token}"}
    body: dict[str, Any] = {"sql": sql} | ({"epsilon": epsilon} if epsilon is not None else {})
    try:
        url = f"{config.url}/api/agreements/{quote(agreement_id, safe='')}/query"
        response = httpx.post(url, json=body, headers=headers, timeout=120)
    except httpx.TransportError as exc:
        _fail(f"the connector at {config.url} is not reachable: {exc}", code=3)
    if response.status_code != 200:
        _fail(pull_file.refusal(response), code=2)
    answer = response.json()
    if as_json:
        typer.echo(json.dumps(answer))
        return
    rows = answer["rows"]
    table = Table(*(rows[0] if rows else ["(no groups)"]), title="Answer")
    for row in rows:
        table.add_row(*("" if value is None else str(value) for value in row.values()))
    console.print(table)
    noise = f"noised with ε {answer['epsilon']:g}, {answer['epsilon_spent']:g} spent" if answer["noised"] else "exact"
    console.print(f"{noise}; {answer['groups_left_out']} groups below k left out; sha256 {answer['query_sha256']}")


@audit_app.command("verify")
def audit_verify(
    directory: DirOption,
    local: Annotated[
        bool, typer.Option("--local", help="Only recompute the chain; do not ask the holders of its checkpoints.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Recompute the audit hash chain and check it against the checkpoints the broker and counter-parties
    hold; exit 1 and name the first broken entry if it does not hold, 3 if the broker cannot be asked."""
    config = _load_config(directory)
    report = asyncio.run(audit_check.verify_offline_or_anchored(config, local=local))
    unanchored = not local and not report.anchors.broker_answered
    if as_json:
        typer.echo(json.dumps(report.to_dict()))
    elif report.ok:
        chain = report.chain
        console.print(f"[green]audit chain intact[/]: {chain.entries} entries ({', '.join(chain.hashes) or 'empty'})")
        _print_anchors(report, local=local)
    else:
        console.print(f"[red]audit chain broken at entry {report.first_broken}[/]: {report.problem}", soft_wrap=True)
    if report.ok and unanchored:
        err_console.print("[red]the broker could not be asked for the chain's checkpoints[/] (--local to skip them)")
    raise typer.Exit(1 if not report.ok else 3 if unanchored else 0)


def _print_anchors(report: audit_check.AnchoredReport, *, local: bool) -> None:
    if local:
        return
    latest = report.latest
    if latest is None:
        console.print("no checkpoint of this chain is held elsewhere yet")
    else:
        console.print(
            f"matches {len(report.anchors.held)} checkpoints held elsewhere; the latest, of entry "
            f"{latest.checkpoint.seq}, is held by {latest.holder} (made {latest.checkpoint.at})",
            soft_wrap=True,
        )
    for holder in report.anchors.unreachable:
        console.print(f"[yellow]not reachable[/]: {holder}")
    for holder in report.anchors.refused:
        console.print(f"[yellow]holds a checkpoint that does not verify with our key[/]: {holder}")


@audit_app.command("verify-receipt")
def audit_verify_receipt(
    receipt_file: Annotated[Path, typer.Argument(help="A receipt (JSON), as the broker or a counter-party gave it.")],
    jwks: Annotated[
        Path | None,
        typer.Option(
            "--jwks",
            help="The signer's key: a JWK, a JWKS or the authority's participant record (default: the receipt's).",
        ),
    ] = None,
    directory: Annotated[
        Path | None, typer.Option("--dir", "-d", help="Also check this connector's audit chain against the receipt.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Verify a checkpoint receipt offline: its signature, and with --dir the chain it anchors; exit 1 if not."""
    receipt = _read_receipt(receipt_file)
    keys = _read_keys(jwks) if jwks is not None else [receipt.signer_jwk]
    checkpoint = _open_with_any(receipt, keys)
    result: dict[str, Any] = {
        "ok": checkpoint is not None,
        "held_by": receipt.held_by,
        "received_at": receipt.received_at,
        "key": "given" if jwks is not None else "receipt",
        "checkpoint": None if checkpoint is None else checkpoint.document(),
    }
    if checkpoint is not None and directory is not None:
        chain = asyncio.run(
            audit_check.check_receipt(_load_config(directory), audit_check.Held(receipt.held_by, checkpoint))
        )
        result |= {"ok": chain.ok, "chain": chain.to_dict()}
    if as_json:
        typer.echo(json.dumps(result))
    elif checkpoint is None:
        console.print("[red]the receipt's checkpoint does not verify with the given key[/]")
    else:
        console.print(
            f"[green]checkpoint verifies[/]: {checkpoint.participant_id}'s entry {checkpoint.seq} "
            f"({checkpoint.hash_alg} {checkpoint.hash}) at {checkpoint.at}, held by {receipt.held_by}",
            soft_wrap=True,
        )
        if jwks is None:
            console.print("key: the receipt's own; compare it with the authority's record of the participant")
        if "chain" in result:
            chain_result = result["chain"]
            state = "[green]matches[/]" if chain_result["ok"] else f"[red]does not match[/]: {chain_result['problem']}"
            console.print(f"the chain in {directory} {state}", soft_wrap=True)
    raise typer.Exit(0 if result["ok"] else 1)


def _read_receipt(path: Path) -> Receipt:
    try:
        return Receipt.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, CheckpointRefused) as exc:
        _fail(f"{path} is not a receipt: {exc}", code=2)


def _read_keys(path: Path) -> list[dict[str, Any]]:
    """The keys in a JWK, a JWKS (`keys`) or a participant record (`jwk`)."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        _fail(f"{path} is not JSON: {exc}", code=2)
    if isinstance(document, dict) and isinstance(document.get("keys"), list):
        return [key for key in document["keys"] if isinstance(key, dict)]
    if isinstance(document, dict) and isinstance(document.get("jwk"), dict):
        return [document["jwk"]]
    if isinstance(document, dict) and "kty" in document:
        return [document]
    _fail(f"{path} holds no JWK, JWKS or participant record", code=2)


def _open_with_any(receipt: Receipt, keys: list[dict[str, Any]]) -> Checkpoint | None:
    for key in keys:
        try:
            return receipt.open(key)
        except CheckpointRefused:
            continue
    return None


@transfer_app.command("pull")
def transfer_pull(
    directory: DirOption,
    transfer_id: Annotated[str, typer.Argument(help="The transfer's id on this (the consumer's) connector.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The file to write; a partial one is resumed.")],
    purpose: Annotated[str | None, typer.Option(help="The purpose declared for this use.")] = None,
    event: Annotated[str | None, typer.Option(help="The event in progress, for event-bound policies.")] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing file that is no partial pull.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Pull a transfer's data into a file with a progress bar; run again after an interruption to resume
    (by Range, while the provider's data is unchanged). Exit 0 done, 1 refused, 2 bad input, 3 unreachable
    or interrupted."""
    config = _load_config(directory)
    params = {name: value for name, value in (("purpose", purpose), ("event", event)) if value is not None}
    headers = {"Authorization": f"Bearer {config.management_token}"}
    columns = (*Progress.get_default_columns()[:2], DownloadColumn(), TransferSpeedColumn())
    with (
        httpx.Client(base_url=f"{config.url}/api", headers=headers, timeout=httpx.Timeout(30, connect=5)) as http,
        Progress(*columns, console=err_console, disable=as_json) as bar,
    ):
        task = bar.add_task(f"transfer {transfer_id}", total=None)
        try:
            pulled = pull_file.pull_to_file(
                http,
                transfer_id,
                output,
                params,
                lambda done, total: bar.update(task, completed=done, total=total),
                force=force,
            )
        except pull_file.PullFailed as exc:
            _fail(exc.message, code=exc.code)
    if as_json:
        typer.echo(json.dumps(pulled.to_dict()))
    else:
        resumed = f", resumed at byte {pulled.resumed_from:,}" if pulled.resumed_from else ""
        console.print(f"[green]{pulled.file}[/]: {pulled.bytes:,} bytes{resumed}")


CrossBorderOption = Annotated[
    bool, typer.Option("--cross-border", help="List the filing records of cross-border uses (出境 存证备案) instead.")
]


@usage_app.command("report")
def usage_report(directory: DirOption, as_json: JsonOption = False, filings: CrossBorderOption = False) -> None:
    """Uses, denials and bytes sent per agreement, as this provider metered them; or, with --cross-border,
    every cross-border use filed in the audit chain, for the regulator."""
    config = _load_config(directory)
    if filings:
        return _filings_report(asyncio.run(_filings(config.database_url)), as_json)
    rows = asyncio.run(_usage_rows(config.database_url))
    if as_json:
        typer.echo(json.dumps(rows))
        return
    table = Table("agreement", "consumer", "dataset", "uses", "denials", "bytes", "ε spent", "last used", title="Usage")
    for row in rows:
        table.add_row(
            row["agreement_id"],
            row["consumer_id"],
            row["target"],
            str(row["uses"]),
            str(row["denials"]),
            f"{row['bytes']:,}",
            f"{row['epsilon_spent']:g}",
            row["last_used_at"] or "",
        )
    console.print(table)


def _filings_report(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(rows))
        return
    columns = ("at", "agreement", "recipient", "registry id", "from → to", "category", "level", "PI", "bytes")
    table = Table(*columns, title="Cross-border filings (出境 存证备案)", title_justify="left")
    for row in rows:
        registry = row["registry_id"] if isinstance(row["registry_id"], dict) else {}
        table.add_row(
            row["at"],
            row["agreement"],
            f"{row['recipient']} ({row['recipient_org']})" if row["recipient_org"] else row["recipient"],
            f"{registry.get('type', '')} {registry.get('value', '')}".strip(),
            f"{row['jurisdiction_from']} → {row['jurisdiction_to']}",
            row["category"] or "",
            row["level"],
            "yes" if row["personal_information"] else "no",
            "pending" if row["bytes"] is None else f"{row['bytes']:,}",
        )
    # A report written to a file is read whole: no wrapping at 80 columns there.
    (console if console.is_terminal else Console(width=max(console.width, 240))).print(table)


async def _filings(database_url: str) -> list[dict[str, Any]]:
    db = await Database.open(database_url, schema=SCHEMA)
    try:
        async with db.session() as session:
            return await cross_border.filings(session)
    finally:
        await db.close()


async def _usage_rows(database_url: str) -> list[dict[str, Any]]:
    db = await Database.open(database_url, schema=SCHEMA)
    try:
        async with db.session() as session:
            query = select(UsageCounter, Agreement).join(Agreement, col(UsageCounter.agreement_id) == col(Agreement.id))
            found = (await session.exec(query.order_by(col(UsageCounter.agreement_id)))).all()
            spent = {b.agreement_id: b.spent for b in await session.exec(select(PrivacyBudget))}
    finally:
        await db.close()
    return [
        counter.model_dump(mode="json")
        | {"consumer_id": agreement.consumer_id, "target": agreement.target}
        | {"epsilon_spent": spent.get(counter.agreement_id, 0.0)}
        for counter, agreement in found
    ]


def _load_config(directory: Path) -> ConnectorConfig:
    """connector.toml, with the secrets a container passes in its environment (TESSERA_DATABASE_URL …)."""
    try:
        config = ConnectorConfig.load(directory)
        return dataclasses.replace(config, **secret_overrides(os.environ, SECRET_SETTINGS))
    except FileNotFoundError:
        _fail(f"no {CONFIG_FILE} in {directory}; run `tessera connector init` first", code=2)
    except (TypeError, ValueError) as exc:
        _fail(f"{directory / CONFIG_FILE} is invalid: {exc}", code=2)


def _fail(message: str, *, code: int) -> NoReturn:
    err_console.print(f"[red]error:[/] {message}")
    raise typer.Exit(code)
