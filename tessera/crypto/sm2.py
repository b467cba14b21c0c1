"""SM2 signatures over SM3 (GB/T 32918, GM/T 0003), computed by the OpenSSL command line.

pyca/cryptography, which does everything else here, hashes with SM3 but has no SM2 (its maintainers
have no plan for it). OpenSSL 3 has both, is kept up by the distributions, and passes the standard's
signature example (tests/tessera/test_crypto.py). So an SM2 signature is one `openssl pkeyutl` run
(about 6 ms): the private key stays in its PEM file, and no SM2 arithmetic is written here. Signatures
travel as JWS `SM2SM3`, r || s in 64 bytes like ES256; the distinguishing id is GM/T 0009's default.
See docs/crypto.md for why this library and not another.
"""

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, overload

from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from jwt.algorithms import Algorithm
from jwt.exceptions import InvalidKeyError
from jwt.types import JWKDict
from jwt.utils import base64url_decode, base64url_encode

from tessera.json import JSONObject

ALGORITHM = "SM2SM3"
CURVE = "SM2"  # the JWK `crv` of an SM2 key (kty EC)
DISTINGUISHING_ID = "1234567812345678"  # GM/T 0009-2012's default signer id, as OpenSSL and GmSSL use it
COORDINATE = 32  # bytes of x, y, r and s
# DER SubjectPublicKeyInfo of an SM2 key up to its point: id-ecPublicKey, the curve 1.2.156.10197.1.301,
# and the BIT STRING that holds 04 || x || y.
_SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a811ccf5501822d03420004")
_DIGEST = ("-rawin", "-digest", "sm3", "-pkeyopt", f"distid:{DISTINGUISHING_ID}")


class Sm2Error(RuntimeError):
    """This machine's `openssl` is missing, cannot do SM2 (older than 3.0), or failed to sign."""


@dataclass(frozen=True)
class Sm2PublicKey:
    x: bytes
    y: bytes

    @classmethod
    def from_jwk(cls, jwk: JSONObject) -> "Sm2PublicKey":
        """The key of an `{"kty": "EC", "crv": "SM2", "x", "y"}` JWK; ValueError says what is wrong."""
        if jwk.get("kty") != "EC" or jwk.get("crv") != CURVE:
            raise ValueError(f"not an SM2 key (kty {jwk.get('kty')!r}, crv {jwk.get('crv')!r})")
        x, y = (_coordinate(jwk.get(name), name) for name in ("x", "y"))
        return cls(x, y)

    @classmethod
    def from_der(cls, der: bytes) -> "Sm2PublicKey":
        if len(der) != len(_SPKI_PREFIX) + 2 * COORDINATE or not der.startswith(_SPKI_PREFIX):
            raise ValueError("not an SM2 public key")
        point = der[len(_SPKI_PREFIX) :]
        return cls(point[:COORDINATE], point[COORDINATE:])

    def to_jwk(self) -> JSONObject:
        return {"kty": "EC", "crv": CURVE, "x": _base64url(self.x), "y": _base64url(self.y)}

    @property
    def der(self) -> bytes:
        return _SPKI_PREFIX + self.x + self.y

    def verify(self, data: bytes, signature: bytes) -> bool:
        """Whether `signature` (r || s) is this key's over `data`; OpenSSL also checks the point is on the curve."""
        if len(signature) != 2 * COORDINATE:
            return False
        r, s = (int.from_bytes(half) for half in (signature[:COORDINATE], signature[COORDINATE:]))
        with tempfile.TemporaryDirectory(prefix="tessera-sm2-") as scratch:
            key, sig = Path(scratch, "key.der"), Path(scratch, "sig.der")
            key.write_bytes(self.der)
            sig.write_bytes(encode_dss_signature(r, s))
            args = ("pkeyutl", "-verify", "-pubin", "-keyform", "DER", "-inkey", str(key), "-sigfile", str(sig))
            return _openssl(*args, *_DIGEST, data=data, check=False).returncode == 0


@dataclass(frozen=True, repr=False)
class Sm2PrivateKey:
    """An SM2 private key in a PEM file, and its public key. Its repr never shows the key."""

    path: Path
    public: Sm2PublicKey

    @classmethod
    def generate(cls, path: Path) -> "Sm2PrivateKey":
        """A new key from OpenSSL's generator, written to `path` readable by its owner only."""
        pem = _openssl("genpkey", "-algorithm", "SM2").stdout
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(pem)
        path.chmod(0o600)  # an existing file keeps its mode through O_CREAT
        return cls.load(path)

    @classmethod
    def load(cls, path: Path) -> "Sm2PrivateKey":
        if not path.is_file():
            raise ValueError(f"{path} does not exist")
        der = _openssl("pkey", "-in", str(path), "-pubout", "-outform", "DER", check=False)
        if der.returncode != 0:
            raise ValueError(f"{path} is not a private key OpenSSL can read")
        try:
            return cls(path, Sm2PublicKey.from_der(der.stdout))
        except ValueError as exc:
            raise ValueError(f"{path} is not an SM2 private key") from exc

    def sign(self, data: bytes) -> bytes:
        """The SM2 signature of `data` (SM3 over Z_A and the data), as r || s."""
        der = _openssl("pkeyutl", "-sign", "-inkey", str(self.path), *_DIGEST, data=data).stdout
        r, s = decode_dss_signature(der)
        return r.to_bytes(COORDINATE) + s.to_bytes(COORDINATE)

    def __repr__(self) -> str:
        return f"Sm2PrivateKey(path={str(self.path)!r})"


class Sm2Sm3(Algorithm):
    """The JWS algorithm `SM2SM3` for PyJWT: sign with an `Sm2PrivateKey`, verify with an `Sm2PublicKey`."""

    def prepare_key(self, key: Any) -> Sm2PrivateKey | Sm2PublicKey:
        if not isinstance(key, Sm2PrivateKey | Sm2PublicKey):
            raise InvalidKeyError(f"{ALGORITHM} needs an SM2 key, not {type(key).__name__}")
        return key

    def sign(self, msg: bytes, key: Any) -> bytes:
        if not isinstance(key, Sm2PrivateKey):
            raise InvalidKeyError(f"{ALGORITHM} signs with an SM2 private key")
        return key.sign(msg)

    def verify(self, msg: bytes, key: Any, sig: bytes) -> bool:
        public = key.public if isinstance(key, Sm2PrivateKey) else key
        return isinstance(public, Sm2PublicKey) and public.verify(msg, sig)

    @overload
    @staticmethod
    def to_jwk(key_obj: Any, as_dict: Literal[True]) -> JWKDict: ...

    @overload
    @staticmethod
    def to_jwk(key_obj: Any, as_dict: Literal[False] = False) -> str: ...

    @staticmethod
    def to_jwk(key_obj: Any, as_dict: bool = False) -> JWKDict | str:
        public = key_obj.public if isinstance(key_obj, Sm2PrivateKey) else key_obj
        jwk = public.to_jwk()
        return jwk if as_dict else json.dumps(jwk)

    @staticmethod
    def from_jwk(jwk: str | JWKDict) -> Sm2PublicKey:
        try:
            return Sm2PublicKey.from_jwk(json.loads(jwk) if isinstance(jwk, str) else jwk)
        except ValueError as exc:
            raise InvalidKeyError(str(exc)) from exc


def check_available() -> str:
    """The `openssl` version in use; Sm2Error when it cannot sign with SM2 over SM3."""
    try:
        version = _openssl("version").stdout.decode().strip()
        listed = _openssl("list", "-signature-algorithms").stdout.decode()
    except Sm2Error as exc:
        raise Sm2Error(f"the SM crypto profile needs OpenSSL >= 3.0 with SM2: {exc}") from exc
    if "SM2" not in listed:
        raise Sm2Error(f"the SM crypto profile needs OpenSSL >= 3.0 with SM2; {version} has no SM2 signatures")
    return version


def _base64url(raw: bytes) -> str:
    return base64url_encode(raw).decode()


def _coordinate(value: object, name: str) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"the SM2 JWK needs a string member {name}")
    raw = base64url_decode(value)
    if len(raw) != COORDINATE:
        raise ValueError(f"the SM2 JWK's {name} must be {COORDINATE} bytes, not {len(raw)}")
    return raw


def _openssl(*args: str, data: bytes = b"", check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """Run `openssl args…` with `data` on stdin; with `check`, a failure raises Sm2Error with OpenSSL's message."""
    binary = shutil.which("openssl")
    if binary is None:
        raise Sm2Error("no `openssl` command on PATH")
    try:
        done = subprocess.run([binary, *args], input=data, capture_output=True, timeout=10)
    except subprocess.TimeoutExpired as exc:
        raise Sm2Error(f"openssl {args[0]} did not answer within 10 s") from exc
    if check and done.returncode != 0:
        raise Sm2Error(f"openssl {args[0]} failed: {done.stderr.decode(errors='replace').strip()[:300]}")
    return done
