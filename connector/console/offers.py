"""Offers: what this connector publishes, and "New data offer" in one step.

One form gives the data (an upload or a path on this machine), its labels (GB/T 43697 grade, category,
personal information, home jurisdiction), a usage policy composed from the pattern library or written in
Rego, and whether to register at the broker. Beside it a preview shows, as the operator types, the ODRL
offer the catalog will show, the Rego that will decide every use and the offer in plain words.

Publishing is the API's own steps, in order: the policy, the asset, the offer, then `PUT /registration`.
The form is checked before anything is created; if a step still fails the form comes back with the API's
message, the parts already created are named and carried in the form, so sending it again goes on from
the failed step instead of publishing twice.
"""

import json
import re
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connector.assets import AssetCreate
from connector.catalog import Offer, PatternSpec, PolicyCreate, UsagePolicy, enforcement_problems, odrl_offer
from connector.console.api import Api, ApiRefused
from connector.runtime import runtime_of
from policies.patterns import PatternUse
from tessera.errors import TesseraError
from tessera.ids import new_id
from tessera.json import JSON, JSONObject
from tessera.labels import LEVELS
from tessera.odrl import InvalidPolicy, parse_policy
from tessera.policy.base import PolicyModule
from tessera.web.console import Console, flash, signed_in, text
from tessera.words import describe

NAV = [("/offers", "Offers")]
MAX_UPLOAD = 200 * 1024 * 1024  # bytes; a larger dataset is better placed on the machine and given by path
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet"}
DAY = 86400
CHUNK = 1024 * 1024
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class FormProblem(ValueError):
    """A field of the form that cannot be read; the message names it."""


# -- the usage policy's patterns, as the form offers them ----------------------------------------------


@dataclass(frozen=True)
class Input:
    name: str  # the form field
    label: str
    hint: str = ""
    kind: str = "text"  # text | number


@dataclass(frozen=True)
class Choice:
    """A library pattern as a fieldset: a checkbox `use_<pattern>`, its inputs, and how they become params."""

    pattern: str
    legend: str
    inputs: tuple[Input, ...]
    params: Callable[[FormData], JSONObject]


def _list(form: FormData, name: str) -> list[JSON]:
    return [item.strip() for item in re.split(r"[,\n]", text(form, name)) if item.strip()]


def _whole(form: FormData, name: str, label: str, *, scale: int = 1) -> int:
    given = text(form, name)
    if not re.fullmatch(r"\d+", given) or int(given) < 1:
        raise FormProblem(f"{label} must be a whole number of at least 1, not {given!r}")
    return int(given) * scale


CHOICES = (
    Choice(
        "purpose",
        "Only for some purposes",
        (Input("purposes", "Purposes", "comma-separated, e.g. research, statistics"),),
        lambda f: {"allowed_purposes": _list(f, "purposes")},
    ),
    Choice(
        "max_uses",
        "A number of uses",
        (Input("max_uses", "Max uses", kind="number"),),
        lambda f: {"max_uses": _whole(f, "max_uses", "Max uses")},
    ),
    Choice(
        "time_window",
        "A time window",
        (
            Input("not_before", "Not before", "RFC 3339, e.g. 2027-01-01T00:00:00Z"),
            Input("not_after", "Until", "RFC 3339, e.g. 2027-12-31T00:00:00Z"),
        ),
        lambda f: {"not_before": text(f, "not_before"), "not_after": text(f, "not_after")},
    ),
    Choice(
        "duration",
        "Within days of the agreement",
        (Input("duration_days", "Days", kind="number"),),
        lambda f: {"max_duration_seconds": _whole(f, "duration_days", "Days", scale=DAY)},
    ),
    Choice(
        "regions",
        "Only in some regions",
        (Input("regions", "Regions", "comma-separated, e.g. CN-BJ, EU-DE"),),
        lambda f: {"allowed_regions": _list(f, "regions")},
    ),
    Choice(
        "consumer",
        "Only for some participants",
        (Input("consumers", "Participant ids", "comma-separated"),),
        lambda f: {"allowed_consumers": _list(f, "consumers")},
    ),
    Choice(
        "masked_fields",
        "Mask fields before delivery",
        (Input("masked_fields", "Fields", "comma-separated, e.g. email, phone"),),
        lambda f: {"masked_fields": _list(f, "masked_fields")},
    ),
    Choice(
        "delete_after",
        "Delete the copy after days",
        (Input("delete_after_days", "Days", kind="number"),),
        lambda f: {"delete_after_seconds": _whole(f, "delete_after_days", "Days", scale=DAY)},
    ),
    Choice(
        "aggregate_only",
        "Only aggregates (usable, not visible)",
        (
            Input("group_by", "Group by", "comma-separated fields"),
            Input("functions", "Functions", "count, sum, avg, min, max"),
            Input("aggregate_fields", "Fields", "comma-separated"),
            Input("min_group_size", "Smallest group", kind="number"),
        ),
        lambda f: {
            "aggregate_group_by": _list(f, "group_by"),
            "aggregate_functions": _list(f, "functions") or ["count"],
            "aggregate_fields": _list(f, "aggregate_fields"),
            "min_group_size": _whole(f, "min_group_size", "Smallest group"),
        },
    ),
)


# -- reading the form ------------------------------------------------------------------------------------


@dataclass
class Draft:
    """The policy the form describes, and what the preview shows of it."""

    policy: dict[str, Any] | None = None  # a PolicyCreate body
    rego: str = ""
    odrl: JSONObject | None = None
    problems: list[str] = field(default_factory=list)


def draft_of(form: FormData) -> Draft:
    policy_id, offer_id = text(form, "policy_id") or "preview", text(form, "offer_id") or "preview"
    title = text(form, "policy_title") or text(form, "title")  # an untitled policy takes the data's title
    draft = Draft()
    if text(form, "policy_mode") == "rego":
        source = str(form.get("rego") or "").strip()
        if not source:
            return Draft(problems=["write the Rego module, or compose the policy from patterns"])
        draft.policy = {"id": policy_id, "title": title, "source": source + "\n"}
    else:
        draft.policy = {"id": policy_id, "title": title, "patterns": _patterns(form, draft.problems)}
        if not draft.problems and not draft.policy["patterns"]:
            draft.problems.append("choose at least one pattern, or write the policy in Rego")
        if draft.problems:
            return Draft(problems=draft.problems)
    try:
        draft.rego = PolicyCreate.model_validate(draft.policy).rego(policy_id)
        stored = UsagePolicy(id=policy_id, title=title, source=draft.rego, package="", hash="")
        stored.hash = PolicyModule(id=policy_id, source=draft.rego).hash
        offer = Offer(id=offer_id, asset_id="", usage_policy_id=policy_id)
        draft.odrl = odrl_offer(offer, stored)
        draft.problems = enforcement_problems(offer, stored)  # the API would refuse such an offer
    except (ValidationError, TesseraError) as exc:
        return Draft(problems=[_message(exc)])
    return draft


def _patterns(form: FormData, problems: list[str]) -> list[dict[str, Any]]:
    chosen = []
    for choice in CHOICES:
        if form.get(f"use_{choice.pattern}") is None:
            continue
        try:
            params = choice.params(form)
            PatternUse.of(choice.pattern, **params)  # each parameter checked by the library, named in its error
        except (FormProblem, TesseraError) as exc:
            problems.append(_message(exc))
            continue
        chosen.append(PatternSpec(name=choice.pattern, params=params).model_dump())
    return chosen


def _message(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'policy'}: {e['msg']}" for e in exc.errors())
    return exc.detail if isinstance(exc, TesseraError) else str(exc)


def asset_of(form: FormData, path: str | None) -> tuple[dict[str, Any], list[str]]:
    """The AssetCreate body the form describes (`path`: the data's file, once known), and its problems."""
    body: dict[str, Any] = {
        "title": text(form, "title"),
        "description": text(form, "description"),
        "keywords": _list(form, "keywords"),
        "classification": text(form, "classification") or "general",
        "category": text(form, "category") or None,
        "personal_information": form.get("personal_information") is not None,
        "home_jurisdiction": text(form, "home_jurisdiction") or None,
        "state": text(form, "state") or "released",
    }
    given = path or text(form, "path")
    body["format"] = text(form, "format") or FORMATS.get(Path(given or _upload_name(form)).suffix.lower(), "")
    if not body["format"]:
        return body, ["format: choose one, or give a file ending in .csv, .jsonl, .json or .parquet"]
    if given:
        body["path"] = given
    try:
        AssetCreate.model_validate(body if given else {**body, "copy_id": "-"})  # no file yet: the rest checked
    except ValidationError as exc:
        return body, [f"{'.'.join(map(str, e['loc'])) or 'data'}: {e['msg']}" for e in exc.errors()]
    return body, [] if given else ["give a file to upload or a path on the connector's machine"]


def _upload(form: FormData) -> UploadFile | None:
    found = form.get("file")
    return found if isinstance(found, UploadFile) and found.filename else None


def _upload_name(form: FormData) -> str:
    upload = _upload(form)
    return (upload.filename or "") if upload else text(form, "done_upload")


async def _store(upload: UploadFile, directory: Path) -> Path:
    """The upload kept under the connector's directory, `uploads/<id>/<safe name>`; FormProblem past the cap."""
    name = _UNSAFE.sub("_", Path(upload.filename or "").name).strip("._")[:120] or "data"
    target = directory / "uploads" / uuid.uuid4().hex / name
    if not await run_in_threadpool(_copy_capped, upload.file, target):  # disk work off the event loop
        raise FormProblem(f"the file is larger than {MAX_UPLOAD // (1024 * 1024)} MB; give its path instead")
    return target


def _copy_capped(source: BinaryIO, target: Path) -> bool:
    """Copy `source` to a new `target` if it holds at most MAX_UPLOAD bytes; past that, keep nothing."""
    target.parent.mkdir(parents=True)
    written = 0
    with target.open("wb") as out:
        while chunk := source.read(CHUNK):
            written += len(chunk)
            if written > MAX_UPLOAD:
                break
            out.write(chunk)
    if written > MAX_UPLOAD:
        shutil.rmtree(target.parent)
        return False
    return True


# -- pages -----------------------------------------------------------------------------------------------


def routes(console: Console) -> list[Route]:
    def translate(request: Request) -> Callable[[str], str]:
        return console.languages.translator(console.language(request)).gettext

    def preview_context(request: Request, draft: Draft) -> dict[str, Any]:
        gettext = translate(request)
        words: list[tuple[int, str]] = []
        if draft.odrl is not None:
            try:
                words = [(p.depth, p.format(gettext)) for p in describe(parse_policy(draft.odrl, where="offer"))]
            except InvalidPolicy as exc:
                draft.problems.append(exc.detail)
        odrl = _pretty(draft.odrl) if draft.odrl is not None else ""
        return {"draft": draft, "odrl_text": odrl, "words": words}

    def form_page(request: Request, form: FormData | None, status: int = 200, **context: Any) -> Response:
        values = _values(form) if form is not None else _defaults(request)
        draft = draft_of(form) if form is not None else Draft()  # nothing chosen yet: the preview invites
        return console.render(
            request,
            "offers_new.html",
            status=status,
            v=values,
            choices=CHOICES,
            levels=LEVELS,
            formats=sorted(set(FORMATS.values())),
            max_mb=MAX_UPLOAD // (1024 * 1024),
            **preview_context(request, draft),
            **context,
        )

    async def listing(request: Request) -> Response:
        api = Api(request)
        assets = (await api.get("/assets"))["items"]
        offers = (await api.get("/offers"))["items"]
        policies = {p["id"]: p for p in (await api.get("/policies"))["items"]}
        rows = [
            {**asset, "offers": [_offer_row(o, policies) for o in offers if o["asset_id"] == asset["id"]]}
            for asset in assets
        ]
        return console.render(request, "offers_list.html", rows=rows)

    async def new(request: Request) -> Response:
        return form_page(request, None)

    async def preview(request: Request, form: FormData) -> Response:
        return console.render(request, "offers_preview.html", **preview_context(request, draft_of(form)))

    async def publish(request: Request, form: FormData) -> Response:
        gettext = translate(request)
        try:
            done = await _publish(request, form)
        except Failed as failure:
            return form_page(request, failure.form, 400, errors=failure.errors, done=failure.done)
        note = (
            gettext("Offer {offer} is published and registered at the broker.")
            if done.get("registered")
            else gettext("Offer {offer} is published; it is not registered at the broker.")
        )
        flash(request, note.format(offer=done["offer"]), "ok")
        return console.redirect(request, "/offers")

    async def capped(request: Request) -> Response:
        # Refuse a body past the cap before it is read to disk (the form itself says how large a file may be).
        if signed_in(request) and int(request.headers.get("content-length") or 0) > MAX_UPLOAD + CHUNK:
            errors = [f"the file is larger than {MAX_UPLOAD // (1024 * 1024)} MB; give its path instead"]
            return form_page(request, None, 413, errors=errors)
        response: Response = await guarded.endpoint(request)
        return response

    guarded = console.action("/offers/new", publish, max_files=1, max_bytes=MAX_UPLOAD + CHUNK)
    return [
        console.page("/offers", listing),
        console.page("/offers/new", new),
        Route("/offers/new", capped, methods=["POST"]),
        console.action("/offers/preview", preview),
    ]


class Failed(Exception):
    """Publishing stopped: what to tell the operator, and what had been created before it stopped."""

    def __init__(self, form: FormData, errors: list[str], done: dict[str, str]) -> None:
        super().__init__("; ".join(errors))
        self.form, self.errors, self.done = _with_done(form, done), errors, done


async def _publish(request: Request, form: FormData) -> dict[str, Any]:
    """Policy, asset, offer, registration, each skipped when an earlier attempt created it."""
    done = {k: text(form, f"done_{k}") for k in ("upload", "policy", "asset", "offer") if text(form, f"done_{k}")}
    draft = draft_of(form)
    asset, problems = ({}, []) if "asset" in done else asset_of(form, await _data_path(request, form, done))
    if draft.problems or problems:
        raise Failed(form, [*problems, *draft.problems], done)
    assert draft.policy is not None
    api = Api(request)
    steps: list[tuple[str, str, dict[str, Any]]] = [("policy", "/policies", draft.policy), ("asset", "/assets", asset)]
    try:
        for name, path_, body in steps:
            if name not in done:
                done[name] = (await api.post(path_, body))["id"]
        if "offer" not in done:
            offer = {"id": text(form, "offer_id") or None, "asset_id": done["asset"], "usage_policy_id": done["policy"]}
            done["offer"] = (await api.post("/offers", offer))["id"]
        if form.get("register") is not None:
            description = {"title": text(form, "self_title"), "description": text(form, "self_description")}
            await api.call("PUT", "/registration", json=description)
    except ApiRefused as exc:
        raise Failed(form, [exc.message, *exc.reasons], done) from None
    return {**done, "registered": form.get("register") is not None}


async def _data_path(request: Request, form: FormData, done: dict[str, str]) -> str | None:
    """The data's file: a new upload stored now, one stored by an earlier attempt; None: the path typed."""
    upload = _upload(form)
    uploads = runtime_of(request).config.directory / "uploads"
    if upload is not None:
        try:
            stored = await _store(upload, runtime_of(request).config.directory)
        except FormProblem as exc:
            raise Failed(form, [str(exc)], done) from None
        done["upload"] = str(stored.relative_to(uploads))
    if "upload" in done:
        kept = (uploads / done["upload"]).resolve()
        if not kept.is_relative_to(uploads.resolve()) or not kept.is_file():
            raise Failed(form, ["the file uploaded before is gone; choose it again"], done | {"upload": ""})
        return str(kept)
    return None


# -- what the templates show -----------------------------------------------------------------------------


def _offer_row(offer: dict[str, Any], policies: dict[str, Any]) -> dict[str, Any]:
    policy = policies.get(offer["usage_policy_id"], {})
    return {"id": offer["id"], "policy_id": offer["usage_policy_id"], "policy_title": policy.get("title", "")}


def _pretty(document: JSONObject) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False)


def _defaults(request: Request) -> dict[str, Any]:
    runtime = runtime_of(request)
    return {
        "policy_id": new_id(),
        "offer_id": new_id(),
        "policy_mode": "patterns",
        "classification": "general",
        "state": "released",
        "register": "on",
        "self_title": runtime.participant_id,
    }


def _values(form: FormData) -> dict[str, Any]:
    """What the operator typed, to fill the form in again (an upload cannot be refilled: it is carried)."""
    return {key: value for key, value in form.items() if isinstance(value, str)}


def _with_done(form: FormData, done: dict[str, str]) -> FormData:
    kept = [(k, v) for k, v in form.multi_items() if isinstance(v, str) and not k.startswith("done_")]
    return FormData([*kept, *((f"done_{k}", v) for k, v in done.items() if v)])
