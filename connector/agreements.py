"""Contract agreements: built and signed by the provider, countersigned by the consumer.

The agreement is an ODRL `Agreement` that names the usage policy by id and content hash. Both
signatures are compact JWS over the same canonical JSON of the agreement, so either party can prove
to a third what was agreed; the data plane refuses to decide under a policy whose text no longer
matches the bound hash.
"""

from typing import TYPE_CHECKING, Any

from sqlmodel import Field, SQLModel

from connector.catalog import Offer, UsagePolicy
from tessera import dsp
from tessera.clock import rfc3339, utcnow
from tessera.errors import InvalidMessage
from tessera.identity import SigningKey, canonical_json, sign_document, verify_document
from tessera.ids import new_id
from tessera.store import Json, Timestamp, UtcDateTime
from tessera.terms import Terms
from tessera.terms import from_odrl as terms_of

if TYPE_CHECKING:
    from connector.negotiations import Negotiation


class Agreement(SQLModel, table=True):
    """A finalized agreement, kept by both sides (`role` says which side we are)."""

    id: str = Field(primary_key=True)
    role: str  # provider | consumer
    negotiation_id: str = Field(index=True)
    provider_id: str
    consumer_id: str
    provider_address: str  # the provider's DSP base URL (for the consumer's transfer requests)
    target: str
    offer_id: str
    usage_policy_id: str
    usage_policy_hash: str
    document: dict[str, Any] = Field(sa_type=Json)  # the ODRL Agreement
    provider_signature: str
    consumer_signature: str
    signed_at: Timestamp = Field(sa_type=UtcDateTime)

    @property
    def terms(self) -> Terms:
        return terms_of(self.document)

    def public(self) -> dict[str, Any]:
        data = self.model_dump(mode="json", exclude={"document"})
        data["agreement"] = self.document
        data["terms"] = self.terms.to_dict()
        return data


def build(offer: Offer, policy: UsagePolicy, agreed: Terms, *, provider_id: str, consumer_id: str) -> dict[str, Any]:
    """An ODRL Agreement: the agreed terms as constraints, the usage policy bound by content hash."""
    return {
        "@id": new_id(),
        "@type": "Agreement",
        "target": offer.asset_id,
        "assigner": provider_id,
        "assignee": consumer_id,
        "timestamp": rfc3339(),
        "permission": agreed.permission(),
        dsp.USAGE_POLICY: {"@id": policy.id, "hash": policy.hash, "offer": offer.id},
    }


def record(negotiation: "Negotiation", *, provider_address: str) -> Agreement:
    """The finalized agreement of a negotiation, as both sides keep it."""
    assert negotiation.agreement and negotiation.provider_signature and negotiation.consumer_signature
    document = negotiation.agreement
    policy_id, policy_hash = usage_policy_ref(document)
    return Agreement(
        id=document["@id"],
        role=negotiation.role,
        negotiation_id=negotiation.id,
        provider_id=document["assigner"],
        consumer_id=document["assignee"],
        provider_address=provider_address,
        target=document["target"],
        offer_id=negotiation.offer_id,
        usage_policy_id=policy_id,
        usage_policy_hash=policy_hash,
        document=document,
        provider_signature=negotiation.provider_signature,
        consumer_signature=negotiation.consumer_signature,
        signed_at=utcnow(),
    )


def sign(agreement: dict[str, Any], signer: SigningKey) -> str:
    return sign_document(agreement, signer)


def check_signature(agreement: dict[str, Any], signature: object, jwk: dict[str, Any], *, signer_name: str) -> None:
    """Raise unless `signature` is a JWS by `jwk` over exactly this agreement."""
    if not isinstance(signature, str):
        raise InvalidMessage(f"the agreement carries no {signer_name} signature")
    if canonical_json(verify_document(signature, jwk)) != canonical_json(agreement):
        raise InvalidMessage(f"the {signer_name} signature covers a different agreement")


def usage_policy_ref(agreement: dict[str, Any]) -> tuple[str, str]:
    ref = agreement.get(dsp.USAGE_POLICY)
    if not isinstance(ref, dict) or not isinstance(ref.get("@id"), str) or not isinstance(ref.get("hash"), str):
        raise InvalidMessage("the agreement does not bind a usage policy (id and hash)")
    return ref["@id"], ref["hash"]
