"""Agreements: what was agreed with whom, its terms in plain words, its signatures, and a transfer under it.

The agreement comes from the management API; whether each signature verifies is checked here, with the
signer's key from the authority (the API keeps only signatures that verified when they arrived, and this
page shows that they still do).
"""

import asyncio
import json
from typing import Any

import jwt
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connector.console.api import Api, ApiRefused
from connector.runtime import Runtime, runtime_of
from tessera.crypto import UnacceptedAlgorithm, verify_document
from tessera.errors import TesseraError
from tessera.identity import canonical_json
from tessera.json import JSONObject
from tessera.odrl import InvalidPolicy, parse_policy
from tessera.web.console import Console, Refused, flash
from tessera.words import Phrase, describe

NAV = [("/agreements", "Agreements")]


def routes(console: Console) -> list[Route]:
    async def listing(request: Request) -> Response:
        items = (await Api(request).get("/agreements"))["items"]
        items.sort(key=lambda a: a["signed_at"], reverse=True)
        return console.render(request, "agreements_list.html", agreements=[_summary(a) for a in items])

    async def detail(request: Request) -> Response:
        agreement = await _agreement(request)
        runtime = runtime_of(request)
        signatures = [
            await _signature(runtime, "provider", agreement["provider_id"], agreement, agreement["provider_signature"]),
            await _signature(runtime, "consumer", agreement["consumer_id"], agreement, agreement["consumer_signature"]),
        ]
        return console.render(
            request,
            "agreements_detail.html",
            agreement=_summary(agreement),
            phrases=_phrases(agreement["agreement"]),
            terms=agreement["terms"],
            usage_policy={"id": agreement["usage_policy_id"], "hash": agreement["usage_policy_hash"]},
            signatures=signatures,
            document=json.dumps(agreement["agreement"], indent=2, ensure_ascii=False),
        )

    async def download(request: Request) -> Response:
        agreement = await _agreement(request)
        name = "agreement-" + "".join(c if c.isalnum() or c in "-_" else "-" for c in agreement["id"]) + ".json"
        body = json.dumps(agreement, indent=2, ensure_ascii=False).encode()
        disposition = f'attachment; filename="{name}"'
        return Response(body, media_type="application/json", headers={"Content-Disposition": disposition})

    async def start_transfer(request: Request, form: FormData) -> Response:
        agreement_id = request.path_params["id"]
        try:
            transfer = await Api(request).post("/transfers", {"agreement_id": agreement_id})
        except ApiRefused as exc:
            flash(request, " ".join([exc.message, *exc.reasons]), "error")
            return console.redirect(request, f"/agreements/{agreement_id}")
        return console.redirect(request, f"/transfers/{transfer['id']}")

    return [
        console.page("/agreements", listing),
        console.page("/agreements/{id}", detail),
        console.page("/agreements/{id}/download", download),
        console.action("/agreements/{id}/transfer", start_transfer),
    ]


async def _agreement(request: Request) -> dict[str, Any]:
    agreement: dict[str, Any] = await Api(request).get(f"/agreements/{request.path_params['id']}")
    return agreement


def _summary(agreement: dict[str, Any]) -> dict[str, Any]:
    consumer = agreement["role"] == "consumer"
    return {
        "id": agreement["id"],
        "role": agreement["role"],
        "counterparty": agreement["provider_id"] if consumer else agreement["consumer_id"],
        "dataset": agreement["target"],
        "offer_id": agreement["offer_id"],
        "signed_at": agreement["signed_at"],
        "countersigned": agreement["countersigned"],
        "purposes": agreement["terms"].get("purposes") or [],
    }


def _phrases(document: dict[str, Any]) -> list[Phrase]:
    try:
        return describe(parse_policy(document, where="agreement"))
    except InvalidPolicy as exc:  # kept agreements parsed when they were made; say so rather than fail
        raise Refused(f"the agreement's policy cannot be read: {exc.detail}", 502) from None


async def _signature(
    runtime: Runtime, side: str, signer_id: str, agreement: dict[str, Any], jws: str | None
) -> dict[str, Any]:
    """Who signed, with which algorithm and key, and whether it verifies over this agreement now."""
    found: dict[str, Any] = {"side": side, "signer": signer_id, "present": jws is not None}
    if jws is None:
        return found
    try:
        header = jwt.get_unverified_header(jws)
    except jwt.InvalidTokenError:
        return found | {"verifies": False, "problem": "the signature is not a compact JWS"}
    found |= {"algorithm": header.get("alg"), "key_id": header.get("kid")}
    verifies, problem = await _verifies(runtime, signer_id, agreement["agreement"], jws)
    return found | {"verifies": verifies, "problem": problem}


async def _verifies(runtime: Runtime, signer_id: str, document: JSONObject, jws: str) -> tuple[bool, str | None]:
    accept = (runtime.config.crypto.signature,)

    async def check(jwk: dict[str, Any]) -> Any:
        return await asyncio.to_thread(verify_document, jws, jwk, accept=accept)

    try:
        signed = await runtime.participants.verified(signer_id, check)
    except UnacceptedAlgorithm as exc:
        return False, f"{exc.algorithm} is not accepted by crypto profile {runtime.config.crypto.name}"
    except TesseraError as exc:  # a refused signature, or the signer's key could not be fetched
        return False, exc.detail
    if canonical_json(signed) != canonical_json(document):
        return False, "the signature covers a different document"
    return True, None
