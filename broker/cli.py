"""`tessera broker …`, `tessera participant …` and `tessera certificate …`.

Participant commands and `broker delete-entry` / `broker events` are the operator's: they use the broker's
database directly, so they run on the broker's host. `certificate verify` runs anywhere: it needs only the
broker's JWKS. Exit codes follow `connector.cli`: 1 a check failed, 2 usage or input errors.
"""

import asyncio
import dataclasses
import json
import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from broker import authority, events, products
from broker.claims import FIELDS, REQUIRED
from broker.config import CONFIG_FILE, DEFAULT_SECURITY_PROFILES, SECRET_SETTINGS, BrokerConfig
from broker.schema import SCHEMA
from tessera import serving
from tessera.errors import BadRequest, TesseraError
from tessera.identity import SigningKey, generate_key, save_private_key
from tessera.logs import log_config
from tessera.migrations_cli import migrate_command
from tessera.registry_ids import REGISTRY_TYPES
from tessera.serving import secret_overrides
from tessera.store import Database
from tessera.tracing import TracingUnavailable, chosen

T = TypeVar("T")

broker_app = typer.Typer(
    help="Set up and run the cluster's broker (identity authority + registry).", no_args_is_help=True
)
participant_app = typer.Typer(
    help="Admit, update, list, suspend and resume participants (operator commands, on the broker host).",
    no_args_is_help=True,
)
certificate_app = typer.Typer(help="Check data-product registration certificates offline.", no_args_is_help=True)

OPTIONAL = tuple(name for name in FIELDS if name not in REQUIRED)
BrokerDir = Annotated[Path, typer.Option("--broker-dir", help="The broker's directory (holds broker.toml).")]
err = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.add_typer(broker_app, name="broker")
    app.add_typer(participant_app, name="participant")
    app.add_typer(certificate_app, name="certificate")


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


def _load(directory: Path) -> BrokerConfig:
    """broker.toml, with the secrets a container may pass as TESSERA_DATABASE_URL and TESSERA_ADMIN_TOKEN."""
    try:
        config = BrokerConfig.load(directory)
        return dataclasses.replace(config, **secret_overrides(os.environ, SECRET_SETTINGS))
    except TesseraError as exc:
        raise _fail(exc.detail) from exc


def _with_database(config: BrokerConfig, action: Callable[[Database], Awaitable[T]]) -> T:
    async def run() -> T:
        db = await Database.open(config.database_url, schema=SCHEMA)
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
    """Create the broker directory, the authority's signing key and broker.toml (with a new console admin key)."""
    try:
        admin_token = secrets.token_urlsafe(24)
        config = BrokerConfig(directory=directory, url=url, host=host, port=port, admin_token=admin_token)
    except TesseraError as exc:
        raise _fail(exc.detail) from exc
    if config.key_path.exists() and not force:
        raise _fail(f"{config.key_path} exists; pass --force to replace the authority key (tokens it signed die)")
    config.directory.mkdir(parents=True, exist_ok=True)
    save_private_key(generate_key(), config.key_path)
    config.save()
    typer.echo(f"broker initialised in {config.directory}")
    typer.echo(f"  issuer {config.url}, authority key id {SigningKey.load(config.key_path).kid}")
    typer.echo(f"  console {config.url}/console: sign in with admin_token from {config.directory / CONFIG_FILE}")


broker_app.command("migrate")(migrate_command(SCHEMA, lambda directory: _load(directory).database_url))


@broker_app.command("serve")
def serve(
    directory: Annotated[Path, typer.Option("--dir", help="The broker's directory.")],
    log_format: Annotated[
        str | None, typer.Option("--log-format", help="Logs: text, or json (one object per line); default: config.")
    ] = None,
) -> None:
    """Serve the broker (token endpoint, JWKS, participants, registry, search, /metrics) with uvicorn.

    With OTEL_EXPORTER_OTLP_ENDPOINT set, tracing is on whatever the config says (docs/metrics.md)."""
    from broker.app import create_app

    config = _load(directory)
    if not config.key_path.exists():
        raise _fail(f"no authority key at {config.key_path}; run `tessera broker init`")
    try:
        config = dataclasses.replace(
            config, log_format=log_format or config.log_format, tracing=chosen(config.tracing, os.environ)
        )
        app = create_app(config)
    except (BadRequest, TracingUnavailable) as exc:
        raise _fail(str(exc)) from exc
    serving.serve(
        app, host=config.host, port=config.port, drain=config.shutdown_drain, log_config=log_config(config.log_format)
    )


@broker_app.command("delete-entry")
def delete_entry(
    participant_id: Annotated[str, typer.Argument(help="The participant whose entry to remove.")],
    broker_dir: BrokerDir,
    reason: Annotated[str, typer.Option(help="Why; kept in the tombstone and the event log.")],
    offering: Annotated[str | None, typer.Option(help="Remove only this offering (and keep it out).")] = None,
) -> None:
    """Force-delete a registration or one offering, leaving a tombstone with the reason (operator)."""
    from broker.registry import OPERATOR, Registry
    from broker.search_backends import search_backend

    if not reason.strip():
        raise _fail("--reason must not be empty")
    config = _load(broker_dir)

    async def run(db: Database) -> None:
        search = await search_backend(db)
        registry = Registry(db, None, search, config)  # no tokens to verify here
        if offering is None:
            await registry.unregister(participant_id, actor=OPERATOR, reason=reason)
        else:
            await registry.force_delete_offering(participant_id, offering, reason=reason)

    _with_database(config, run)
    typer.echo(f"deleted {participant_id}{' offering ' + offering if offering else ''}: {reason}")


@broker_app.command("events")
def events_(
    broker_dir: BrokerDir,
    since: Annotated[int, typer.Option(help="Show events after this sequence number.", min=0)] = 0,
    participant: Annotated[str | None, typer.Option(help="Only this participant's events.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many events.", min=1, max=events.MAX_EVENTS)] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show the event log: every registration change, crawl result and operator action."""
    found = _with_database(
        _load(broker_dir), lambda db: events.since(db, since, limit=limit, participant_id=participant)
    )
    if as_json:
        typer.echo(json.dumps([e.public() for e in found], indent=2, ensure_ascii=False))
        return
    table = Table()
    for name in ("seq", "at", "actor", "action", "participant", "offering", "detail"):
        table.add_column(name, overflow="fold")
    for e in found:
        detail = json.dumps(e.detail, ensure_ascii=False)
        table.add_row(str(e.seq), str(e.at), e.actor, e.action, e.participant_id, e.offering_id or "", detail)
    Console().print(table)


@certificate_app.command("verify")
def verify(
    certificate: Annotated[str, typer.Argument(help="A certificate file, or the certificate (JWT) itself.")],
    jwks: Annotated[str, typer.Option(help="The broker's JWKS: a file, or its URL (fetched once).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the verified claims as JSON.")] = False,
) -> None:
    """Verify a data-product certificate offline against the broker's JWKS; exit 0 valid, 1 invalid."""
    token = _read_certificate(certificate)
    keys = _read_jwks(jwks)
    try:
        claims = products.verify_certificate(token, keys)
    except TesseraError as exc:
        raise _fail(f"certificate invalid: {exc.detail}", code=1) from exc
    if as_json:
        typer.echo(json.dumps(claims, indent=2, ensure_ascii=False))
        return
    typer.echo(f"valid: {claims['product_code']} {claims['title']!r} of {claims['participant_id']}")
    typer.echo(f"  status {claims['status']}, version {claims['version']}, metadata {claims['content_hash']}")
    typer.echo(f"  issued by {claims['iss']}")


def _read_certificate(argument: str) -> str:
    text = argument.strip()
    try:
        if Path(argument).is_file():
            text = Path(argument).read_text().strip()
        elif text.count(".") != 2:
            raise _fail(f"{argument} is neither a file nor a certificate")
    except (OSError, UnicodeDecodeError) as exc:
        if text.count(".") != 2:  # a name too long for a file is fine when it is the token itself
            raise _fail(f"cannot read {argument}: {exc}") from exc
    if text.startswith("{"):  # the JSON the broker's /certificate endpoint answers
        try:
            text = str(json.loads(text)["certificate"])
        except (ValueError, KeyError, TypeError) as exc:
            raise _fail("the JSON holds no `certificate`") from exc
    return text


def _read_jwks(source: str) -> dict[str, Any]:
    try:
        if source.startswith(("http://", "https://")):
            import httpx

            response = httpx.get(source, timeout=10)
            response.raise_for_status()
            data = response.json()
        else:
            data = json.loads(Path(source).read_text())
    except Exception as exc:  # network, file or JSON: all an input error for this command
        raise _fail(f"cannot read a JWKS from {source}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise _fail(f"{source} is not a JWKS (no `keys` list)")
    return data


ORG_HELP = "Organisation name."
REGION_HELP = "Region, e.g. EU-DE or CN-east."
PROFILE_HELP = (
    "Security profile: one of the broker's `security_profiles` in broker.toml "
    f"(default {', '.join(DEFAULT_SECURITY_PROFILES)}, low to high)."
)
JURISDICTION_HELP = "Where the organisation is established: ISO 3166-1 alpha-2, upper case (CN, DE)."
ROLE_HELP = "A role or membership the tokens carry; repeat for several (e.g. --role researcher --role member)."
INDUSTRY_HELP = "Industry code, e.g. GB/T 4754 I64 or NACE J62.01."
REGISTRY_TYPE_HELP = f"The registry the organisation is identified in: {', '.join(REGISTRY_TYPES)}."
REGISTRY_ID_HELP = "Its id there: an 18-character unified social credit code, a 20-character LEI, or other."


@participant_app.command("add")
def add(
    participant_id: Annotated[str, typer.Argument(help="Stable participant id, e.g. urn:tessera:acme.")],
    broker_dir: BrokerDir,
    jwk: Annotated[Path, typer.Option("--jwk", help="File with the participant's public key as a JWK (JSON).")],
    org: Annotated[str, typer.Option(help=ORG_HELP)],
    region: Annotated[str, typer.Option(help=REGION_HELP)],
    security_profile: Annotated[str, typer.Option(help=PROFILE_HELP)],
    jurisdiction: Annotated[str | None, typer.Option(help=JURISDICTION_HELP)] = None,
    roles: Annotated[list[str] | None, typer.Option("--role", help=ROLE_HELP)] = None,
    industry: Annotated[str | None, typer.Option(help=INDUSTRY_HELP)] = None,
    registry_type: Annotated[str | None, typer.Option(help=REGISTRY_TYPE_HELP)] = None,
    registry_id: Annotated[str | None, typer.Option(help=REGISTRY_ID_HELP)] = None,
) -> None:
    """Admit a participant: its key and the verified attributes its tokens will carry (checked first)."""
    config = _load(broker_dir)
    key = _read_jwk(jwk)
    record = _with_database(
        config,
        lambda db: authority.add_participant(
            db,
            participant_id,
            jwk=key,
            org=org,
            region=region,
            security_profile=security_profile,
            jurisdiction=jurisdiction,
            roles=roles or (),
            industry=industry,
            registry_type=registry_type,
            registry_id=registry_id,
            security_profiles=config.security_profiles,
        ),
    )
    typer.echo(f"participant {record.id} added (key id {record.jwk['kid']})")


@participant_app.command("update")
def update(
    participant_id: Annotated[str, typer.Argument(help="The participant to change.")],
    broker_dir: BrokerDir,
    org: Annotated[str | None, typer.Option(help=ORG_HELP)] = None,
    region: Annotated[str | None, typer.Option(help=REGION_HELP)] = None,
    security_profile: Annotated[str | None, typer.Option(help=PROFILE_HELP)] = None,
    jurisdiction: Annotated[str | None, typer.Option(help=JURISDICTION_HELP)] = None,
    roles: Annotated[list[str] | None, typer.Option("--role", help=ROLE_HELP + " Replaces the roles.")] = None,
    industry: Annotated[str | None, typer.Option(help=INDUSTRY_HELP)] = None,
    registry_type: Annotated[str | None, typer.Option(help=REGISTRY_TYPE_HELP)] = None,
    registry_id: Annotated[str | None, typer.Option(help=REGISTRY_ID_HELP)] = None,
    clear: Annotated[
        list[str] | None,
        typer.Option(help=f"Remove an optional attribute: {', '.join(OPTIONAL)}; repeatable."),
    ] = None,
    jwk: Annotated[
        Path | None,
        typer.Option("--jwk", help="Replace the participant's key (rotation) with this public JWK file."),
    ] = None,
) -> None:
    """Change a participant's verified attributes or key, checked as on admission; its next token carries them."""
    given = {
        "org": org,
        "region": region,
        "security_profile": security_profile,
        "jurisdiction": jurisdiction,
        "roles": roles,
        "industry": industry,
        "registry_type": registry_type,
        "registry_id": registry_id,
    }
    changes: dict[str, object] = {name: value for name, value in given.items() if value is not None}
    for name in clear or ():
        if name not in OPTIONAL:
            raise _fail(f"--clear {name}: not an optional attribute; one of {', '.join(OPTIONAL)}")
        if name in changes:
            raise _fail(f"--clear {name} contradicts --{name.replace('_', '-')}")
        changes[name] = None
    if not changes and jwk is None:
        raise _fail("nothing to update: give at least one attribute option, --clear or --jwk")
    key = None if jwk is None else _read_jwk(jwk)
    config = _load(broker_dir)
    record = _with_database(
        config,
        lambda db: authority.update_participant(
            db, participant_id, changes, security_profiles=config.security_profiles, jwk=key
        ),
    )
    changed = sorted([*changes, *(["jwk"] if key else [])])
    typer.echo(f"participant {record.id} updated: {', '.join(changed)} (key id {record.jwk['kid']})")


@participant_app.command("list")
def list_(
    broker_dir: BrokerDir,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List the admitted participants with their verified attributes."""
    records = _with_database(_load(broker_dir), authority.list_participants)
    if as_json:
        typer.echo(json.dumps([record.public() for record in records], indent=2, ensure_ascii=False))
        return
    table = Table()
    table.add_column("id", no_wrap=True)
    for name in ("org", "region", "security profile", "jurisdiction", "roles", "industry", "registry id", "suspended"):
        table.add_column(name, overflow="fold")
    table.add_column("key id", overflow="fold")
    for record in records:
        registry = f"{record.registry_type}:{record.registry_id}" if record.registry_id else ""
        table.add_row(
            record.id,
            record.org,
            record.region,
            record.security_profile,
            record.jurisdiction or "",
            ", ".join(record.roles),
            record.industry or "",
            registry,
            "yes" if record.suspended else "",
            record.jwk["kid"],
        )
    Console().print(table)


@participant_app.command("suspend")
def suspend(participant_id: Annotated[str, typer.Argument()], broker_dir: BrokerDir) -> None:
    """Stop issuing tokens to a participant and hide its offerings from search; connectors refuse it within
    seconds (they read the broker's signed participant status)."""
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
