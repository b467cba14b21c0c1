"""Participant identity: keys, client assertions (RFC 7523), access tokens (RFC 9068) and JWS.

A connector proves who it is to the cluster's authority (hosted by the broker) with a `private_key_jwt`
client assertion and receives a short-lived access token for one audience: the participant it is about
to call. The receiver verifies that token against the authority's JWKS. Nothing here trusts a
participant id that a verified signature does not prove.
"""

import asyncio
import base64
import binascii
import collections
import hashlib
import json
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from tessera.errors import PeerError, TokenExpired, TokenRejected
from tessera.json import JSON, JSONObject, load_object

ALGORITHM = "ES256"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ACCESS_TOKEN_TYPE = "at+jwt"
ACCESS_TOKEN_LIFETIME = 300  # seconds; short so a leaked token is soon worthless
CLIENT_ASSERTION_LIFETIME = 60
CLOCK_SKEW = 5  # seconds of leeway between participants' clocks
JWKS_MIN_REFRESH = 30  # seconds between forced JWKS refetches on an unknown kid

PrivateKey = ec.EllipticCurvePrivateKey
PublicKey = ec.EllipticCurvePublicKey  # every participant and the authority sign with EC P-256 (ES256)


# -- keys -------------------------------------------------------------------------------------------


def generate_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def save_private_key(key: PrivateKey, path: Path) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path.write_bytes(pem)
    path.chmod(0o600)


def load_private_key(path: Path) -> PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path} is not an EC private key")
    return key


def thumbprint(jwk: JSONObject) -> str:
    """RFC 7638 thumbprint of an EC public JWK: a stable key id."""
    members = {name: jwk[name] for name in ("crv", "kty", "x", "y")}
    digest = hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode()).digest()
    return jwt.utils.base64url_encode(digest).decode()


def public_jwk(key: PrivateKey) -> JSONObject:
    jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwk["kid"] = thumbprint(jwk)
    jwk["use"] = "sig"
    jwk["alg"] = ALGORITHM
    return jwk


def key_from_jwk(jwk: JSONObject) -> PublicKey:
    try:
        key = ECAlgorithm.from_jwk(json.dumps(jwk))
    except (jwt.InvalidKeyError, ValueError, KeyError, TypeError) as exc:
        raise TokenRejected(f"unusable public key: {exc}") from exc
    # A JWK that carries its private member `d` still verifies only with its public half.
    return key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key


@dataclass(frozen=True, repr=False)
class SigningKey:
    """A private key with its key id. Its repr never shows the key."""

    key: PrivateKey
    kid: str

    @classmethod
    def load(cls, path: Path) -> "SigningKey":
        key = load_private_key(path)
        return cls(key, thumbprint(public_jwk(key)))

    @property
    def jwk(self) -> JSONObject:
        return public_jwk(self.key)

    def sign_jwt(self, claims: JSONObject, *, typ: str = "JWT") -> str:
        return jwt.encode(claims, self.key, algorithm=ALGORITHM, headers={"kid": self.kid, "typ": typ})

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid!r})"


# -- canonical JSON (signed documents: tessera.crypto.documents) ------------------------------------


def canonical_json(document: JSON) -> bytes:
    return json.dumps(document, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def content_hash(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return "sha256:" + hashlib.sha256(raw).hexdigest()


# -- participant ids ---------------------------------------------------------------------------------

_PARTICIPANT_ID = re.compile(r"[^\s/?#%]{1,256}")


def check_participant_id(value: str, error: Callable[[str], Exception] = ValueError) -> str:
    """`value` if it can be a participant id (1-256 printable characters, no spaces or / ? # %), else `error`.

    The authority admits only such ids, so an id that fails here names no participant; checked where an
    id enters (the management API, admission) rather than when a token for it is asked for.
    """
    if not (_PARTICIPANT_ID.fullmatch(value) and value.isprintable()):
        raise error(f"{value[:300]!r} is not a participant id (1-256 characters, no spaces or / ? # %)")
    return value


# -- client side: getting access tokens --------------------------------------------------------------


def issued_claims(*, issuer: str, subject: str, audience: str, lifetime: int) -> dict[str, str | int]:
    """The registered claims of a JWT issued now: `iat` now, `exp` `lifetime` seconds later, a fresh `jti`.

    ```python
    token = signer.sign_jwt({**issued_claims(issuer=us, subject=us, audience=peer, lifetime=300), "org": org})
    ```
    """
    now = int(time.time())
    return {"iss": issuer, "sub": subject, "aud": audience, "iat": now, "exp": now + lifetime, "jti": str(uuid.uuid4())}


def client_assertion(signer: SigningKey, participant_id: str, token_endpoint: str) -> str:
    claims = issued_claims(
        issuer=participant_id, subject=participant_id, audience=token_endpoint, lifetime=CLIENT_ASSERTION_LIFETIME
    )
    return signer.sign_jwt(claims)


class TokenClient:
    """Fetches and caches access tokens from the authority, one per audience.

    ```python
    tokens = TokenClient(http, signer=key, participant_id="urn:tessera:acme", authority_url=broker)
    headers = {"Authorization": f"Bearer {await tokens.token_for('urn:tessera:globex')}"}
    ```
    """

    def __init__(self, http: httpx.AsyncClient, *, signer: SigningKey, participant_id: str, authority_url: str) -> None:
        self._http = http
        self._signer = signer
        self._participant_id = participant_id
        self._token_endpoint = authority_url.rstrip("/") + "/token"
        self._cache: dict[str, tuple[str, float]] = {}
        self._lock = asyncio.Lock()
        self.cache: collections.Counter[str] = collections.Counter()  # lookups by result: hit | miss

    async def token_for(self, audience: str) -> str:
        async with self._lock:
            cached = self._cache.get(audience)
            if cached and cached[1] - 30 > time.time():
                self.cache["hit"] += 1
                return cached[0]
            self.cache["miss"] += 1
            token, expires_in = await self._request(audience)
            self._cache[audience] = (token, time.time() + expires_in)
            return token

    async def _request(self, audience: str) -> tuple[str, int]:
        form = {
            "grant_type": "client_credentials",
            "client_id": self._participant_id,
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": client_assertion(self._signer, self._participant_id, self._token_endpoint),
            "audience": audience,
        }
        try:
            response = await self._http.post(self._token_endpoint, data=form)
        except httpx.TransportError as exc:
            raise PeerError(f"authority unreachable at {self._token_endpoint}: {exc}") from exc
        if response.status_code != 200:
            error = PeerError(f"authority refused a token ({response.status_code}): {response.text[:300]}")
            if response.status_code == 400 and '"invalid_target"' in response.text:
                error.status_code = 400  # the audience asked for is no active participant: the asker's mistake
            raise error
        body = response.json()
        return body["access_token"], int(body.get("expires_in", ACCESS_TOKEN_LIFETIME))


# -- receiver side: verifying access tokens ----------------------------------------------------------


# The verified attributes an access token carries, as the authority recorded them (broker/authority.py):
# org, region, security_profile, jurisdiction (ISO 3166-1 alpha-2), roles (a list), industry, and
# registry_id ({"type": "uscc" | "lei" | "other", "value": …}).
CLAIMS = ("org", "region", "security_profile", "jurisdiction", "roles", "industry", "registry_id")


@dataclass(frozen=True)
class Caller:
    """A participant whose access token verified. Attributes come from the authority, not the caller."""

    participant_id: str
    org: str | None = None
    region: str | None = None
    security_profile: str | None = None
    token_id: str | None = None
    claims: JSONObject = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, subject: str, claims: JSONObject, *, token_id: str | None = None) -> "Caller":
        """The caller a verified token (or the authority's record of what its tokens carry) describes."""
        return cls(
            participant_id=subject,
            org=claims.get("org"),
            region=claims.get("region"),
            security_profile=claims.get("security_profile"),
            token_id=token_id,
            claims=claims,
        )

    def to_policy_input(self) -> JSONObject:
        """`input.caller`: the token's subject as `sub` and every verified attribute (null when absent,
        roles an empty list)."""
        verified = {name: self.claims.get(name) for name in CLAIMS} | {"roles": self.claims.get("roles") or []}
        return (
            {"sub": self.participant_id}
            | verified
            | {
                "org": self.org,
                "region": self.region,
                "security_profile": self.security_profile,
            }
        )


class JwksCache:
    """The authority's JWKS, fetched once and again only when an unknown key id shows up."""

    def __init__(self, http: httpx.AsyncClient, jwks_url: str) -> None:
        self._http = http
        self._url = jwks_url
        self._keys: dict[str, PublicKey] = {}
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()
        self.fetches = 0  # times the JWKS was fetched (a metric)

    async def key(self, kid: str) -> PublicKey:
        if kid not in self._keys:
            async with self._lock:
                if kid not in self._keys and time.time() - self._fetched_at > JWKS_MIN_REFRESH:
                    await self._refresh()
        if kid not in self._keys:
            raise TokenRejected(f"unknown signing key {kid!r}")
        return self._keys[kid]

    async def _refresh(self) -> None:
        self.fetches += 1
        try:
            response = await self._http.get(self._url)
            response.raise_for_status()
            jwks = jwt.PyJWKSet.from_dict(response.json())
        except (httpx.HTTPError, jwt.PyJWKSetError, ValueError) as exc:
            raise TokenRejected(f"cannot load the authority's keys from {self._url}: {exc}") from exc
        self._keys = {k.key_id: k.key for k in jwks.keys if k.key_id}
        self._fetched_at = time.time()


@dataclass(frozen=True)
class Expect:
    """What a JWT must be for us to accept it: the checks `decode_jwt` makes beside the signature.

    ```python
    ACCESS = Expect(issuer=authority_url, audience=our_participant_id, what="token")
    claims = decode_jwt(token, key, ACCESS)
    ```
    An `issuer` or `audience` of None is not checked; several values mean any one of them.
    """

    issuer: str | Sequence[str] | None = None
    audience: str | Sequence[str] | None = None
    require: tuple[str, ...] = ("iss", "sub", "aud", "exp", "iat", "jti")
    typ: str | None = None  # the header's `typ`, where it tells one kind of token from another
    what: str = "token"  # how errors name the token: "token", "data token", "client assertion" …


def unverified_header(token: str, expect: Expect = Expect()) -> JSONObject:
    """The JWT header, after the checks that need no key: well-formed, strict JSON, ES256, the expected `typ`."""
    _strict_segments(token, expect)
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise TokenRejected(f"malformed {expect.what}: {exc}") from exc
    if header.get("alg") != ALGORITHM:
        raise TokenRejected(f"{expect.what} algorithm {header.get('alg')!r} is not {ALGORITHM}")
    if expect.typ is not None and header.get("typ") != expect.typ:
        raise TokenRejected(f"{expect.what} type {header.get('typ')!r} is not {expect.typ}")
    return header


def _strict_segments(token: str, expect: Expect) -> None:
    """pyjwt reads a JWT's header and claims with plain json.loads; they must be strict JSON (tessera.json)
    as well, so that no NaN, lone surrogate or repeated claim reaches a lookup, a log or a database."""
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenRejected(f"malformed {expect.what}: not three dot-separated segments")
    for segment, name in ((parts[0], "header"), (parts[1], "claims")):
        try:
            raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        except (binascii.Error, ValueError) as exc:
            raise TokenRejected(f"malformed {expect.what}: its {name} is not base64url") from exc
        load_object(raw, f"the {expect.what}'s {name}", TokenRejected)


def unverified_claims(token: str, expect: Expect = Expect()) -> JSONObject:
    """The claims a JWT makes before anything is checked: only to choose the key that will check them."""
    unverified_header(token, expect)
    try:
        claims: JSONObject = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError as exc:
        raise TokenRejected(f"malformed {expect.what}: {exc}") from exc
    return claims


def decode_jwt(token: str, key: PublicKey, expect: Expect) -> JSONObject:
    """The claims of `token` once signature (`key`), issuer, audience, expiry and required claims hold.

    Every JWT we accept passes here: access tokens, data tokens, client assertions, certificates.
    """
    unverified_header(token, expect)
    try:
        claims: JSONObject = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            issuer=expect.issuer,
            audience=expect.audience,
            leeway=CLOCK_SKEW,
            options={"require": list(expect.require), "verify_aud": expect.audience is not None},
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenExpired(f"{expect.what} expired") from exc
    except jwt.InvalidTokenError as exc:
        raise TokenRejected(f"{expect.what} rejected: {exc}") from exc
    return claims


class TokenVerifier:
    """Checks access tokens: signature (authority JWKS), issuer, audience (us), expiry, subject."""

    def __init__(self, keys: JwksCache, *, issuer: str, audience: str) -> None:
        self._keys = keys
        self._expect = Expect(issuer=issuer, audience=audience)

    async def verify(self, token: str) -> Caller:
        header = unverified_header(token, self._expect)
        claims = decode_jwt(token, await self._keys.key(str(header.get("kid"))), self._expect)
        return Caller.of(claims["sub"], claims, token_id=claims["jti"])


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer …` header."""
    if not authorization:
        raise TokenRejected("missing bearer token")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenRejected("Authorization header is not a bearer token")
    return token.strip()
