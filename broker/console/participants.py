"""Participants: the admitted list, admission with a public key, claims, suspension and resumption.

Every change calls the function `tessera participant …` calls (`broker.authority`), so the checks
(`broker.claims`) and the events are the CLI's.
"""

import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from broker import authority
from broker.claims import FIELDS, REQUIRED
from broker.console._state import authority_of, refusing, registry_of
from tessera.errors import BadRequest, TesseraError
from tessera.registry_ids import REGISTRY_TYPES
from tessera.web.console import Action, Console, flash, text

NAV = [("/participants", "Participants")]
MAX_JWK = 8 * 1024


def routes(console: Console) -> list[Route]:
    async def listing(request: Request) -> Response:
        records = await authority.list_participants(authority_of(request).db)
        return console.render(request, "participants_list.html", participants=records)

    async def new(request: Request) -> Response:
        return _admission_form(console, request, {})

    async def admit(request: Request, form: FormData) -> Response:
        values = {name: text(form, name) for name in ("id", "jwk", *FIELDS)}
        try:
            record = await authority.add_participant(
                authority_of(request).db,
                values["id"],
                jwk=_jwk(values["jwk"]),
                **_claims(form),
                security_profiles=_profiles(request),
            )
        except TesseraError as exc:
            return _admission_form(console, request, values, error=exc, status=exc.status_code)
        flash(request, f"participant {record.id} admitted (key id {record.jwk['kid']})")
        return console.redirect(request, f"/participants/{_quoted(record.id)}")

    async def detail(request: Request) -> Response:
        with refusing():
            record = await authority.get_participant(authority_of(request).db, request.path_params["participant_id"])
        return _detail(console, request, record.public(), {})

    async def claims(request: Request, form: FormData) -> Response:
        participant_id = request.path_params["participant_id"]
        db = authority_of(request).db
        with refusing():
            current = (await authority.get_participant(db, participant_id)).public()
        wanted = _claims(form)
        stated: dict[str, Any] = dict(current)
        changes = {name: value for name, value in wanted.items() if value != stated[name]}
        if not changes:
            flash(request, "nothing changed", "info")
            return console.redirect(request, f"/participants/{_quoted(participant_id)}")
        try:
            await authority.update_participant(db, participant_id, changes, security_profiles=_profiles(request))
        except TesseraError as exc:
            return _detail(console, request, current, wanted, error=exc, status=exc.status_code)
        flash(request, f"participant {participant_id} updated: {', '.join(sorted(changes))}")
        return console.redirect(request, f"/participants/{_quoted(participant_id)}")

    def suspension(suspended: bool) -> Action:
        async def change(request: Request, form: FormData) -> Response:
            participant_id = request.path_params["participant_id"]
            with refusing():
                await authority.set_suspended(authority_of(request).db, participant_id, suspended)
            flash(request, f"participant {participant_id} {'suspended' if suspended else 'resumed'}")
            return console.redirect(request, f"/participants/{_quoted(participant_id)}")

        return change

    return [
        console.page("/participants", listing),
        console.page("/participants/new", new),
        console.action("/participants", admit),
        console.page("/participants/{participant_id}", detail),
        console.action("/participants/{participant_id}/claims", claims),
        console.action("/participants/{participant_id}/suspend", suspension(True)),
        console.action("/participants/{participant_id}/resume", suspension(False)),
    ]


def _admission_form(
    console: Console, request: Request, values: dict[str, str], *, error: TesseraError | None = None, status: int = 200
) -> Response:
    return console.render(
        request,
        "participants_new.html",
        status=status,
        values=values,
        error=error,
        profiles=_profiles(request),
        registry_types=REGISTRY_TYPES,
    )


def _detail(
    console: Console,
    request: Request,
    record: authority.ParticipantPublic,
    wanted: dict[str, Any],
    *,
    error: TesseraError | None = None,
    status: int = 200,
) -> Response:
    shown = {**record, **wanted}  # a refused change shows what the operator typed, to correct it
    return console.render(
        request,
        "participants_detail.html",
        status=status,
        participant=record,
        values=shown,
        error=error,
        profiles=_profiles(request),
        registry_types=REGISTRY_TYPES,
        claims_json=json.dumps(record["claims"], ensure_ascii=False, indent=2),
        jwk_json=json.dumps(record["jwk"], indent=2),
    )


def _claims(form: FormData) -> dict[str, Any]:
    """The attribute fields of a form as `broker.claims` takes them: blank optional ones are absent (None)."""
    values: dict[str, Any] = {name: text(form, name) or None for name in FIELDS if name != "roles"}
    values.update({name: text(form, name) for name in REQUIRED})
    values["roles"] = _roles(text(form, "roles"))
    return values


def _roles(written: str) -> list[str]:
    return list(dict.fromkeys(written.replace(",", " ").split()))


def _jwk(written: str) -> dict[str, Any]:
    """The public key pasted as a JWK (or a JWKS of one key), as `tessera participant add --jwk` reads it."""
    if len(written) > MAX_JWK:
        raise BadRequest(f"the public key is longer than {MAX_JWK} characters")
    try:
        data = json.loads(written)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"the public key is not JSON: {exc}") from exc
    if isinstance(data, dict) and isinstance(data.get("keys"), list) and len(data["keys"]) == 1:
        data = data["keys"][0]
    if not isinstance(data, dict):
        raise BadRequest("the public key must be a JWK: a JSON object")
    return data


def _profiles(request: Request) -> Sequence[str]:
    return registry_of(request).config.security_profiles


def _quoted(participant_id: str) -> str:
    return quote(participant_id, safe="")
