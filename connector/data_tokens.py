"""Data-plane tokens: short-lived JWTs a connector issues for one transfer and later checks itself.

The provider puts one in a pull transfer's data address (the consumer presents it to pull); the
consumer puts one in a push transfer's data address (the provider presents it to push).
"""

import time
from typing import Any

from connector.runtime import Runtime
from tessera.errors import TokenExpired, TokenRejected
from tessera.identity import Expect, decode_jwt
from tessera.ids import new_id

DATA_TOKEN_LIFETIME = 600  # seconds; a consumer refreshes an expired pull token with its access token


def issue(runtime: Runtime, *, transfer_id: str, agreement_id: str, holder: str) -> str:
    now = int(time.time())
    claims = {
        "iss": runtime.participant_id,
        "aud": runtime.participant_id,
        "sub": holder,
        "transfer": transfer_id,
        "agreement": agreement_id,
        "iat": now,
        "exp": now + DATA_TOKEN_LIFETIME,
        "jti": new_id(),
    }
    return runtime.signer.sign_jwt(claims)


def verify(runtime: Runtime, token: str, transfer_id: str) -> dict[str, Any]:
    """The claims of a data token we issued for `transfer_id`."""
    expect = Expect(
        issuer=runtime.participant_id,
        audience=runtime.participant_id,
        require=("iss", "aud", "sub", "exp", "transfer", "agreement"),
        what="data token",
    )
    try:
        claims = decode_jwt(token, runtime.signer.key.public_key(), expect)
    except TokenExpired as exc:
        raise TokenExpired("data token expired; refresh it") from exc
    if claims["transfer"] != transfer_id:
        raise TokenRejected("the data token was issued for another transfer")
    return claims
