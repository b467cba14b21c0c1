"""Cross-border uses: data used by a caller outside its home jurisdiction, and their filing (出境 存证备案).

A use is cross-border when the data has a home jurisdiction and the caller's verified jurisdiction
(`input.caller.jurisdiction`, from its access token) is another, or is missing: a caller whose token
proves no jurisdiction counts as abroad (fail closed). Besides the agreement, the connector's rules
(`[cross_border]` in its config) apply: levels and categories that never leave, and the destinations
data may go to. Every allowed cross-border use writes a filing record into the audit chain in the
transaction that counts the use (`crossborder.filed`); the bytes sent follow when the stream ends
(`crossborder.sent`, naming the filing). `filings` reads them back for the regulator's report.
"""

import json
from dataclasses import dataclass
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from connector.assets import Asset
from connector.config import CrossBorderRules
from connector.transfers import Transfer
from tessera import audit
from tessera.audit import AuditEntry
from tessera.ids import new_id
from tessera.json import JSONObject
from tessera.labels import Labels

FILED = "crossborder.filed"
SENT = "crossborder.sent"


@dataclass(frozen=True)
class Crossing:
    """Data leaving `origin` for `destination` (None: the caller's token proves no jurisdiction)."""

    origin: str
    destination: str | None

    def to_dict(self) -> JSONObject:
        return {"from": self.origin, "to": self.destination}


def crossing(labels: Labels, caller: JSONObject, provider: str) -> Crossing | None:
    """The border this use crosses, or None when it crosses none."""
    home = labels.home_jurisdiction
    if home is None or caller.get("sub") == provider:
        return None
    destination = caller.get("jurisdiction")
    if destination == home:
        return None
    return Crossing(home, destination if isinstance(destination, str) and destination else None)


def refusals(rules: CrossBorderRules, labels: Labels, border: Crossing) -> list[str]:
    """Why the connector's cross-border rules deny this use; [] when they allow it."""
    origin, to = json.dumps(border.origin), json.dumps(border.destination)
    if border.destination is None:
        return [f"cross_border: the caller's token proves no jurisdiction: a use of data from {origin} is cross-border"]
    found = []
    if labels.classification in rules.never_leave_levels:
        found.append(f"cross_border.never_leave_levels: {labels.classification} data never leaves {origin} (to {to})")
    if labels.category in rules.never_leave_categories:
        category = json.dumps(labels.category)
        found.append(f"cross_border.never_leave_categories: category {category} never leaves {origin} (to {to})")
    if border.destination not in rules.destinations:
        allowed = json.dumps(list(rules.destinations))
        found.append(f"cross_border.destinations: {to} is not among the allowed destinations {allowed}")
    return found


async def file(session: AsyncSession, actor: str, transfer: Transfer, asset: Asset, border: Crossing) -> str:
    """Append the filing record of an allowed cross-border use; returns its id (for the bytes, later).
    The recipient is the one the transfer's verified claims name."""
    filing_id, caller, labels = new_id(), transfer.caller_claims, asset.labels
    await audit.append(
        session,
        actor=actor,
        action=FILED,
        subject=transfer.agreement_id,
        filing=filing_id,
        agreement=transfer.agreement_id,
        transfer=transfer.id,
        asset=asset.id,
        recipient=caller.get("sub"),
        recipient_org=caller.get("org"),
        registry_id=caller.get("registry_id"),
        jurisdiction_from=border.origin,
        jurisdiction_to=border.destination,
        category=labels.category,
        level=labels.classification,
        personal_information=labels.personal_information,
    )
    return filing_id


async def sent(session: AsyncSession, *, actor: str, agreement_id: str, filing_id: str, sent_bytes: int) -> None:
    await audit.append(session, actor=actor, action=SENT, subject=agreement_id, filing=filing_id, bytes=sent_bytes)


async def filings(session: AsyncSession) -> list[dict[str, Any]]:
    """Every filing, oldest first, with the bytes sent (None while the stream has not ended)."""
    query = select(AuditEntry).where(col(AuditEntry.action).in_((FILED, SENT))).order_by(col(AuditEntry.seq))
    found: dict[str, dict[str, Any]] = {}
    for entry in await session.exec(query):
        filing_id = str(entry.details.get("filing"))
        if entry.action == FILED:
            found[filing_id] = {"id": filing_id, "at": entry.at, "seq": entry.seq, **entry.details, "bytes": None}
        elif filing_id in found:
            found[filing_id]["bytes"] = (found[filing_id]["bytes"] or 0) + int(entry.details.get("bytes") or 0)
    for row in found.values():
        row.pop("filing", None)
    return list(found.values())
