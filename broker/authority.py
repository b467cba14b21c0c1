"""The cluster's identity authority: registered participants and the token endpoint.

The operator registers each participant with its public key and attributes (org, region, security
profile, jurisdiction, roles, industry, registry id), checked by `broker.claims` on admission and on
every update. A participant's connector then authenticates with a `private_key_jwt` client assertion
(RFC 7523) signed by that key and receives a short-lived RFC 9068 access token for one audience: the
participant it is about to call, or the broker itself. Receivers verify tokens against
`/.well-known/jwks.json`; the attributes in the token come from the operator's record, never from the caller.
A suspension reaches connectors within seconds through the signed participant status document
(`GET /participant-status`, `tessera.participant_status`), not only when tokens expire.

Token errors are RFC 6749 §5.2 JSON (`{"error": …, "error_description": …}`), not problem+json, because
OAuth clients expect that shape.
"""

import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TypedDict
from urllib.parse import parse_qsl

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import JSON
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel, col, delete, select
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from broker import events
from broker.claims import FIELDS, Claims, changed, check_claims
from broker.config import DEFAULT_PARTICIPANT_STATUS_LIFETIME, DEFAULT_SECURITY_PROFILES
from tessera.bodies import read_body
from tessera.clock import utcnow
from tessera.errors import BadRequest, Conflict, ContentTooLarge, NotFound, TesseraError, TokenRejected
from tessera.identity import (
    ACCESS_TOKEN_LIFETIME,
    ACCESS_TOKEN_TYPE,
    ALGORITHM,
    CLIENT_ASSERTION_TYPE,
    CLOCK_SKEW,
    Expect,
    JwksCache,
    SigningKey,
    check_participant_id,
    decode_jwt,
    key_from_jwk,
    thumbprint,
    unverified_claims,
)
from tessera.participant_status import STATUS_MEDIA_TYPE, sign_status
from tessera.store import Database

logger = logging.getLogger("broker.authority")

MAX_ASSERTION_LIFETIME = 300  # seconds from iat (or now) to exp; longer-lived assertions are refused
MAX_FORM_BYTES = 16 * 1024
PRUNE_INTERVAL = 60.0  # seconds between sweeps of expired replay-protection records
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


# -- records ------------------------------------------------------------------------------------------


class ParticipantBase(SQLModel):
    """The attributes the operator verified, which the participant's tokens carry (`CLAIMS`)."""

    id: str = Field(primary_key=True, max_length=256)
    org: str
    region: str
    security_profile: str
    jurisdiction: str | None = None  # ISO 3166-1 alpha-2, where the organisation is established
    roles: list[str] = Field(default_factory=list, sa_type=JSON)
    industry: str | None = None
    registry_type: str | None = None  # uscc | lei | other: the registry the organisation is identified in
    registry_id: str | None = None  # the id there (a unified social credit code for uscc)

    def claims(self) -> dict[str, object]:
        """The verified attributes as token claims (`tessera.identity.CLAIMS`), absent ones left out."""
        found: dict[str, object] = {"org": self.org, "region": self.region, "security_profile": self.security_profile}
        if self.jurisdiction is not None:
            found["jurisdiction"] = self.jurisdiction
        if self.roles:
            found["roles"] = list(self.roles)
        if self.industry is not None:
            found["industry"] = self.industry
        if self.registry_type is not None and self.registry_id is not None:
            found["registry_id"] = {"type": self.registry_type, "value": self.registry_id}
        return found

    def stated(self) -> Claims:
        """The recorded attributes, as `broker.claims` checks them."""
        return Claims(**{name: getattr(self, name) for name in FIELDS})


class ParticipantPublic(TypedDict):
    id: str
    org: str
    region: str
    security_profile: str
    jurisdiction: str | None
    roles: list[str]
    industry: str | None
    registry_type: str | None
    registry_id: str | None
    suspended: bool
    jwk: dict[str, str]
    claims: dict[str, object]  # exactly what this participant's access tokens carry (`ParticipantBase.claims`)


class Participant(ParticipantBase, table=True):
    """A participant the operator admitted, with its public key (the members `public_part` keeps)."""

    __tablename__ = "broker_participant"

    jwk: dict[str, str] = Field(sa_type=JSON)
    created_at: datetime = Field(default_factory=utcnow)
    suspended: bool = False

    def public(self) -> ParticipantPublic:
        """What anyone may read: enough to verify the participant's signatures."""
        return {
            "id": self.id,
            "org": self.org,
            "region": self.region,
            "security_profile": self.security_profile,
            "jurisdiction": self.jurisdiction,
            "roles": list(self.roles),
            "industry": self.industry,
            "registry_type": self.registry_type,
            "registry_id": self.registry_id,
            "suspended": self.suspended,
            "jwk": self.jwk,
            "claims": self.claims(),
        }


class UsedAssertion(SQLModel, table=True):
    """A client assertion already spent. Kept until it would have expired, so a restart reopens nothing."""

    __tablename__ = "broker_used_assertion"

    issuer: str = Field(primary_key=True)
    jti: str = Field(primary_key=True)
    expires_at: int = Field(index=True)  # unix seconds, clock skew included


# -- operator functions -------------------------------------------------------------------------------


def public_part(jwk: Mapping[str, object]) -> dict[str, str]:
    """The public members of an EC P-256 JWK, with its RFC 7638 thumbprint as `kid`; private members dropped."""
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise BadRequest("the key must be an EC P-256 JWK (kty EC, crv P-256)")
    x, y = jwk.get("x"), jwk.get("y")
    if not isinstance(x, str) or not isinstance(y, str):
        raise BadRequest("the JWK needs string members x and y")
    public = {"kty": "EC", "crv": "P-256", "x": x, "y": y}
    try:
        key_from_jwk(public)
    except TokenRejected as exc:
        raise BadRequest(exc.detail) from exc
    return {**public, "kid": thumbprint(public), "use": "sig", "alg": ALGORITHM}


async def add_participant(
    db: Database,
    participant_id: str,
    *,
    jwk: Mapping[str, object],
    org: str,
    region: str,
    security_profile: str,
    jurisdiction: str | None = None,
    roles: Sequence[str] = (),
    industry: str | None = None,
    registry_type: str | None = None,
    registry_id: str | None = None,
    security_profiles: Sequence[str] = DEFAULT_SECURITY_PROFILES,
) -> Participant:
    """Admit a participant (an event, `participant.added`); BadRequest names every attribute that does not
    hold (`broker.claims`), and nothing is written then. `security_profiles` is the broker's enumeration
    (`BrokerConfig`)."""
    claims = Claims(
        org=org,
        region=region,
        security_profile=security_profile,
        jurisdiction=jurisdiction,
        roles=roles,
        industry=industry,
        registry_type=registry_type,
        registry_id=registry_id,
    )
    checked = check_claims(claims, security_profiles)
    participant = Participant(
        id=check_participant_id(participant_id, BadRequest), jwk=public_part(jwk), **checked.as_fields()
    )
    detail = {"kid": participant.jwk["kid"], "org": participant.org}
    async with db.session() as session:
        session.add(participant)
        try:
            await session.flush()  # the row first: a duplicate id fails here, before any event is written
            await events.record(
                await session.connection(),
                [events.event("operator", "participant.added", participant.id, detail=detail)],
            )
            await session.commit()
        except IntegrityError as exc:
            raise Conflict(f"participant {participant_id!r} is already registered") from exc
    logger.info("participant %s added (org %s, region %s)", participant_id, org, region)
    return participant


async def update_participant(
    db: Database,
    participant_id: str,
    changes: Mapping[str, object],
    *,
    security_profiles: Sequence[str] = DEFAULT_SECURITY_PROFILES,
    jwk: Mapping[str, object] | None = None,
) -> Participant:
    """Change a participant's attributes (`broker.claims.FIELDS`; None clears an optional one), checked as
    on admission, and with `jwk` replace its key (rotation: client assertions signed with the old key are
    refused from now on). The participant's next access token carries them; the change is an event."""
    if not changes and jwk is None:
        raise BadRequest("nothing to update: name at least one attribute")
    key = None if jwk is None else public_part(jwk)
    async with db.session() as session:
        participant = await session.get(Participant, participant_id)
        if participant is None:
            raise NotFound(f"no participant {participant_id!r}")
        checked = check_claims(changed(participant.stated(), changes), security_profiles)
        for name, value in checked.as_fields().items():
            setattr(participant, name, value)
        detail: dict[str, str | list[str]] = {"changed": sorted([*changes, *(["jwk"] if key else [])])}
        if key is not None:
            detail["previous_kid"], detail["kid"] = participant.jwk.get("kid", ""), key["kid"]
            participant.jwk = key
        session.add(participant)
        await events.record(
            await session.connection(), [events.event("operator", "participant.updated", participant_id, detail=detail)]
        )
        await session.commit()
        await session.refresh(participant)
    logger.info("participant %s updated (%s)", participant_id, ", ".join(sorted(changes)))
    return participant


async def list_participants(db: Database) -> list[Participant]:
    async with db.session() as session:
        return list(await session.exec(select(Participant).order_by(col(Participant.id))))


async def get_participant(db: Database, participant_id: str) -> Participant:
    async with db.session() as session:
        participant = await session.get(Participant, participant_id)
    if participant is None:
        raise NotFound(f"no participant {participant_id!r}")
    return participant


async def set_suspended(db: Database, participant_id: str, suspended: bool) -> Participant:
    async with db.session() as session:
        participant = await session.get(Participant, participant_id)
        if participant is None:
            raise NotFound(f"no participant {participant_id!r}")
        participant.suspended = suspended
        session.add(participant)
        action = "participant.suspended" if suspended else "participant.resumed"
        await events.record(await session.connection(), [events.event("operator", action, participant_id)])
        await session.commit()
    logger.info("participant %s %s", participant_id, "suspended" if suspended else "resumed")
    return participant


# -- the token endpoint -------------------------------------------------------------------------------


class TokenResponse(TypedDict):
    """RFC 6749 §5.1."""

    access_token: str
    token_type: str
    expires_in: int


class OAuthError(TesseraError):
    """A token request failed; rendered as an RFC 6749 §5.2 error response."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.status_code = 401 if error == "invalid_client" else 400


class AuthorityKeys(JwksCache):
    """The authority's own public key for a `TokenVerifier` inside the broker: no HTTP round trip."""

    def __init__(self, signer: SigningKey) -> None:  # no super().__init__: nothing is ever fetched
        self._local = {signer.kid: signer.key.public_key()}

    async def key(self, kid: str) -> ec.EllipticCurvePublicKey:
        if kid not in self._local:
            raise TokenRejected(f"unknown signing key {kid!r}")
        return self._local[kid]


class Authority:
    """Issues access tokens to registered participants that prove possession of their key.

    ```python
    authority = Authority(db, SigningKey.load(config.key_path), url=config.url)
    body = await authority.issue({"grant_type": "client_credentials", ...})  # or raises OAuthError
    ```
    """

    def __init__(
        self, db: Database, signer: SigningKey, *, url: str, status_lifetime: int = DEFAULT_PARTICIPANT_STATUS_LIFETIME
    ) -> None:
        self._db = db
        self._signer = signer
        self._url = url
        self._status_lifetime = status_lifetime
        self._token_endpoint = url + "/token"
        self._pruned_at = 0.0

    @property
    def db(self) -> Database:
        return self._db

    @property
    def signer(self) -> SigningKey:
        return self._signer

    async def participant_status(self) -> str:
        """The signed participant status document: who is suspended now (`tessera.participant_status`)."""
        async with self._db.session() as session:
            suspended = await session.exec(select(Participant.id).where(col(Participant.suspended)))
            ids = list(suspended)
        return sign_status(self._signer, issuer=self._url, suspended=ids, lifetime=self._status_lifetime)

    async def issue(self, form: Mapping[str, str]) -> TokenResponse:
        grant_type = _required(form, "grant_type")
        if grant_type != "client_credentials":
            raise OAuthError("unsupported_grant_type", f"grant_type {grant_type!r} is not client_credentials")
        assertion, assertion_type = form.get("client_assertion"), form.get("client_assertion_type")
        if not assertion or not assertion_type:
            raise OAuthError("invalid_client", "client_assertion and client_assertion_type are required")
        if assertion_type != CLIENT_ASSERTION_TYPE:
            raise OAuthError("invalid_client", f"client_assertion_type must be {CLIENT_ASSERTION_TYPE}")
        audience = _required(form, "audience")
        participant = await self._authenticate(assertion, form.get("client_id"))
        await self._check_audience(audience)
        logger.info("token issued to %s for %s", participant.id, audience)
        return access_token(self._signer, participant, issuer=self._url, audience=audience)

    async def _authenticate(self, assertion: str, client_id: str | None) -> Participant:
        issuer = _unverified_issuer(assertion)
        if client_id is not None and client_id != issuer:
            raise OAuthError("invalid_client", "client_id does not match the assertion's iss and sub")
        async with self._db.session() as session:
            participant = await session.get(Participant, issuer)
        if participant is None:
            raise OAuthError("invalid_client", f"{issuer!r} is not a registered participant")
        if participant.suspended:
            raise OAuthError("invalid_client", f"participant {issuer!r} is suspended")
        claims = self._verify(assertion, participant)
        await self._spend(issuer, claims["jti"], claims["exp"])
        return participant

    def _verify(self, assertion: str, participant: Participant) -> dict[str, Any]:
        expect = Expect(
            issuer=participant.id,
            audience=[self._token_endpoint, self._url],
            require=("iss", "sub", "aud", "exp", "jti"),
            what="client assertion",
        )
        try:
            claims = decode_jwt(assertion, key_from_jwk(participant.jwk), expect)
        except TokenRejected as exc:
            raise OAuthError("invalid_client", str(exc)) from exc
        exp, iat, jti = claims["exp"], claims.get("iat", time.time()), claims["jti"]
        if not all(isinstance(value, int | float) for value in (exp, iat)):
            raise OAuthError("invalid_client", "exp and iat must be numbers")
        if exp - iat > MAX_ASSERTION_LIFETIME or exp - time.time() > MAX_ASSERTION_LIFETIME + CLOCK_SKEW:
            raise OAuthError("invalid_client", f"client assertion lives longer than {MAX_ASSERTION_LIFETIME}s")
        if not isinstance(jti, str) or not 0 < len(jti) <= 256:
            raise OAuthError("invalid_client", "jti must be a string of 1-256 characters")
        return claims

    async def _spend(self, issuer: str, jti: str, exp: float) -> None:
        await self._prune()
        async with self._db.session() as session:
            session.add(UsedAssertion(issuer=issuer, jti=jti, expires_at=int(exp) + CLOCK_SKEW + 1))
            try:
                await session.commit()
            except IntegrityError as exc:
                logger.warning("replayed client assertion from %s (jti %s)", issuer, jti)
                raise OAuthError("invalid_client", "client assertion already used (jti replay)") from exc

    async def _prune(self) -> None:
        if time.monotonic() - self._pruned_at < PRUNE_INTERVAL:
            return
        self._pruned_at = time.monotonic()
        async with self._db.session() as session:
            await session.exec(delete(UsedAssertion).where(col(UsedAssertion.expires_at) < int(time.time())))
            await session.commit()

    async def _check_audience(self, audience: str) -> None:
        if audience == self._url:
            return
        async with self._db.session() as session:
            target = await session.get(Participant, audience)
        if target is None or target.suspended:
            # RFC 8693 §2.2.2 names this error for an audience the server will not issue tokens for.
            raise OAuthError("invalid_target", f"audience {audience!r} is neither the broker nor an active participant")


def access_token(signer: SigningKey, participant: ParticipantBase, *, issuer: str, audience: str) -> TokenResponse:
    """An RFC 9068 access token for `participant` to call `audience`, with the attributes the operator recorded."""
    now = int(time.time())
    claims = {
        "iss": issuer,
        "sub": participant.id,
        "aud": audience,
        "client_id": participant.id,
        "iat": now,
        "exp": now + ACCESS_TOKEN_LIFETIME,
        "jti": str(uuid.uuid4()),
        **participant.claims(),
    }
    token = signer.sign_jwt(claims, typ=ACCESS_TOKEN_TYPE)
    return {"access_token": token, "token_type": "Bearer", "expires_in": ACCESS_TOKEN_LIFETIME}


def _required(form: Mapping[str, str], name: str) -> str:
    if not form.get(name):
        raise OAuthError("invalid_request", f"missing parameter {name}")
    return form[name]


def _unverified_issuer(assertion: str) -> str:
    """The client an assertion claims to be; its signature is checked afterwards, with that client's key."""
    try:
        claims = unverified_claims(assertion, Expect(what="client assertion"))
    except TokenRejected as exc:
        raise OAuthError("invalid_client", str(exc)) from exc
    issuer = claims.get("iss")
    if not isinstance(issuer, str) or not issuer or claims.get("sub") != issuer:
        raise OAuthError("invalid_client", "the assertion's iss and sub must both name the client")
    return issuer


# -- HTTP ---------------------------------------------------------------------------------------------


async def _read_form(request: Request) -> dict[str, str]:
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "the token request must be application/x-www-form-urlencoded")
    try:
        body = await read_body(request, MAX_FORM_BYTES, "the token request")
    except ContentTooLarge as exc:  # OAuth clients expect RFC 6749's error shape, not problem+json
        raise OAuthError("invalid_request", exc.detail) from None
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=bool(body), max_num_fields=20)
    except (UnicodeDecodeError, ValueError) as exc:
        raise OAuthError("invalid_request", f"malformed form body: {exc}") from exc
    form = dict(pairs)
    if len(form) != len(pairs):
        raise OAuthError("invalid_request", "a parameter appears more than once")
    return form


def _oauth_error(exc: OAuthError) -> JSONResponse:
    body = {"error": exc.error, "error_description": exc.detail}
    return JSONResponse(body, status_code=exc.status_code, headers=NO_STORE)


async def token(request: Request) -> Response:
    authority: Authority = request.state.authority
    try:
        body = await authority.issue(await _read_form(request))
    except OAuthError as exc:
        logger.info("token request refused: %s (%s)", exc.error, exc.detail)
        return _oauth_error(exc)
    return JSONResponse(body, headers=NO_STORE)


async def jwks(request: Request) -> Response:
    authority: Authority = request.state.authority
    return JSONResponse({"keys": [authority.signer.jwk]}, headers={"Cache-Control": "public, max-age=300"})


async def participant_status(request: Request) -> Response:
    authority: Authority = request.state.authority
    document = await authority.participant_status()
    return Response(document, media_type=STATUS_MEDIA_TYPE, headers={"Cache-Control": "no-store"})


async def participant(request: Request) -> Response:
    authority: Authority = request.state.authority
    record = await get_participant(authority.db, request.path_params["participant_id"])
    return JSONResponse(record.public())
