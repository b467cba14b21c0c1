"""Write quotas, so one registrant cannot flood the broker.

Each participant has a token bucket: `per_minute` writes (registrations, unregistrations) in a burst, refilled
at `per_minute / 60` per second. A write over quota is refused with 429 and `Retry-After`; the bucket is in
memory, so a restart forgives everyone, which is fine for a flood guard. The number of offerings a
participant may keep is checked by the registry (`max_offerings`).
"""

import math
import time

from starlette.requests import Request
from starlette.responses import Response

from tessera.errors import TesseraError
from tessera.problems import problem_from_error


class QuotaExceeded(TesseraError):
    """A participant wrote more often, or registered more offerings, than its quota allows."""

    status_code = 429
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after: float = 0.0) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class WriteQuota:
    """Token buckets per participant. `per_minute=0` turns the quota off."""

    def __init__(self, per_minute: int) -> None:
        self._capacity = float(per_minute)
        self._rate = per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}  # participant -> (tokens, monotonic time)

    def spend(self, participant_id: str) -> None:
        if self._capacity <= 0:
            return
        now = time.monotonic()
        tokens, then = self._buckets.get(participant_id, (self._capacity, now))
        tokens = min(self._capacity, tokens + (now - then) * self._rate)
        if tokens < 1.0:
            wait = (1.0 - tokens) / self._rate
            raise QuotaExceeded(
                f"{participant_id!r} may write {int(self._capacity)} times a minute; retry in {math.ceil(wait)} s",
                retry_after=wait,
            )
        self._buckets[participant_id] = (tokens - 1.0, now)


async def quota_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, QuotaExceeded)
    response = problem_from_error(exc)
    if exc.retry_after:
        response.headers["Retry-After"] = str(math.ceil(exc.retry_after))
    return response
