"""The data plane: every data request is decided by the agreement's usage policy, then streamed.

Provider: `GET /data/{transfer}` with the transfer's data token. The usage policy sees the agreement,
the consumer's verified claims, the declared purpose, the uses so far and the clock; a denial is a 403
carrying the policy's reasons, an allowed request counts one use and streams the asset with the
masked fields removed. Decision and count are one transaction, with their audit entry.
Consumer: `pull` fetches from the provider's data address and hands the stream on.
"""

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from sqlmodel import Field, SQLModel
from starlette.concurrency import iterate_in_threadpool

from connector import audit, dsp
from connector.agreements import Agreement
from connector.assets import MEDIA_TYPES, Asset, stream_records, utcnow
from connector.catalog import UsagePolicy
from connector.errors import NotEntitled, NotFound, PeerError, PolicyEvaluationError, TesseraError
from connector.policy import Decision
from connector.runtime import Runtime
from connector.transfer import Transfer, tokens


class UsageCounter(SQLModel, table=True):
    """Uses of one agreement, kept by the provider."""

    __tablename__ = "usage_counter"

    agreement_id: str = Field(primary_key=True)
    uses: int = 0
    denials: int = 0
    last_used_at: str | None = None


def usage_input(
    agreement: Agreement, caller: dict[str, Any], purpose: str | None, uses: int, asset: Asset
) -> dict[str, Any]:
    return {
        "agreement": {
            "id": agreement.id,
            "assigner": agreement.provider_id,
            "assignee": agreement.consumer_id,
            "target": agreement.target,
            "timestamp": json.loads(agreement.document).get("timestamp"),
            "terms": agreement.terms.to_dict(),
        },
        "caller": caller,
        "purpose": purpose,
        "uses": uses,
        "now": utcnow(),
        "asset": {"id": asset.id, "format": asset.format},
    }


async def authorize_pull(runtime: Runtime, transfer_id: str, token: str, purpose: str | None) -> tuple[Asset, Decision]:
    """Check a pull request's data token, then decide it by the usage policy."""
    claims = tokens.verify(runtime, token, transfer_id)
    async with runtime.db.session() as session:
        transfer = await session.get(Transfer, transfer_id)
    if transfer is None or transfer.role != "provider" or transfer.counterparty_id != claims["sub"]:
        raise NotFound(f"no transfer {transfer_id}")
    return await decide_use(runtime, transfer, purpose)


async def decide_use(runtime: Runtime, transfer: Transfer, purpose: str | None) -> tuple[Asset, Decision]:
    """Decide one use of a transfer's data; count it when allowed. Raises NotEntitled with the policy's reasons."""
    if transfer.state != "STARTED":
        raise NotEntitled(f"transfer {transfer.id} is {transfer.state}, not STARTED")
    async with runtime.db.session() as session:
        agreement = await session.get(Agreement, transfer.agreement_id)
        policy = await session.get(UsagePolicy, agreement.usage_policy_id) if agreement else None
        asset = await session.get(Asset, agreement.target) if agreement else None
    if agreement is None or asset is None:
        raise NotFound(f"the agreement or asset of transfer {transfer.id} is gone")
    if policy is None or policy.hash != agreement.usage_policy_hash:
        # Fail closed: the text the agreement bound is no longer what we would evaluate.
        raise NotEntitled("the usage policy bound by the agreement is not available unchanged")
    caller = json.loads(transfer.caller_claims)
    async with runtime.transaction() as session:
        counter = await session.get(UsageCounter, agreement.id) or UsageCounter(agreement_id=agreement.id)
        decision = await _decide(runtime, policy, usage_input(agreement, caller, purpose, counter.uses, asset))
        if decision.allow:
            counter.uses += 1
            counter.last_used_at = utcnow()
        else:
            counter.denials += 1
        session.add(counter)
        await audit.append(
            session,
            actor=runtime.participant_id,
            action="usage.allowed" if decision.allow else "usage.denied",
            subject=agreement.id,
            transfer=transfer.id,
            consumer=transfer.counterparty_id,
            purpose=purpose,
            uses=counter.uses,
            reasons=list(decision.reasons),
            masked=list(decision.mask),
            policy_hash=policy.hash,
        )
    if not decision.allow:
        raise NotEntitled("the usage policy denied this request", reasons=list(decision.reasons))
    return asset, decision


async def _decide(runtime: Runtime, policy: UsagePolicy, request: dict[str, Any]) -> Decision:
    try:
        return await runtime.engine.decide(policy.module, request)
    except PolicyEvaluationError as exc:
        return Decision(allow=False, reasons=(f"policy evaluation failed: {exc.detail}",))


def stream(asset: Asset, decision: Decision) -> tuple[AsyncIterator[bytes], str]:
    return iterate_in_threadpool(stream_records(asset, decision.mask)), MEDIA_TYPES[asset.format]


# -- consumer side ----------------------------------------------------------------------------------------


class Pull:
    """An open response from the provider's data plane; iterate it, then it closes."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.media_type = response.headers.get("content-type", "application/octet-stream")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.response.aiter_raw():
                yield chunk
        finally:
            await self.response.aclose()


async def pull(runtime: Runtime, transfer_id: str, purpose: str | None) -> Pull:
    """Open the provider's data for a started pull transfer, refreshing an expired data token once."""
    async with runtime.db.session() as session:
        transfer = await session.get(Transfer, transfer_id)
    if transfer is None or transfer.role != "consumer":
        raise NotFound(f"no transfer {transfer_id} on the consumer side")
    if transfer.state != "STARTED" or not transfer.data_address:
        raise NotEntitled(f"transfer {transfer_id} is {transfer.state}; no data address yet")
    address = json.loads(transfer.data_address)
    response = await _get(runtime, address, purpose)
    if response.status_code == 401:
        address = await _refresh(runtime, transfer, address)
        response = await _get(runtime, address, purpose)
    if response.status_code != 200:
        await response.aread()
        await response.aclose()
        raise _provider_refusal(response)
    async with runtime.transaction() as session:
        await audit.append(
            session, actor=runtime.participant_id, action="transfer.pulled", subject=transfer_id, purpose=purpose
        )
    return Pull(response)


async def _get(runtime: Runtime, address: dict[str, Any], purpose: str | None) -> httpx.Response:
    token = dsp.endpoint_property(address, "authorization")
    request = runtime.http.build_request(
        "GET",
        address["endpoint"],
        params={"purpose": purpose} if purpose else None,
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        return await runtime.http.send(request, stream=True)
    except httpx.TransportError as exc:
        raise PeerError(f"the provider's data plane is unreachable: {exc}") from exc


async def _refresh(runtime: Runtime, transfer: Transfer, address: dict[str, Any]) -> dict[str, Any]:
    """Trade our access token for a fresh data token at the provider's data plane."""
    url = address["endpoint"].rstrip("/") + "/token"
    try:
        response = await runtime.http.post(url, headers=await runtime.authorization(transfer.counterparty_id))
    except httpx.TransportError as exc:
        raise PeerError(f"the provider's data plane is unreachable: {exc}") from exc
    if response.status_code != 200:
        raise _provider_refusal(response)
    fresh = dsp.data_address(address["endpoint"], response.json()["token"])
    async with runtime.transaction() as session:
        stored = await session.get(Transfer, transfer.id)
        assert stored is not None
        stored.data_address = json.dumps(fresh)
    return fresh


def _provider_refusal(response: httpx.Response) -> TesseraError:
    try:
        problem = response.json()
    except ValueError:
        problem = {}
    detail = str(problem.get("detail") or response.text[:300])
    reasons = [str(r) for r in problem.get("reasons") or [detail]]
    error = NotEntitled(f"provider refused: {detail}", reasons=reasons)
    error.status_code = response.status_code if 400 <= response.status_code < 500 else 502
    return error
