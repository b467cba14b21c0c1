"""What a provider offers: usage policies, offers, and the DCAT catalog built from them.

An offer binds an asset to a usage policy (Rego, decides every data access) and optionally an access
policy (Rego, decides who sees the offer and may contract for it). In the catalog an offer is an ODRL
`Offer` that names the usage policy by id and content hash, so the agreement can bind that exact text.
"""

import json
import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlmodel import Field as Column
from sqlmodel import SQLModel

from connector import dsp
from connector.assets import Asset, utcnow
from connector.policy import PolicyModule
from connector.terms import Terms


def new_id() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


class PolicyCreate(BaseModel):
    id: str | None = Field(default=None, min_length=1, max_length=200)
    title: str = ""
    source: str = Field(min_length=1, max_length=256 * 1024)


class UsagePolicy(SQLModel, table=True):
    """A Rego module. Never edited in place: agreements bind its hash, so a change is a new policy."""

    __tablename__ = "usage_policy"

    id: str = Column(primary_key=True)
    title: str = ""
    source: str
    package: str
    hash: str
    created_at: str = Column(default_factory=utcnow)

    @property
    def module(self) -> PolicyModule:
        return PolicyModule(id=self.id, source=self.source)

    def public(self) -> dict[str, Any]:
        return self.model_dump()


class TermsIn(BaseModel):
    purposes: list[str] | None = None
    duration_days: int | None = Field(default=None, ge=1)
    uses: int | None = Field(default=None, ge=1)


class OfferCreate(BaseModel):
    id: str | None = Field(default=None, min_length=1, max_length=200)
    asset_id: str
    usage_policy_id: str
    access_policy_id: str | None = None
    negotiation_policy_id: str | None = None
    terms: TermsIn = TermsIn()
    approval: Literal["auto", "manual"] = "auto"


class Offer(SQLModel, table=True):
    id: str = Column(primary_key=True)
    asset_id: str = Column(foreign_key="asset.id", index=True)
    usage_policy_id: str = Column(foreign_key="usage_policy.id")
    access_policy_id: str | None = Column(default=None, foreign_key="usage_policy.id")
    negotiation_policy_id: str | None = Column(default=None, foreign_key="usage_policy.id")
    terms: str = "{}"  # JSON of Terms: what the offer grants at most
    approval: str = "auto"  # auto: the agent decides; manual: an operator accepts or counters
    created_at: str = Column(default_factory=utcnow)

    @property
    def granted(self) -> Terms:
        return Terms.from_dict(json.loads(self.terms))

    def public(self) -> dict[str, Any]:
        return self.model_dump() | {"terms": json.loads(self.terms)}


def odrl_offer(offer: Offer, usage_policy: UsagePolicy, *, terms: Terms | None = None) -> dict[str, Any]:
    """The offer as ODRL: its terms as constraints, its usage policy by id and content hash."""
    return {
        "@id": offer.id,
        "@type": "Offer",
        "permission": (terms or offer.granted).permission(),
        dsp.USAGE_POLICY: {"@id": usage_policy.id, "hash": usage_policy.hash},
    }


def dataset(asset: Asset, offers: list[dict[str, Any]], service_id: str) -> dict[str, Any]:
    return {
        "@id": asset.id,
        "@type": "Dataset",
        "title": asset.title,
        "description": asset.description,
        "keyword": asset.public()["keywords"],
        "hasPolicy": offers,
        "distribution": [{"@type": "Distribution", "format": dsp.PULL_FORMAT, "accessService": service_id}],
    }


def catalog(participant_id: str, dsp_url: str, datasets: list[dict[str, Any]]) -> dict[str, Any]:
    service_id = service_id_for(dsp_url)
    return dsp.message(
        "Catalog",
        **{"@id": f"{participant_id}#catalog"},
        participantId=participant_id,
        service=[{"@id": service_id, "@type": "DataService", "endpointURL": dsp_url}],
        dataset=datasets or None,  # an empty list is invalid DSP: leave the key out
    )


def service_id_for(dsp_url: str) -> str:
    return f"{dsp_url}#data-service"
