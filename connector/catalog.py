"""What a provider offers: usage policies, offers, and the DCAT catalog built from them.

An offer binds an asset to a usage policy (Rego, decides every data access) and optionally an access
policy (Rego, decides who sees the offer and may contract for it). In the catalog an offer is an ODRL
`Offer` that names the usage policy by id and content hash, so the agreement can bind that exact text.
A dataset shows the asset's labels and lifecycle state as properties in our namespace (`LABEL_TERMS`),
which a plain DSP peer may ignore.
"""

import hashlib
from typing import Any, Literal

import sqlmodel
from pydantic import BaseModel, Field, model_validator
from sqlmodel import SQLModel

from connector.assets import MEDIA_TYPES, Asset
from policies.compiler import compile_policy
from policies.explain import patterns_in
from policies.odrl import offer_from_patterns
from policies.patterns import PatternUse, render
from tessera import dsp
from tessera.clock import utcnow
from tessera.odrl import InvalidPolicy, Policy, parse_policy
from tessera.policy import PolicyModule
from tessera.store import Json, JsonOf, Timestamp, UtcDateTime
from tessera.terms import Terms

# asset field -> the dataset property that shows it (absolute IRIs: no context of ours is needed)
LABEL_TERMS = {
    "classification": dsp.TESSERA + "classification",
    "category": dsp.TESSERA + "category",
    "personal_information": dsp.TESSERA + "personalInformation",
    "home_jurisdiction": dsp.TESSERA + "homeJurisdiction",
    "state": dsp.TESSERA + "artifactState",
}


class PatternSpec(BaseModel):
    name: str = Field(min_length=1, description="a pattern of the library, e.g. purpose or max_uses")
    params: dict[str, Any] = {}


class PolicyCreate(BaseModel):
    """A Rego module, given as `source` or composed from library `patterns` (all must allow)."""

    id: str | None = Field(default=None, min_length=1, max_length=200)
    title: str = ""
    source: str | None = Field(default=None, min_length=1, max_length=256 * 1024)
    patterns: list[PatternSpec] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_of(self) -> "PolicyCreate":
        if (self.source is None) == (self.patterns is None):
            raise ValueError("give either source (Rego) or patterns, not both")
        return self

    def rego(self, policy_id: str) -> str:
        if self.source is not None:
            return self.source
        assert self.patterns is not None
        package = "tessera.usage.p" + hashlib.sha256(policy_id.encode()).hexdigest()[:16]
        return render(package, [PatternUse.of(p.name, **p.params) for p in self.patterns])


class UsagePolicy(SQLModel, table=True):
    """A Rego module. Never edited in place: agreements bind its hash, so a change is a new policy."""

    __tablename__ = "usage_policy"

    id: str = sqlmodel.Field(primary_key=True)
    title: str = ""
    source: str
    package: str
    hash: str
    created_at: Timestamp = sqlmodel.Field(default_factory=utcnow, sa_type=UtcDateTime)

    @property
    def module(self) -> PolicyModule:
        return PolicyModule(id=self.id, source=self.source)

    def public(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class TermsIn(BaseModel):
    purposes: list[str] | None = None
    duration_days: int | None = Field(default=None, ge=1)
    uses: int | None = Field(default=None, ge=1)


class TermsInColumn(JsonOf[TermsIn]):
    """An offer's terms kept as JSON, as the operator gave them."""

    cache_ok = True

    def load(self, data: Any) -> TermsIn:
        return TermsIn.model_validate(data)

    def dump(self, value: TermsIn) -> Any:
        return value.model_dump(mode="json")


MAX_OFFER_CONSTRAINTS = 64


class OfferCreate(BaseModel):
    id: str | None = Field(default=None, min_length=1, max_length=200)
    asset_id: str
    usage_policy_id: str
    access_policy_id: str | None = None
    negotiation_policy_id: str | None = None
    terms: TermsIn = TermsIn()
    approval: Literal["auto", "manual"] = "auto"
    # ODRL constraints the provider states beside its usage policy's patterns (any form ODRL allows);
    # the agreement carries them and the data plane enforces them.
    constraints: list[dict[str, Any]] = Field(default=[], max_length=MAX_OFFER_CONSTRAINTS)

    @model_validator(mode="after")
    def _readable_constraints(self) -> "OfferCreate":
        for i, constraint in enumerate(self.constraints):
            try:
                parse_policy({"permission": [{"action": "use", "constraint": [constraint]}]}, where=f"constraints[{i}]")
            except InvalidPolicy as exc:
                raise ValueError(exc.detail) from None
        return self


class Offer(SQLModel, table=True):
    id: str = sqlmodel.Field(primary_key=True)
    asset_id: str = sqlmodel.Field(foreign_key="asset.id", index=True)
    usage_policy_id: str = sqlmodel.Field(foreign_key="usage_policy.id")
    access_policy_id: str | None = sqlmodel.Field(default=None, foreign_key="usage_policy.id")
    negotiation_policy_id: str | None = sqlmodel.Field(default=None, foreign_key="usage_policy.id")
    terms: TermsIn = sqlmodel.Field(default_factory=TermsIn, sa_type=TermsInColumn)  # what the offer grants at most
    approval: str = "auto"  # auto: the agent decides; manual: an operator accepts or counters
    constraints: list[dict[str, Any]] = sqlmodel.Field(default_factory=list, sa_type=Json)  # stated in ODRL
    created_at: Timestamp = sqlmodel.Field(default_factory=utcnow, sa_type=UtcDateTime)

    @property
    def granted(self) -> Terms:
        return Terms.from_dict(self.terms.model_dump())

    def public(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def odrl_offer(offer: Offer, usage_policy: UsagePolicy, *, terms: Terms | None = None) -> dict[str, Any]:
    """The offer as ODRL: the usage policy's patterns as constraints and duties (when it was built from
    library patterns), the constraints the provider stated, the negotiable terms, and the usage policy
    itself by id and content hash."""
    negotiable = [*offer.constraints, *(terms or offer.granted).constraints()]
    uses = patterns_in(usage_policy.source)
    if not uses:
        permission = [{"action": "use", "constraint": negotiable} if negotiable else {"action": "use"}]
        return {
            "@id": offer.id,
            "@type": "Offer",
            "permission": permission,
            dsp.USAGE_POLICY: {"@id": usage_policy.id, "hash": usage_policy.hash},
        }
    document = offer_from_patterns(offer.id, uses, policy_ref=(usage_policy.id, usage_policy.hash))
    for rule in document["permission"]:
        if negotiable:
            rule["constraint"] = [*rule.get("constraint", []), *negotiable]
    return document


def offer_policy(offer: Offer, usage_policy: UsagePolicy) -> Policy:
    """The catalog offer as a typed ODRL policy: what the provider means, and what it agrees to at most."""
    return parse_policy(odrl_offer(offer, usage_policy), where="offer")


def binding(offer: Offer, usage_policy: UsagePolicy) -> dict[str, Any]:
    """The agreement's reference to the Rego usage module it binds (our extension, `dsp.USAGE_POLICY`)."""
    return {"@id": usage_policy.id, "hash": usage_policy.hash, "offer": offer.id}


def enforcement_problems(offer: Offer, usage_policy: UsagePolicy) -> list[str]:
    """What in the offer's ODRL the connector could not enforce; an offer with problems is not published."""
    return list(compile_policy(offer_policy(offer, usage_policy)).problems)


def dataset(asset: Asset, offers: list[dict[str, Any]], service_id: str) -> dict[str, Any]:
    shown = asset.public()
    labels = {term: shown[name] for name, term in LABEL_TERMS.items() if shown[name] is not None}
    return {
        "@id": asset.id,
        "@type": "Dataset",
        "title": asset.title,
        "description": asset.description,
        "keyword": list(asset.keywords),
        **labels,
        "hasPolicy": offers,
        "distribution": [
            {
                "@type": "Distribution",
                "format": dsp.PULL_FORMAT,
                "mediaType": MEDIA_TYPES[asset.format],  # dcat:mediaType: what a pull gives unless it asks for another
                "accessService": service_id,
            }
        ],
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
