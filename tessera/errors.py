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
  x Conflict                 - the request conflicts with stored state (409)
  x BadRequest               - any other invalid input on our own API (400)

Each error carries the HTTP status and a detail; the app's exception handler renders it as
problem+json (management API) or a DSP error message (protocol endpoints).
"""


class TesseraError(Exception):
    status_code = 500
    title = "Internal error"

    def __init__(self, detail: str, *, reasons: list[str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.reasons = reasons or [detail]


class IdentityError(TesseraError):
    status_code = 401
    title = "Unauthorized"


class TokenRejected(IdentityError):
    """A bearer token or client assertion failed a check."""


class TokenExpired(TokenRejected):
    """A token that was valid has expired; the holder may get a fresh one."""


class NotEntitled(IdentityError):
    status_code = 403
    title = "Forbidden"


class ProtocolError(TesseraError):
    status_code = 400
    title = "Bad request"


class InvalidMessage(ProtocolError):
    """Malformed JSON, or a message that breaks its schema."""


class IllegalTransition(ProtocolError):
    """A well-formed message that the process's current state does not allow."""


class UnknownProcess(ProtocolError):
    status_code = 404
    title = "Not found"


class PeerError(ProtocolError):
    status_code = 502
    title = "Bad gateway"


class PolicyError(TesseraError):
    status_code = 400
    title = "Policy error"


class PolicyCompileError(PolicyError):
    """A Rego module does not compile; `line` and `column` point at the first error."""

    def __init__(self, detail: str, *, line: int | None = None, column: int | None = None) -> None:
        super().__init__(detail)
        self.line = line
        self.column = column


class PolicyEvaluationError(PolicyError):
    status_code = 500
    title = "Policy evaluation failed"


class NotFound(TesseraError):
    status_code = 404
    title = "Not found"


class Conflict(TesseraError):
    status_code = 409
    title = "Conflict"


class BadRequest(TesseraError):
    status_code = 400
    title = "Bad request"
