"""Contract agreements: the agreed ODRL policy, whole, signed by us and countersigned when the peer signs.

The agreement is the ODRL `Agreement` the negotiation ended on: every permission, constraint, duty
and prohibition of the offer, narrowed to what was agreed, and, when the offer binds one, our Rego
usage module by id and content hash (`dsp.USAGE_POLICY`). We always sign it (compact JWS over its
canonical JSON, in our crypto profile's algorithm: ES256, or SM2SM3 under "sm"); a peer that speaks plain
DSP may not, and with `agreement_signatures = "when-offered"` the agreement is then kept as not
countersigned. A signature that is present must verify, unless it is in an algorithm our profile does
not accept (a peer on the other profile): that one counts as absent, with the reason in the audit entry.
"""

import asyncio
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlmodel import Field, SQLModel

from connector.proposals import terms_of
from tessera import dsp
from tessera.clock import rfc3339, utcnow
from tessera.crypto import DocumentSigner, UnacceptedAlgorithm, sign_document, verify_document
from tessera.errors import InvalidMessage, TokenRejected
from tessera.identity import canonical_json
from tessera.ids import new_id
from tessera.json import JSONObject
from tessera.odrl import InvalidPolicy, Policy, parse_policy
from tessera.store import Json, Timestamp, UtcDateTime
from tessera.terms import Terms

if TYPE_CHECKING:
    from connector.negotiations import Negotiation
    from connector.runtime import Runtime


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
    usage_policy_id: str | None = None  # the bound Rego module; None: the agreement's ODRL alone is the law
    usage_policy_hash: str | None = None
    document: dict[str, Any] = Field(sa_type=Json)  # the ODRL Agreement (2025-1 compact), whole
    provider_signature: str | None = None  # None: a plain DSP provider did not sign
    consumer_signature: str | None = None  # None: a plain DSP consumer did not countersign
    countersigned: bool = False  # both parties signed this exact document
    signed_at: Timestamp = Field(sa_type=UtcDateTime)

    @property
    def policy(self) -> Policy:
        return parse_policy(self.document, where="agreement")

    @property
    def terms(self) -> Terms:
        return terms_of(self.policy)

    def public(self) -> dict[str, Any]:
        data = self.model_dump(mode="json", exclude={"document"})
        data["agreement"] = self.document
        data["terms"] = self.terms.to_dict()
        return data


def build(
    agreed: Policy, *, target: str, provider_id: str, consumer_id: str, binding: dict[str, Any] | None
) -> dict[str, Any]:
    """The ODRL Agreement of `agreed` (the offer narrowed by the negotiation), with our Rego binding if any."""
    policy = replace(
        agreed, kind="Agreement", id=new_id(), target=target, assigner=provider_id, assignee=consumer_id, extensions={}
    )
    document: dict[str, Any] = {**policy.to_json(), "timestamp": rfc3339()}
    if binding is not None:
        document[dsp.USAGE_POLICY] = binding
    return document


def record(negotiation: "Negotiation", *, provider_address: str) -> Agreement:
    """The finalized agreement of a negotiation, as both sides keep it."""
    assert negotiation.agreement
    document = negotiation.agreement
    policy_id, policy_hash = usage_policy_ref(document) or (None, None)
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
        countersigned=bool(negotiation.provider_signature and negotiation.consumer_signature),
        signed_at=utcnow(),
    )


async def sign(agreement: dict[str, Any], signer: DocumentSigner) -> str:
    """Our signature, made in a worker thread: an SM2 signature runs `openssl` (milliseconds)."""
    return await asyncio.to_thread(sign_document, agreement, signer)


class PeerSignature(NamedTuple):
    """What the counter-party's signature comes to: kept (it verified), refused (`problem`), or neither."""

    kept: str | None = None  # the signature, once it verified
    problem: str | None = None  # why the agreement must be refused
    ignored: str | None = None  # why a signature was set aside as if absent: an algorithm we do not accept


async def check_peer_signature(
    runtime: "Runtime", signer_id: str, agreement: dict[str, Any], signature: object, *, signer_name: str
) -> PeerSignature:
    """The counter-party's signature, checked under our crypto profile and `agreement_signatures`."""
    required = runtime.config.agreement_signatures == "required"
    if signature is None and not required:
        return PeerSignature()  # a plain DSP peer: the agreement is kept as not countersigned
    if signature is None:
        return PeerSignature(
            problem=f"the agreement carries no {signer_name} signature, and this connector requires one"
        )
    if not isinstance(signature, str):
        return PeerSignature(problem=f"the {signer_name} signature is not a compact JWS")
    profile = runtime.config.crypto

    async def verified(jwk: dict[str, Any]) -> JSONObject:
        return await asyncio.to_thread(verify_document, signature, jwk, accept=(profile.signature,))

    try:
        signed = await runtime.participants.verified(signer_id, verified)
    except UnacceptedAlgorithm as exc:
        reason = (
            f"the {signer_name} signature is {exc.algorithm}; crypto profile {profile.name} accepts {profile.signature}"
        )
        if required:
            return PeerSignature(problem=f"{reason}, and this connector requires a signature")
        return PeerSignature(ignored=reason)
    except TokenRejected as exc:
        return PeerSignature(problem=f"the {signer_name} signature is refused: {exc.detail}")
    if canonical_json(signed) != canonical_json(agreement):
        return PeerSignature(problem=f"the {signer_name} signature covers a different agreement")
    return PeerSignature(kept=signature)


def usage_policy_ref(agreement: dict[str, Any]) -> tuple[str, str] | None:
    """The Rego module the agreement binds (id, hash); None for a plain DSP agreement."""
    ref = agreement.get(dsp.USAGE_POLICY)
    if ref is None:
        return None
    if not isinstance(ref, dict) or not isinstance(ref.get("@id"), str) or not isinstance(ref.get("hash"), str):
        raise InvalidMessage("the agreement's usage policy binding needs an id and a hash")
    return ref["@id"], ref["hash"]


def read(document: dict[str, Any]) -> Policy:
    """The agreement's ODRL policy; InvalidPolicy names what cannot be read, and it must be an Agreement."""
    policy = parse_policy(document, where="agreement")
    if policy.kind != "Agreement":
        raise InvalidPolicy(f"agreement.@type: {policy.kind} is not an Agreement")
    return policy
