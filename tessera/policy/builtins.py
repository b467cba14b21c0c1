"""OPA builtins that regorus lacks, written in Python and registered on every embedded engine.

`register(engine)` adds them with `regorus.Engine.add_extension`; `tessera.policy.embedded.new_engine`
calls it, so decisions, `tessera policy eval` and `tessera policy test` all see them:

```python
engine = regorus.Engine()
register(engine)
engine.add_policy("p.rego", 'package p\\nx := crypto.sha256("abc")')
```

They follow OPA's documented results: `crypto.*` return lowercase hex, `io.jwt.decode` returns
`[header, payload, signature-hex]`, `io.jwt.decode_verify` returns `[valid, header, payload]` and
`[false, {}, {}]` when the signature or a claim does not verify. Malformed arguments raise
`BuiltinError`; regorus reports it as an evaluation error naming the builtin (callers fail closed).
An extension is called synchronously during evaluation and must not block.
"""

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import regorus
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt import PyJWK, PyJWKError
from jwt.algorithms import get_default_algorithms

from tessera.json import JSON, JSONObject, load_object

__all__ = ["BUILTINS", "BuiltinError", "glob_intersects", "register"]


class BuiltinError(ValueError):
    """A builtin got an argument it cannot work with (OPA raises a builtin error there too)."""


# -- crypto -----------------------------------------------------------------------------------------------


def _text(value: object, what: str = "operand") -> str:
    if not isinstance(value, str):
        raise BuiltinError(f"{what} must be a string, got {type(value).__name__}")
    return value


def _digest(name: str) -> Callable[[object], str]:
    return lambda value: hashlib.new(name, _text(value).encode()).hexdigest()


def _hmac(name: str) -> Callable[[object, object], str]:
    return lambda value, key: hmac.new(_text(key).encode(), _text(value).encode(), name).hexdigest()


def _hmac_equal(mac1: object, mac2: object) -> bool:
    return hmac.compare_digest(_text(mac1).encode(), _text(mac2).encode())


# -- JSON Web Tokens --------------------------------------------------------------------------------------

_HMAC_HASHES = {"HS256": "sha256", "HS384": "sha384", "HS512": "sha512"}
_ASYMMETRIC = {f"{family}{bits}" for family in ("RS", "PS", "ES") for bits in (256, 384, 512)}


@dataclass(frozen=True)
class _Token:
    """One JWS in compact form, split and decoded (the payload is left as bytes: it may be a nested JWT)."""

    header: JSONObject
    payload: bytes
    signature: bytes
    signing_input: bytes

    @classmethod
    def parse(cls, value: object) -> "_Token":
        parts = _text(value, "encoded JWT").split(".")
        if len(parts) == 5:
            raise BuiltinError("JWT is a JWE object, which is not supported")
        if len(parts) != 3:
            raise BuiltinError(f"encoded JWT must have 3 sections, found {len(parts)}")
        header = load_object(_b64url(parts[0], "header"), "JWT header", BuiltinError)
        if "enc" in header:
            raise BuiltinError("JWT is a JWE object, which is not supported")
        signing_input = f"{parts[0]}.{parts[1]}".encode()
        return cls(header, _b64url(parts[1], "payload"), _b64url(parts[2], "signature"), signing_input)

    @property
    def alg(self) -> str:
        return str(self.header.get("alg", ""))

    @property
    def nested(self) -> bool:
        return str(self.header.get("cty", "")).upper() == "JWT"


def _b64url(part: str, what: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError) as exc:
        raise BuiltinError(f"JWT {what} had invalid encoding: {exc}") from None


def jwt_decode(token: object) -> list[JSON]:
    """`io.jwt.decode`: [header, payload, signature as hex], without verifying anything."""
    parsed = _Token.parse(token)
    while parsed.nested:
        parsed = _Token.parse(parsed.payload.decode())
    return [parsed.header, load_object(parsed.payload, "JWT payload", BuiltinError), parsed.signature.hex()]


@dataclass(frozen=True)
class _Key:
    key: object  # a public key (RSA, EC, ...) or an HMAC secret from a JWK; _verify_with checks which
    kid: str | None = None
    alg: str | None = None


def _keys(cert: str) -> list[_Key]:
    """The public keys in a PEM certificate (chain), a PEM public key, a JWK or a JWK set."""
    text = cert.strip()
    try:
        if text.startswith("{"):
            document = json.loads(text)
            jwks = document["keys"] if isinstance(document, dict) and "keys" in document else [document]
            return [_Key(PyJWK.from_dict(jwk).key, jwk.get("kid"), jwk.get("alg")) for jwk in jwks]
        if "BEGIN CERTIFICATE" in text:
            return [_Key(c.public_key()) for c in x509.load_pem_x509_certificates(text.encode())]
        return [_Key(load_pem_public_key(text.encode()))]
    except (ValueError, TypeError, AttributeError, PyJWKError) as exc:
        raise BuiltinError(f"failed to parse a JWK key (set), certificate or public key: {exc}") from None


def _verify_with(alg: str, key: object, token: _Token) -> bool:
    if alg not in _ASYMMETRIC:
        return False
    expected = rsa.RSAPublicKey if alg[:2] in ("RS", "PS") else ec.EllipticCurvePublicKey
    if not isinstance(key, expected):
        return False  # never let a token choose how our key is used (algorithm confusion)
    try:
        return bool(get_default_algorithms()[alg].verify(token.signing_input, key, token.signature))
    except (ValueError, TypeError):
        return False


def _verify_hmac(alg: str, secret: str, token: _Token) -> bool:
    if alg not in _HMAC_HASHES:
        return False
    mac = hmac.new(secret.encode(), token.signing_input, _HMAC_HASHES[alg]).digest()
    return hmac.compare_digest(mac, token.signature)


def _verifier(alg: str, family: str) -> Callable[[object, object], bool]:
    """`io.jwt.verify_<alg>(token, key)`: the signature only, with the algorithm fixed by the builtin."""

    def verify(token: object, key: object) -> bool:
        parsed = _Token.parse(token)
        if family == "HS":
            return _verify_hmac(alg, _text(key, "secret"), parsed)
        return any(_verify_with(alg, k.key, parsed) for k in _keys(_text(key, "certificate")))

    return verify


@dataclass(frozen=True)
class _Constraints:
    """`io.jwt.decode_verify`'s second argument, checked as OPA checks it."""

    keys: tuple[_Key, ...] = ()
    secret: str | None = None
    alg: str | None = None
    iss: str | None = None
    aud: str | None = None
    time_ns: float = 0

    @classmethod
    def parse(cls, value: object) -> "_Constraints":
        if not isinstance(value, dict):
            raise BuiltinError("io.jwt.decode_verify: constraints must be an object")
        known = {"cert", "secret", "alg", "iss", "aud", "time"}
        if unknown := sorted(set(value) - known):
            raise BuiltinError(f"unknown token validation constraint: {unknown[0]}")
        if ("cert" in value) == ("secret" in value):
            raise BuiltinError("duplicate key constraints" if "cert" in value else "no key constraint")
        moment = value.get("time", time.time_ns())
        if isinstance(moment, bool) or not isinstance(moment, (int, float)):
            raise BuiltinError("token time constraint: must be a number")
        texts = {name: _text(value[name], name) for name in ("secret", "alg", "iss", "aud") if name in value}
        keys = tuple(_keys(_text(value["cert"], "cert"))) if "cert" in value else ()
        return cls(keys=keys, time_ns=moment, **texts)

    def signature_ok(self, token: _Token) -> bool:
        if self.secret is not None:
            return _verify_hmac(token.alg, self.secret, token)
        kid = token.header.get("kid")
        chosen = [k for k in self.keys if kid is not None and k.kid == kid] or list(self.keys)
        return any(_verify_with(token.alg, k.key, token) for k in chosen if k.alg in (None, token.alg))

    def claims_ok(self, payload: JSONObject) -> bool:
        if self.iss is not None and payload.get("iss") != self.iss:
            return False
        if "aud" in payload:
            audiences = payload["aud"] if isinstance(payload["aud"], list) else [payload["aud"]]
            if self.aud is None or self.aud not in audiences:
                return False
        elif self.aud is not None:
            return False
        now = self.time_ns / 1e9
        expires, not_before = _instant(payload, "exp"), _instant(payload, "nbf")
        return (expires is None or now < expires) and (not_before is None or now >= not_before)


def _instant(payload: JSONObject, claim: str) -> float | None:
    """A registered time claim in seconds, None when absent; any other value is an error, as in OPA."""
    if claim not in payload:
        return None
    value = payload[claim]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BuiltinError(f"{claim} value must be a number")
    return value


UNVERIFIED: list[JSON] = [False, {}, {}]


def jwt_decode_verify(token: object, constraints: object) -> list[JSON]:
    """`io.jwt.decode_verify`: [true, header, payload] when signature and claims verify, else [false, {}, {}]."""
    rules = _Constraints.parse(constraints)
    parsed = _Token.parse(token)
    while True:
        if rules.alg is not None and rules.alg != parsed.alg:
            return UNVERIFIED
        if not rules.signature_ok(parsed):
            return UNVERIFIED
        if not parsed.nested:
            break
        parsed = _Token.parse(parsed.payload.decode())
    payload = load_object(parsed.payload, "JWT payload", BuiltinError)
    return [True, parsed.header, payload] if rules.claims_ok(payload) else UNVERIFIED


# -- regex.globs_match ------------------------------------------------------------------------------------

_Ranges = tuple[tuple[int, int], ...]  # a character set: ranges of code points, ends included
_ANY: _Ranges = ((0, 0x10FFFF),)


@dataclass(frozen=True)
class _Step:
    """One glob token: a character set and whether it repeats (`*`)."""

    chars: _Ranges
    star: bool


def _glob(pattern: str) -> list[_Step]:
    """Parse a glob of `.`, `[a-z]` classes, `\\` escapes and literals, each optionally followed by `*` or `+`."""
    steps: list[_Step] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char in "*+":
            raise BuiltinError(f"glob {pattern!r}: {char!r} at {i} repeats nothing")
        if char == ".":
            chars, i = _ANY, i + 1
        elif char == "[":
            chars, i = _char_class(pattern, i + 1)
        elif char == "\\":
            if i + 1 == len(pattern):
                raise BuiltinError(f"glob {pattern!r} ends with an escape")
            chars, i = ((ord(pattern[i + 1]), ord(pattern[i + 1])),), i + 2
        else:
            chars, i = ((ord(char), ord(char)),), i + 1
        quantifier = pattern[i] if i < len(pattern) and pattern[i] in "*+" else ""
        i += bool(quantifier)
        if quantifier == "+":  # X+ is X X*
            steps.append(_Step(chars, False))
        steps.append(_Step(chars, quantifier != ""))
    return steps


def _char_class(pattern: str, i: int) -> tuple[_Ranges, int]:
    ranges: list[tuple[int, int]] = []
    while i < len(pattern) and pattern[i] != "]":
        if pattern[i] == "\\" and i + 1 < len(pattern):
            i += 1
        low = ord(pattern[i])
        if i + 2 < len(pattern) and pattern[i + 1] == "-" and pattern[i + 2] != "]":
            ranges.append((low, ord(pattern[i + 2])))
            i += 3
        else:
            ranges.append((low, low))
            i += 1
    if i == len(pattern) or not ranges:
        raise BuiltinError(f"glob {pattern!r}: unterminated or empty character class")
    return tuple(ranges), i + 1


def _overlap(a: _Ranges, b: _Ranges) -> bool:
    return any(lo1 <= hi2 and lo2 <= hi1 for lo1, hi1 in a for lo2, hi2 in b)


def glob_intersects(glob1: str, glob2: str) -> bool:
    """Do the globs both match some non-empty string? A walk of the product of their automata."""
    left, right = _glob(glob1), _glob(glob2)
    seen: set[tuple[int, int, bool]] = set()
    todo = [(0, 0, False)]
    while todo:
        state = todo.pop()
        if state in seen:
            continue
        seen.add(state)
        i, j, consumed = state
        if (i, j) == (len(left), len(right)) and consumed:
            return True
        if i < len(left) and left[i].star:
            todo.append((i + 1, j, consumed))
        if j < len(right) and right[j].star:
            todo.append((i, j + 1, consumed))
        if i < len(left) and j < len(right) and _overlap(left[i].chars, right[j].chars):
            todo.append((i + (not left[i].star), j + (not right[j].star), True))
    return False


def _globs_match(glob1: object, glob2: object) -> bool:
    return glob_intersects(_text(glob1, "glob"), _text(glob2, "glob"))


# -- registration -----------------------------------------------------------------------------------------

BUILTINS: dict[str, tuple[int, Callable[..., JSON]]] = {
    "crypto.md5": (1, _digest("md5")),
    "crypto.sha1": (1, _digest("sha1")),
    "crypto.sha256": (1, _digest("sha256")),
    "crypto.hmac.md5": (2, _hmac("md5")),
    "crypto.hmac.sha1": (2, _hmac("sha1")),
    "crypto.hmac.sha256": (2, _hmac("sha256")),
    "crypto.hmac.sha512": (2, _hmac("sha512")),
    "crypto.hmac.equal": (2, _hmac_equal),
    "io.jwt.decode": (1, jwt_decode),
    "io.jwt.decode_verify": (2, jwt_decode_verify),
    **{f"io.jwt.verify_{alg.lower()}": (2, _verifier(alg, "HS")) for alg in _HMAC_HASHES},
    **{f"io.jwt.verify_{alg.lower()}": (2, _verifier(alg, alg[:2])) for alg in sorted(_ASYMMETRIC)},
    "regex.globs_match": (2, _globs_match),
}
"""Builtin name -> (number of arguments, implementation)."""


def register(engine: regorus.Engine) -> None:
    """Add every builtin in `BUILTINS` to `engine`."""
    for name, (nargs, function) in BUILTINS.items():
        engine.add_extension(name, nargs, function)
