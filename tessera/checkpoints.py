"""Signed checkpoints of an audit chain's head, and the receipts others keep of them (可溯源存证).

A checkpoint says: participant P's audit chain had entry `seq` with hash `hash` (`hash_alg`) at time
`at`. It is a JWS by P's document signer (`tessera.crypto`), so anyone holding P's identity key (the
authority's record of P) can check it. A holder (the broker, a counter-party) keeps each checkpoint it
received as a receipt and hands it back out; a receipt carries the signer's key, so it verifies offline.
A holder accepts a checkpoint only if its sequence does not go back (`check_succession`).

```python
jws = sign_checkpoint(Checkpoint.now("urn:tessera:acme", 42, entry_hash, "sha256"), signer)
checkpoint = open_checkpoint(jws, identity_jwk)       # CheckpointRefused if it does not verify
```
"""

import re
from dataclasses import dataclass
from typing import Any

from tessera.audit import HASHES
from tessera.clock import parse, rfc3339
from tessera.crypto import DocumentSigner, sign_document, verify_document
from tessera.crypto.sm2 import ALGORITHM as SM2SM3
from tessera.errors import BadRequest, Conflict, TokenRejected
from tessera.identity import ALGORITHM as ES256
from tessera.json import JSON, JSONObject

CHECKPOINT_TYPE = "tessera:AuditCheckpoint"
RECEIPT_TYPE = "tessera:AuditReceipt"
SIGNATURES = (ES256, SM2SM3)  # a checkpoint of either crypto profile is evidence
_HASH = re.compile(r"[0-9a-f]{64}")


class CheckpointRefused(BadRequest):
    """A checkpoint that is malformed or whose signature does not verify with its signer's key."""


class CheckpointSequence(Conflict):
    """A checkpoint that goes back: an earlier entry than one already held, or another hash for the same."""


@dataclass(frozen=True)
class Checkpoint:
    participant_id: str
    seq: int  # the last entry's sequence number
    hash: str  # that entry's hash
    hash_alg: str  # a key of tessera.audit.HASHES
    at: str  # RFC 3339: when the checkpoint was made

    @classmethod
    def now(cls, participant_id: str, seq: int, hash: str, hash_alg: str) -> "Checkpoint":
        return cls(participant_id, seq, hash, hash_alg, rfc3339(timespec="milliseconds"))

    def document(self) -> JSONObject:
        return {
            "type": CHECKPOINT_TYPE,
            "participant": self.participant_id,
            "seq": self.seq,
            "hash": self.hash,
            "hash_alg": self.hash_alg,
            "at": self.at,
        }

    @classmethod
    def from_document(cls, document: JSON) -> "Checkpoint":
        """The checkpoint a signed document states; CheckpointRefused naming the member that is wrong."""
        if not isinstance(document, dict) or document.get("type") != CHECKPOINT_TYPE:
            raise CheckpointRefused(f"not a checkpoint: the document's type must be {CHECKPOINT_TYPE!r}")
        participant, seq, hash_, alg, at = (document.get(k) for k in ("participant", "seq", "hash", "hash_alg", "at"))
        if not isinstance(participant, str) or not participant:
            raise CheckpointRefused("checkpoint.participant must be a participant id")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise CheckpointRefused("checkpoint.seq must be an integer >= 1")
        if not isinstance(hash_, str) or not _HASH.fullmatch(hash_):
            raise CheckpointRefused("checkpoint.hash must be 64 lowercase hex digits")
        if alg not in HASHES:
            raise CheckpointRefused(f"checkpoint.hash_alg must be one of {sorted(HASHES)}, not {alg!r}")
        if not isinstance(at, str) or not _is_time(at):
            raise CheckpointRefused("checkpoint.at must be an RFC 3339 time")
        return cls(participant, seq, hash_, str(alg), at)


def _is_time(text: str) -> bool:
    try:
        parse(text)
    except ValueError:
        return False
    return True


def sign_checkpoint(checkpoint: Checkpoint, signer: DocumentSigner) -> str:
    return sign_document(checkpoint.document(), signer)


def open_checkpoint(jws: object, identity_jwk: JSONObject) -> Checkpoint:
    """The checkpoint a JWS carries, once it verifies with the signer's identity key (or a key it bound)."""
    if not isinstance(jws, str):
        raise CheckpointRefused("the checkpoint must be a compact JWS")
    try:
        document = verify_document(jws, identity_jwk, accept=SIGNATURES)
    except TokenRejected as exc:
        raise CheckpointRefused(f"the checkpoint's signature does not verify: {exc.detail}") from exc
    return Checkpoint.from_document(document)


def check_succession(latest: Checkpoint | None, new: Checkpoint) -> bool:
    """Whether `new` is news after the `latest` one held (False: the same one again); CheckpointSequence
    if it goes back."""
    if latest is None or new.seq > latest.seq:
        return True
    if new.seq == latest.seq and new.hash == latest.hash:
        return False
    raise CheckpointSequence(
        f"checkpoint of entry {new.seq} ({new.hash[:12]}…) goes back: entry {latest.seq} "
        f"({latest.hash[:12]}…) is already checkpointed"
    )


@dataclass(frozen=True)
class Receipt:
    """A checkpoint as a holder keeps it: the JWS, the key it verified with, who holds it since when."""

    checkpoint: str  # the JWS, exactly as received
    signer_jwk: JSONObject  # the signer's identity key, as the authority registered it
    held_by: str  # the broker's URL or the holding participant's id
    received_at: str  # RFC 3339

    def to_dict(self) -> JSONObject:
        return {
            "type": RECEIPT_TYPE,
            "checkpoint": self.checkpoint,
            "signer_jwk": self.signer_jwk,
            "held_by": self.held_by,
            "received_at": self.received_at,
        }

    @classmethod
    def from_dict(cls, value: Any) -> "Receipt":
        if not isinstance(value, dict) or value.get("type") != RECEIPT_TYPE:
            raise CheckpointRefused(f"not a receipt: its type must be {RECEIPT_TYPE!r}")
        checkpoint, jwk, held_by, at = (value.get(k) for k in ("checkpoint", "signer_jwk", "held_by", "received_at"))
        if not isinstance(checkpoint, str) or not isinstance(jwk, dict):
            raise CheckpointRefused("a receipt needs checkpoint (a JWS) and signer_jwk (a JWK)")
        return cls(checkpoint, jwk, str(held_by), str(at))

    def open(self, identity_jwk: JSONObject | None = None) -> Checkpoint:
        """The checkpoint, verified with `identity_jwk` (default: the key the receipt carries)."""
        return open_checkpoint(self.checkpoint, self.signer_jwk if identity_jwk is None else identity_jwk)
