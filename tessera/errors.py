"""Tessera's exception tree. Callers catch a branch, not `Exception`.

* TesseraError
  x IdentityError            - a token or key failed verification (401)
    + TokenRejected          - signature, issuer, audience, expiry, replay or subject check failed
      - TokenExpired         - a token past its expiry (the holder may fetch a fresh one)
    + NotEntitled            - the verified caller may not act on this resource (403)
  x ProtocolError            - a peer sent a message we cannot accept (400)
    + InvalidMessage         - malformed JSON or a message that breaks its schema
    + IllegalTransition      - a valid message in the wrong state
    + UnknownProcess         - no such negotiation / transfer for this caller (404)
    + PeerError              - the counter-party answered with an error or could not be reached (502)
  x PolicyError
    + PolicyCompileError     - a Rego module does not compile (400, names line and column)
    + PolicyEvaluationError  - the engine failed while deciding (fails closed)
  x NotFound                 - an unknown id on our own API (404)
    + Gone                   - removed for good, e.g. by an operator (410)
  x Conflict                 - the request conflicts with stored state (409)
  x BadRequest               - any other invalid input on our own API (400)
    + ContentTooLarge        - a body past the size limit (413)
  x StatusUnavailable        - the broker's signed participant status cannot be had: we refuse (503)
  x SchemaMismatch           - the database is at a schema revision this code does not know: we do not start

Each error carries the HTTP status and a detail; the app's exception handler renders it as
problem+json (management API) or a DSP error message (protocol endpoints). A subclass names its
status in the class line, and takes its title from `STATUS_TITLES` unless it gives one:

```python
class Gone(NotFound, status=410):  # title "Gone"
    ...
```
"""

# The problem+json `title` for a status, where an error (or a Starlette HTTPException) names no other.
STATUS_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    410: "Gone",
    413: "Content too large",
    429: "Too many requests",
    500: "Internal error",
    502: "Bad gateway",
    503: "Service unavailable",
}


class TesseraError(Exception):
    """The root of our errors: an HTTP status, a title and a detail (and the reasons behind it)."""

    status_code = 500
    title = STATUS_TITLES[500]

    def __init__(self, detail: str, *, reasons: list[str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.reasons = reasons or [detail]

    def __init_subclass__(cls, *, status: int | None = None, title: str | None = None) -> None:
        super().__init_subclass__()
        if status is not None:
            cls.status_code = status
            cls.title = title or STATUS_TITLES[status]


class IdentityError(TesseraError, status=401):
    """A token or key failed verification."""


class TokenRejected(IdentityError):
    """A bearer token or client assertion failed a check."""


class TokenExpired(TokenRejected):
    """A token that was valid has expired; the holder may get a fresh one."""


class NotEntitled(IdentityError, status=403):
    """The verified caller may not act on this resource."""


class ProtocolError(TesseraError, status=400):
    """A peer sent a message we cannot accept."""


class InvalidMessage(ProtocolError):
    """Malformed JSON, or a message that breaks its schema."""


class IllegalTransition(ProtocolError):
    """A well-formed message that the process's current state does not allow."""


class UnknownProcess(ProtocolError, status=404):
    """No such negotiation or transfer for this caller."""


class PeerError(ProtocolError, status=502):
    """The counter-party answered with an error or could not be reached."""


class PolicyError(TesseraError, status=400, title="Policy error"):
    """A usage policy could not be compiled, evaluated or carried out."""


class PolicyCompileError(PolicyError):
    """A Rego module does not compile; `line` and `column` point at the first error."""

    def __init__(self, detail: str, *, line: int | None = None, column: int | None = None) -> None:
        super().__init__(detail)
        self.line = line
        self.column = column


class PolicyEvaluationError(PolicyError, status=500, title="Policy evaluation failed"):
    """The engine failed while deciding; callers fail closed."""


class NotFound(TesseraError, status=404):
    """An unknown id on our own API."""


class Gone(NotFound, status=410):
    """It existed and was removed for good (an operator deleted it); the detail says why."""


class Conflict(TesseraError, status=409):
    """The request conflicts with stored state."""


class BadRequest(TesseraError, status=400):
    """Any other invalid input on our own API."""


class ContentTooLarge(BadRequest, status=413):
    """A request body past the endpoint's size limit."""


class StatusUnavailable(TesseraError, status=503):
    """No verified participant status newer than the grace period: every caller is refused (fail closed)."""


class SchemaMismatch(TesseraError, status=503):
    """The database was migrated by a newer release (a revision this code does not know): refuse to run on it."""
