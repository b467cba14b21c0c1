"""Signed documents: compact JWS over a document's canonical JSON, in ES256 or SM2SM3.

Whoever checks a signature knows the signer's identity key from the authority (an EC P-256 JWK). An
ES256 signature is made with that key. An SM2SM3 signature is made with an SM2 key that the identity
key vouches for: the JWS header carries a key binding, a JWT signed by the identity key whose `cnf.jwk`
(RFC 7800) is the SM2 public key. The verifier takes the algorithm from the key it ends up with, never
from the header alone, and refuses an algorithm its crypto profile does not accept.

```python
jws = sign_document(agreement, signer)            # signer: Es256Signer or Sm2Signer
document = verify_document(jws, identity_jwk, accept=("SM2SM3",))
```
"""

import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Protocol

import jwt
from jwt.api_jws import PyJWS

from tessera.crypto.sm2 import ALGORITHM as SM2SM3
from tessera.crypto.sm2 import CURVE as SM2_CURVE
from tessera.crypto.sm2 import Sm2PrivateKey, Sm2PublicKey, Sm2Sm3
from tessera.errors import TokenRejected
from tessera.identity import ALGORITHM as ES256
from tessera.identity import Expect, SigningKey, canonical_json, decode_jwt, key_from_jwk, thumbprint
from tessera.json import JSON, JSONObject, parse

KEY_BINDING = "https://w3id.org/tessera/v1/keyBinding"  # the JWS header member that carries the binding
KEY_BINDING_TYPE = "key-binding+jwt"
ALGORITHMS = {("EC", "P-256"): ES256, ("EC", SM2_CURVE): SM2SM3}  # a key's (kty, crv) -> its one algorithm

# Our own JWS instance: SM2SM3 registered here, not in PyJWT's global table.
_JWS = PyJWS(algorithms=[ES256])
_JWS.register_algorithm(SM2SM3, Sm2Sm3())


class UnacceptedAlgorithm(TokenRejected):
    """A signature by a valid key whose algorithm this connector's crypto profile does not accept."""

    def __init__(self, algorithm: str, accepted: Collection[str]) -> None:
        super().__init__(f"signed with {algorithm}, which this connector does not accept ({', '.join(accepted)})")
        self.algorithm = algorithm


class DocumentSigner(Protocol):
    """What signs our documents: a JWS algorithm, the key PyJWT signs with, and the header it needs."""

    @property
    def alg(self) -> str: ...

    @property
    def key(self) -> Any: ...

    @property
    def headers(self) -> JSONObject: ...


@dataclass(frozen=True, repr=False)
class Es256Signer:
    """Signs with the participant's identity key (the default profile)."""

    identity: SigningKey
    alg = ES256

    @property
    def key(self) -> Any:
        return self.identity.key

    @property
    def headers(self) -> JSONObject:
        return {"kid": self.identity.kid}

    def __repr__(self) -> str:
        return f"Es256Signer(kid={self.identity.kid!r})"


@dataclass(frozen=True, repr=False)
class Sm2Signer:
    """Signs with an SM2 key, carrying the identity key's binding of it in every header (the SM profile)."""

    key: Sm2PrivateKey
    binding: str
    alg = SM2SM3

    @classmethod
    def bound(cls, key: Sm2PrivateKey, identity: SigningKey, participant_id: str) -> "Sm2Signer":
        return cls(key, bind_key(identity, participant_id, key.public.to_jwk()))

    @property
    def headers(self) -> JSONObject:
        return {"kid": thumbprint(self.key.public.to_jwk()), KEY_BINDING: self.binding}

    def __repr__(self) -> str:
        return f"Sm2Signer(path={str(self.key.path)!r})"


def bind_key(identity: SigningKey, participant_id: str, jwk: JSONObject) -> str:
    """The identity key's statement that `jwk` is also `participant_id`'s signing key."""
    claims = {"iss": participant_id, "sub": participant_id, "iat": int(time.time()), "cnf": {"jwk": jwk}}
    return identity.sign_jwt(claims, typ=KEY_BINDING_TYPE)


def bound_key(binding: object, identity_jwk: JSONObject) -> JSONObject:
    """The JWK a key binding vouches for, once the identity key's signature on it verifies."""
    if not isinstance(binding, str):
        raise TokenRejected("the key binding must be a JWT")
    expect = Expect(require=("iss", "sub", "iat", "cnf"), typ=KEY_BINDING_TYPE, what="key binding")
    claims = decode_jwt(binding, key_from_jwk(identity_jwk), expect)
    jwk = claims["cnf"].get("jwk") if isinstance(claims["cnf"], dict) else None
    if not isinstance(jwk, dict) or claims["iss"] != claims["sub"]:
        raise TokenRejected("the key binding names no key of its own issuer")
    return jwk


def algorithm_of(jwk: JSONObject) -> str:
    """The one JWS algorithm a key signs with: ES256 for P-256, SM2SM3 for SM2."""
    algorithm = ALGORITHMS.get((str(jwk.get("kty")), str(jwk.get("crv"))))
    if algorithm is None:
        raise TokenRejected(f"no signature algorithm for a {jwk.get('kty')} {jwk.get('crv')} key")
    return algorithm


def sign_document(document: JSON, signer: DocumentSigner) -> str:
    """Compact JWS whose payload is the document's canonical JSON."""
    return _JWS.encode(canonical_json(document), signer.key, algorithm=signer.alg, headers=signer.headers)


def verify_document(jws: str, identity_jwk: JSONObject, *, accept: Collection[str] = (ES256,)) -> JSON:
    """The document a JWS carries, once it verifies with the signer's identity key or a key it bound.

    The algorithm is the key's (`algorithm_of`); the header must name that one, and `accept` must hold
    it, else UnacceptedAlgorithm. Any other failure is TokenRejected.
    """
    header = _header(jws)
    jwk = bound_key(header[KEY_BINDING], identity_jwk) if KEY_BINDING in header else identity_jwk
    algorithm = algorithm_of(jwk)
    if algorithm not in accept:
        raise UnacceptedAlgorithm(algorithm, accept)
    if header.get("alg") != algorithm:
        raise TokenRejected(f"the signature says {header.get('alg')!r}, but its key signs with {algorithm}")
    try:
        key: Any = Sm2PublicKey.from_jwk(jwk) if algorithm == SM2SM3 else key_from_jwk(jwk)  # PyJWT types only its own
        payload = _JWS.decode(jws, key, algorithms=[algorithm])
    except (jwt.InvalidTokenError, ValueError) as exc:
        raise TokenRejected(f"signature does not verify: {exc}") from exc
    # A valid signature makes no NaN or lone surrogate storable: the payload is strict JSON like any other.
    return parse(payload, "the signed document", TokenRejected)


def _header(jws: str) -> JSONObject:
    try:
        return _JWS.get_unverified_header(jws)
    except jwt.InvalidTokenError as exc:
        raise TokenRejected(f"signature does not verify: {exc}") from exc
