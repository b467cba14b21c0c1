"""Data-plane tokens: short-lived JWTs a connector issues for one transfer and later checks itself.

The provider puts one in a pull transfer's data address (the consumer presents it to pull); the
consumer puts one in a push transfer's data address (the provider presents it to push).
"""

import time
from typing import Any

import jwt

from connector.catalog import new_id
from connector.errors import TokenRejected
from connector.identity import ALGORITHM, CLOCK_SKEW
from connector.runtime import Runtime

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
    try:
        claims = jwt.decode(
            token,
            runtime.signer.key.public_key(),
            algorithms=[ALGORITHM],
            issuer=runtime.participant_id,
            audience=runtime.participant_id,
            leeway=CLOCK_SKEW,
            options={"require": ["iss", "aud", "sub", "exp", "transfer", "agreement"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenRejected("data token expired; refresh it") from exc
    except jwt.InvalidTokenError as exc:
        raise TokenRejected(f"data token rejected: {exc}") from exc
    if claims["transfer"] != transfer_id:
        raise TokenRejected("the data token was issued for another transfer")
    return claims
