"""Crypto profiles: agreement signatures in ES256 or SM2SM3, audit chains in SHA-256 or SM3.

`profiles` chooses (`PROFILES["default"]`, `PROFILES["sm"]`), `documents` signs and verifies JWS over
canonical JSON with either algorithm, `sm2` is SM2 through OpenSSL. See docs/crypto.md.
"""

from tessera.crypto.documents import (
    DocumentSigner,
    Es256Signer,
    Sm2Signer,
    UnacceptedAlgorithm,
    sign_document,
    verify_document,
)
from tessera.crypto.profiles import PROFILES, CryptoProfile
from tessera.crypto.sm2 import Sm2Error

__all__ = [
    "PROFILES",
    "CryptoProfile",
    "DocumentSigner",
    "Es256Signer",
    "Sm2Error",
    "Sm2Signer",
    "UnacceptedAlgorithm",
    "sign_document",
    "verify_document",
]
