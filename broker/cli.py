"""`tessera broker …` and `tessera participant …`: set up and run a broker, admit participants.

Participant commands are the operator's: they write the broker's database directly, so they run on the
broker's host. Exit codes follow `connector.cli`: 2 for usage or input errors.
"""

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from broker import authority
from broker.config import BrokerConfig
from connector.errors import TesseraError
from connector.identity import SigningKey, generate_key, save_private_key
from connector.store import Database

T = TypeVar("T")

broker_app = typer.Typer(
    help="Set up and run the cluster's broker (identity authority + registry).", no_args_is_help=True
)
participant_app = typer.Typer(
    help="Admit and list participants (operator commands, on the broker host).", no_args_is_help=True
)

BrokerDir = Annotated[Path, typer.Option("--broker-dir", help="The broker's directory (holds broker.toml).")]
err = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.add_typer(broker_app, name="broker")
    app.add_typer(participant_app, name="participant")


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


def _load(directory: Path) -> BrokerConfig:
    try:
        return BrokerConfig.load(directory)
    except TesseraError as exc:
        raise _fail(exc.detail) from exc


def _with_database(config: BrokerConfig, action: Callable[[Database], Awaitable[T]]) -> T:
    async def run() -> T:
        db = await Database.open(config.database_url)
        try:
            return await action(db)
        finally:
            await db.close()

    try:
        return asyncio.run(run())
    except TesseraError as exc:
        raise _fail(exc.detail) from exc


@broker_app.command("init")
def init(
    directory: Annotated[Path, typer.Option("--dir", help="Directory to create the broker in.")],
    url: Annotated[str, typer.Option(help="Public base URL of the broker; also the token issuer.")],
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port to listen on.", min=1, max=65535)] = 8500,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing authority key.")] = False,
) -> None:
    """Create the broker directory, the authority's signing key and broker.toml."""
    try:
        config = BrokerConfig(directory=directory, url=url, host=host, port=port)
    except TesseraError as exc:
        raise _fail(exc.detail) from exc
    if config.key_path.exists() and not force:
        raise _fail(f"{config.key_path} exists; pass --force to replace the authority key (tokens it signed die)")
    config.directory.mkdir(parents=True, exist_ok=True)
    save_private_key(generate_key(), config.key_path)
    config.save()
    typer.echo(f"broker initialised in {config.directory}")
    typer.echo(f"  issuer {config.url}, authority key id {SigningKey.load(config.key_path).kid}")


@broker_app.command("serve")
def serve(directory: Annotated[Path, typer.Option("--dir", help="The broker's directory.")]) -> None:
    """Serve the broker (token endpoint, JWKS, participants, registry, search) with uvicorn."""
    import uvicorn

    from broker.app import create_app

    config = _load(directory)
    if not config.key_path.exists():
        raise _fail(f"no authority key at {config.key_path}; run `tessera broker init`")
    uvicorn.run(create_app(config), host=config.host, port=config.port)


@participant_app.command("add")
def add(
    participant_id: Annotated[str, typer.Argument(help="Stable participant id, e.g. urn:tessera:acme.")],
    broker_dir: BrokerDir,
    jwk: Annotated[Path, typer.Option("--jwk", help="File with the participant's public key as a JWK (JSON).")],
    org: Annotated[str, typer.Option(help="Organisation name.")],
    region: Annotated[str, typer.Option(help="Region, e.g. EU.")],
    security_profile: Annotated[str, typer.Option(help="Security profile, e.g. base or trusted.")],
) -> None:
    """Admit a participant: its key and the attributes its tokens will carry."""
    config = _load(broker_dir)
    key = _read_jwk(jwk)
    record = _with_database(
        config,
        lambda db: authority.add_participant(
            db, participant_id, jwk=key, org=org, region=region, security_profile=security_profile
        ),
    )
    typer.echo(f"participant {record.id} added (key id {record.public_jwk['kid']})")


@participant_app.command("list")
def list_(
    broker_dir: BrokerDir,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the admitted participants."""
    records = _with_database(_load(broker_dir), authority.list_participants)
    if as_json:
        typer.echo(json.dumps([record.public() for record in records], indent=2))
        return
    table = Table()
    table.add_column("id", no_wrap=True)
    for name in ("org", "region", "security profile", "suspended"):
        table.add_column(name)
    table.add_column("key id", overflow="fold")
    for record in records:
        suspended = "yes" if record.suspended else ""
        table.add_row(
            record.id, record.org, record.region, record.security_profile, suspended, record.public_jwk["kid"]
        )
    Console().print(table)


@participant_app.command("suspend")
def suspend(participant_id: Annotated[str, typer.Argument()], broker_dir: BrokerDir) -> None:
    """Stop issuing tokens to a participant and hide its offerings from search."""
    _with_database(_load(broker_dir), lambda db: authority.set_suspended(db, participant_id, True))
    typer.echo(f"participant {participant_id} suspended")


@participant_app.command("resume")
def resume(participant_id: Annotated[str, typer.Argument()], broker_dir: BrokerDir) -> None:
    """Lift a suspension."""
    _with_database(_load(broker_dir), lambda db: authority.set_suspended(db, participant_id, False))
    typer.echo(f"participant {participant_id} resumed")


def _read_jwk(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(f"cannot read a JWK from {path}: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("keys"), list) and len(data["keys"]) == 1:
        data = data["keys"][0]  # a JWKS with a single key is fine too
    if not isinstance(data, dict):
        raise _fail(f"{path} does not hold a JWK object")
    return data
