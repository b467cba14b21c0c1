"""Revocation within seconds: the authority's signed participant status, and a connector's cache of it.

Access tokens live 300 s and data tokens 600 s, so a suspension at the broker would take minutes to
reach connectors through tokens alone. The broker therefore publishes, at `GET /participant-status`,
a JWT signed with the authority key (`typ` `participant-status+jwt`) that lists the suspended
participants, with `iat` and a short `exp`:

```json
{"iss": "https://broker.example.org", "iat": 1767225600, "exp": 1767225660, "suspended": ["urn:tessera:acme"]}
```

A connector keeps the newest document it verified (`ParticipantStatusCache`), fetches again at most once
per `refresh` seconds however many requests wait (one fetch under a lock; the others reuse it), and
refuses a suspended caller. It fails closed: once no document has verified for `grace` seconds (the
broker unreachable, a forged or stale answer), every caller is refused with `StatusUnavailable`.
"""

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

import httpx

from tessera.errors import NotEntitled, StatusUnavailable, TokenRejected
from tessera.identity import CLOCK_SKEW, Expect, JwksCache, SigningKey, decode_jwt, unverified_header

STATUS_PATH = "/participant-status"
STATUS_TYPE = "participant-status+jwt"
STATUS_MEDIA_TYPE = "application/jwt"
STATUS_CLAIMS = ("iss", "iat", "exp", "suspended")
FETCH_TIMEOUT = 3.0  # seconds; concurrent requests wait for this one fetch, so keep it short

logger = logging.getLogger("tessera.participant_status")


@dataclass(frozen=True)
class ParticipantStatus:
    """What one verified status document says."""

    issued_at: int
    expires_at: int
    suspended: frozenset[str]


def sign_status(signer: SigningKey, *, issuer: str, suspended: Iterable[str], lifetime: int) -> str:
    """The status document the authority publishes: `suspended` as of now, valid `lifetime` seconds."""
    now = int(time.time())
    claims = {"iss": issuer, "iat": now, "exp": now + lifetime, "suspended": sorted(suspended)}
    return signer.sign_jwt(claims, typ=STATUS_TYPE)


async def read_status(token: str, keys: JwksCache, *, issuer: str) -> ParticipantStatus:
    """The document's content once its signature (authority key), `typ`, issuer and expiry hold."""
    expect = Expect(issuer=issuer, require=STATUS_CLAIMS, typ=STATUS_TYPE, what="participant status")
    header = unverified_header(token, expect)
    claims = decode_jwt(token, await keys.key(str(header.get("kid"))), expect)
    suspended, iat, exp = claims["suspended"], claims["iat"], claims["exp"]
    if not isinstance(suspended, list) or not all(isinstance(p, str) for p in suspended):
        raise TokenRejected("participant status: `suspended` must be a list of participant ids")
    if not all(isinstance(value, int) and not isinstance(value, bool) for value in (iat, exp)):
        raise TokenRejected("participant status: `iat` and `exp` must be integers")
    return ParticipantStatus(iat, exp, frozenset(suspended))


class ParticipantStatusCache:
    """The broker's participant status as one connector knows it.

    ```python
    status = ParticipantStatusCache(http, broker + STATUS_PATH, jwks, issuer=broker, refresh=3, grace=30)
    await status.require_active(caller.participant_id)  # NotEntitled if suspended, StatusUnavailable if unknown
    ```
    """

    def __init__(
        self, http: httpx.AsyncClient, url: str, keys: JwksCache, *, issuer: str, refresh: float, grace: float
    ) -> None:
        if not 0 < refresh <= grace:
            raise ValueError("the status refresh period must be positive and no longer than the grace period")
        self._http = http
        self._url = url
        self._keys = keys
        self._issuer = issuer
        self._refresh = refresh
        self._grace = grace
        self._status: ParticipantStatus | None = None
        self._verified_at = -float("inf")  # time.monotonic() when the current document was received
        self._attempted_at = -float("inf")
        self._failure = "not fetched yet"
        self._lock = asyncio.Lock()

    async def require_active(self, participant_id: str) -> None:
        """Refuse `participant_id` if the broker lists it as suspended, or if its status is unknown."""
        if participant_id in (await self.current()).suspended:
            raise NotEntitled(f"participant {participant_id} is suspended at the broker")

    async def current(self) -> ParticipantStatus:
        """The newest verified document, fetched again first when `refresh` seconds have passed.

        One request fetches; the others wait for it, or use the current document meanwhile if it is still
        within the grace period.
        """
        if self._due() and not (self._lock.locked() and self._usable()):
            async with self._lock:
                if self._due():  # the request that held the lock may have fetched already
                    await self._fetch()
        if self._status is None or not self._usable():
            raise StatusUnavailable(
                f"no participant status from the broker verified within the last {self._grace:g} s "
                f"(last failure: {self._failure}); refusing every caller until it is back"
            )
        return self._status

    def _due(self) -> bool:
        return time.monotonic() - self._attempted_at >= self._refresh

    def _usable(self) -> bool:
        status = self._status
        fresh_enough = time.monotonic() - self._verified_at <= self._grace
        return status is not None and fresh_enough and time.time() <= status.expires_at + CLOCK_SKEW

    async def _fetch(self) -> None:
        """Fetch and verify the document; a failure is remembered, never raised (the grace period decides)."""
        # The next fetch is due `refresh` seconds after this one ended (a cancelled one leaves it due).
        try:
            fresh = await self._download()
        except TokenRejected as exc:
            self._failure, self._attempted_at = exc.detail, time.monotonic()
            logger.warning("participant status from %s refused: %s", self._url, exc.detail)
        else:
            self._status, self._verified_at, self._failure = fresh, time.monotonic(), "none"
            self._attempted_at = self._verified_at

    async def _download(self) -> ParticipantStatus:
        try:
            response = await self._http.get(self._url, timeout=FETCH_TIMEOUT)
        except httpx.HTTPError as exc:
            raise TokenRejected(f"broker unreachable at {self._url}: {exc!r}") from exc
        if response.status_code != 200:
            raise TokenRejected(f"{self._url} answered {response.status_code}")
        fresh = await read_status(response.text.strip(), self._keys, issuer=self._issuer)
        if time.time() - fresh.issued_at > self._grace + CLOCK_SKEW:
            raise TokenRejected(f"participant status issued {time.time() - fresh.issued_at:.0f} s ago is stale")
        if self._status is not None and fresh.issued_at < self._status.issued_at:
            raise TokenRejected("participant status older than the one already verified (replayed)")
        return fresh
