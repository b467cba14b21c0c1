"""Registering this connector and its offerings at the cluster's broker.

The connector describes itself (DSP endpoint, title) and lists its offers, and sends that with an
access token for the broker, so only this participant can change its entry. An offering carries its
asset's grade (`classification`) and category (as DCAT's `theme`), which the broker's search facets
count; core data the rules by grade keep from every other participant is not listed at all.
"""

from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, Field
from sqlmodel import col, select

from connector import grades
from connector.assets import Asset
from connector.catalog import Offer, UsagePolicy
from connector.runtime import Runtime
from tessera import audit
from tessera.errors import PeerError


class SelfDescription(BaseModel):
    title: str = Field(min_length=1, max_length=512)
    description: str = Field(default="", max_length=8192)


async def offerings(runtime: Runtime) -> list[dict[str, Any]]:
    async with runtime.db.session() as session:
        query = (
            select(Offer, Asset, UsagePolicy)
            .join(Asset)
            .join(UsagePolicy, col(Offer.usage_policy_id) == col(UsagePolicy.id))
        )
        rows = (await session.exec(query)).all()
    return [
        {
            "id": offer.id,
            "dataset_id": asset.id,  # the dataset's @id in our DSP catalog (connector.catalog.dataset)
            "title": asset.title,
            "description": asset.description,
            "keywords": list(asset.keywords),
            "format": asset.format,
            "classification": asset.classification,
            "theme": asset.category or "",
        }
        for offer, asset, policy in rows
        if grades.published(runtime.config.grades, asset, policy)
    ]


def _url(runtime: Runtime) -> str:
    return f"{runtime.config.broker_url.rstrip('/')}/registrations/{quote(runtime.participant_id, safe='')}"


async def register(runtime: Runtime, description: SelfDescription) -> dict[str, Any]:
    body = {"endpoint": runtime.config.dsp_url, **description.model_dump(), "offerings": await offerings(runtime)}
    response = await _call(runtime, "PUT", body)
    async with runtime.transaction() as session:
        await audit.append(
            session,
            actor=runtime.participant_id,
            action="broker.registered",
            subject=runtime.participant_id,
            offerings=[o["id"] for o in body["offerings"]],
        )
    registered: dict[str, Any] = response.json()
    return registered


async def unregister(runtime: Runtime) -> None:
    await _call(runtime, "DELETE", None)
    async with runtime.transaction() as session:
        await audit.append(
            session, actor=runtime.participant_id, action="broker.unregistered", subject=runtime.participant_id
        )


async def _call(runtime: Runtime, method: str, body: dict[str, Any] | None) -> httpx.Response:
    broker = runtime.config.broker_url.rstrip("/")
    try:
        headers = await runtime.authorization(broker)
        response = await runtime.http.request(method, _url(runtime), json=body, headers=headers)
    except httpx.TransportError as exc:
        raise PeerError(f"broker unreachable at {broker}: {exc}") from exc
    if response.status_code >= 300:
        error = PeerError(f"broker refused the registration ({response.status_code}): {response.text[:500]}")
        # The broker's refusal of what we asked (no registration, over quota …) is the answer, not a bad
        # gateway: its 4xx passes through; anything else stays 502.
        if 400 <= response.status_code < 500:
            error.status_code = response.status_code
        raise error
    return response
