"""Crypto profiles: which algorithm signs our documents and which hash links the audit chain.

`default` signs with the identity key (ES256) and chains with SHA-256. `sm` signs with an SM2 key bound
to the identity (SM2SM3) and chains with SM3. Identity itself (client assertions, the authority's access
tokens, data tokens) is ES256 in both: the authority speaks only that.

```python
profile = PROFILES["sm"]
signer = profile.signer(identity, participant_id="urn:tessera:acme", sm2_key=directory / "connector.sm2.key")
```
"""

from dataclasses import dataclass
from pathlib import Path

from tessera.crypto import sm2
from tessera.crypto.documents import DocumentSigner, Es256Signer, Sm2Signer
from tessera.identity import ALGORITHM as ES256
from tessera.identity import SigningKey


@dataclass(frozen=True)
class CryptoProfile:
    name: str
    signature: str  # the JWS algorithm of our agreement signatures, and the one we accept from peers
    audit_hash: str  # the audit chain's hash (tessera.audit.HASHES)

    @property
    def needs_sm2_key(self) -> bool:
        return self.signature == sm2.ALGORITHM

    def create_keys(self, *, sm2_key: Path) -> None:
        """Make the keys this profile signs with beside the identity key (`connector init`)."""
        if self.needs_sm2_key:
            sm2.check_available()
            sm2.Sm2PrivateKey.generate(sm2_key)

    def signer(self, identity: SigningKey, *, participant_id: str, sm2_key: Path) -> DocumentSigner:
        """What signs our documents under this profile; ValueError or sm2.Sm2Error when a key is unusable."""
        if not self.needs_sm2_key:
            return Es256Signer(identity)
        sm2.check_available()
        return Sm2Signer.bound(sm2.Sm2PrivateKey.load(sm2_key), identity, participant_id)


DEFAULT = CryptoProfile("default", signature=ES256, audit_hash="sha256")
SM = CryptoProfile("sm", signature=sm2.ALGORITHM, audit_hash="sm3")
PROFILES = {profile.name: profile for profile in (DEFAULT, SM)}
