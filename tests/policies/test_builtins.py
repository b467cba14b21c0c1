"""The OPA builtins we add to regorus (`connector.policy.builtins`), called from Rego as policies call them.

The conformance kit (`../shared/rego-conformance`, docs/policy-engine.md) checks them against OPA's
own cases through `tessera policy eval`; these tests pin the semantics a policy relies on: what
verifies, what does not, and what is an error.
"""

import base64
import datetime
import hashlib
import hmac
import json
from pathlib import Path

import jwt
import pytest
import typer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from tessera.errors import PolicyEvaluationError
from tessera.policy import EmbeddedRegoEngine, PolicyModule
from tessera.policy.builtins import BUILTINS, glob_intersects

# From the conformance kit: HS256, secret "secret", payload {"sub": "alice", "purpose": "analytics"}.
KIT_TOKEN = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsInB1cnBvc2UiOiJhbmFseXRpY3MifQ."
    "10O9-xXRaUzdI3hgzSksw_kj6xDiHSS9enVzajMdzjI"
)
UNVERIFIED = [False, {}, {}]
pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # the kit's short secrets
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_EC_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


async def rego(expression: str, **values: object) -> object:
    """Evaluate `expression` in a module where each keyword is a constant; return its value."""
    constants = "".join(f"{name} := {json.dumps(value)}\n" for name, value in values.items())
    module = PolicyModule("builtins.rego", f"package t\n\n{constants}\nx := {expression}\n")
    engine = EmbeddedRegoEngine()
    try:
        (row,) = await engine.evaluate([module], "data.t.x")
    finally:
        await engine.aclose()
    return row["expressions"][0]["value"]


def pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def certificate(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tessera test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwk(key: ec.EllipticCurvePrivateKey, kid: str) -> dict:
    return json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key())) | {"kid": kid, "alg": "ES256"}


# -- crypto -----------------------------------------------------------------------------------------------


async def test_crypto_digests_are_lowercase_hex() -> None:
    assert await rego('crypto.sha256("abc")') == hashlib.sha256(b"abc").hexdigest()
    assert await rego('[crypto.md5("abc"), crypto.sha1("abc")]') == [
        hashlib.md5(b"abc").hexdigest(),
        hashlib.sha1(b"abc").hexdigest(),
    ]
    assert await rego('crypto.hmac.sha256("data", "key")') == hmac.new(b"key", b"data", "sha256").hexdigest()
    assert await rego('[crypto.hmac.equal("a1", "a1"), crypto.hmac.equal("a1", "a2")]') == [True, False]


async def test_crypto_on_a_non_string_is_an_evaluation_error() -> None:
    with pytest.raises(PolicyEvaluationError, match=r"crypto\.sha256"):
        await rego("crypto.sha256(42)")


# -- io.jwt.decode ----------------------------------------------------------------------------------------


async def test_jwt_decode_returns_header_payload_and_signature_hex() -> None:
    assert await rego("io.jwt.decode(t)", t=KIT_TOKEN) == [
        {"alg": "HS256", "typ": "JWT"},
        {"sub": "alice", "purpose": "analytics"},
        "d743bdfb15d1694cdd237860cd292cc3f923eb10e21d24bd7a75736a331dce32",
    ]


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("abc", "encoded JWT must have 3 sections, found 1"),
        ("a.b.c.d.e", "JWE object"),
        ("bm90IGpzb24.e30.", "JWT header is not JSON"),
        ("e30.WzFd.", "JWT payload must be a JSON object"),
    ],
)
async def test_jwt_decode_of_a_malformed_token_is_an_error(token: str, message: str) -> None:
    with pytest.raises(PolicyEvaluationError, match=message):
        await rego("io.jwt.decode(t)", t=token)


# -- io.jwt.decode_verify ---------------------------------------------------------------------------------


async def test_decode_verify_hs256_with_the_secret_and_without() -> None:
    header, payload = {"alg": "HS256", "typ": "JWT"}, {"sub": "alice", "purpose": "analytics"}
    assert await rego('io.jwt.decode_verify(t, {"secret": "secret"})', t=KIT_TOKEN) == [True, header, payload]
    assert await rego('io.jwt.decode_verify(t, {"secret": "wrong"})', t=KIT_TOKEN) == UNVERIFIED
    assert await rego('io.jwt.decode_verify(t, {"secret": "secret", "alg": "HS512"})', t=KIT_TOKEN) == UNVERIFIED
    assert await rego('[io.jwt.verify_hs256(t, "secret"), io.jwt.verify_hs256(t, "x")]', t=KIT_TOKEN) == [True, False]


@pytest.mark.parametrize("form", ["public key", "certificate", "jwk", "jwks"])
async def test_decode_verify_es256_with_each_form_of_key(form: str) -> None:
    token = jwt.encode({"sub": "bob"}, EC_KEY, algorithm="ES256", headers={"kid": "k1"})
    cert = {
        "public key": pem(EC_KEY),
        "certificate": certificate(EC_KEY),
        "jwk": json.dumps(jwk(EC_KEY, "k1")),
        "jwks": json.dumps({"keys": [jwk(OTHER_EC_KEY, "k0"), jwk(EC_KEY, "k1")]}),
    }[form]
    valid, header, payload = await rego('io.jwt.decode_verify(t, {"cert": c})', t=token, c=cert)
    assert (valid, header["alg"], payload) == (True, "ES256", {"sub": "bob"})
    assert await rego("io.jwt.verify_es256(t, c)", t=token, c=cert) is True


async def test_decode_verify_rejects_another_key_and_algorithm_confusion() -> None:
    token = jwt.encode({"sub": "bob"}, EC_KEY, algorithm="ES256")
    assert await rego('io.jwt.decode_verify(t, {"cert": c})', t=token, c=pem(OTHER_EC_KEY)) == UNVERIFIED
    # An HS256 token "signed" with the public key's text must not verify against that key.
    signing_input = b64url(b'{"alg":"HS256"}') + "." + b64url(b'{"sub":"mallory"}')
    mac = hmac.new(pem(EC_KEY).encode(), signing_input.encode(), "sha256").digest()
    forged = f"{signing_input}.{b64url(mac)}"
    assert await rego('io.jwt.decode_verify(t, {"cert": c})', t=forged, c=pem(EC_KEY)) == UNVERIFIED


async def test_decode_verify_rs256_and_ps256_with_a_certificate() -> None:
    cert = certificate(RSA_KEY)
    for alg in ("RS256", "PS256"):
        token = jwt.encode({"iss": "broker"}, RSA_KEY, algorithm=alg)
        assert await rego('io.jwt.decode_verify(t, {"cert": c})', t=token, c=cert) == [
            True,
            {"alg": alg, "typ": "JWT"},
            {"iss": "broker"},
        ]
    rs256 = jwt.encode({"iss": "broker"}, RSA_KEY, algorithm="RS256")
    assert await rego("[io.jwt.verify_rs256(t, c), io.jwt.verify_ps256(t, c)]", t=rs256, c=cert) == [True, False]


@pytest.mark.parametrize(
    ("claims", "constraints", "valid"),
    [
        ({"exp": 2_000}, {"time": 1_000 * 10**9}, True),
        ({"exp": 2_000}, {"time": 2_000 * 10**9}, False),  # expired at exp
        ({"nbf": 2_000}, {"time": 1_999 * 10**9}, False),
        ({"nbf": 2_000}, {"time": 2_000 * 10**9}, True),
        ({"exp": 1}, {}, False),  # the default time is now
        ({"iss": "broker"}, {"iss": "broker"}, True),
        ({"iss": "other"}, {"iss": "broker"}, False),
        ({}, {"iss": "broker"}, False),
        ({"aud": "provider"}, {}, False),  # a token for an audience needs the aud constraint
        ({"aud": ["consumer", "provider"]}, {"aud": "provider"}, True),
        ({"aud": "consumer"}, {"aud": "provider"}, False),
        ({}, {"aud": "provider"}, False),
    ],
)
async def test_decode_verify_checks_registered_claims_as_opa_does(claims: dict, constraints: dict, valid: bool) -> None:
    token = jwt.encode(claims, "secret", algorithm="HS256")
    result = await rego("io.jwt.decode_verify(t, c)", t=token, c={"secret": "secret"} | constraints)
    assert result[0] is valid
    assert result == ([True, {"alg": "HS256", "typ": "JWT"}, claims] if valid else UNVERIFIED)


@pytest.mark.parametrize(
    ("constraints", "message"),
    [
        ({}, "no key constraint"),
        ({"secret": "s", "cert": "c"}, "duplicate key constraints"),
        ({"secret": "s", "kid": "k"}, "unknown token validation constraint: kid"),
        ({"cert": "not a key"}, "failed to parse"),
    ],
)
async def test_decode_verify_with_bad_constraints_is_an_error(constraints: dict, message: str) -> None:
    with pytest.raises(PolicyEvaluationError, match=message):
        await rego("io.jwt.decode_verify(t, c)", t=KIT_TOKEN, c=constraints)


async def test_decode_verify_with_a_non_numeric_exp_is_an_error() -> None:
    token = jwt.api_jws.PyJWS().encode(b'{"exp": null}', b"42", "HS256")  # as the kit's invalid-exp case
    with pytest.raises(PolicyEvaluationError, match="exp value must be a number"):
        await rego('io.jwt.decode_verify(t, {"secret": "42"})', t=token)


async def test_decode_verify_in_a_usage_decision() -> None:
    source = """package tessera.usage.signed_purpose

default allow := false

allow if count(deny) == 0

deny contains "the purpose statement does not verify" if {
	[valid, _, _] := io.jwt.decode_verify(input.statement, {"secret": "shared", "aud": "provider"})
	not valid
}
"""
    module = PolicyModule("signed_purpose", source)
    engine = EmbeddedRegoEngine()
    try:
        assert (await engine.compile(source)) == "data.tessera.usage.signed_purpose"
        good = jwt.encode({"aud": "provider", "purpose": "research"}, "shared", algorithm="HS256")
        bad = jwt.encode({"aud": "provider", "purpose": "research"}, "guess", algorithm="HS256")
        assert (await engine.decide(module, {"statement": good})).allow
        assert (await engine.decide(module, {"statement": bad})).reasons == ("the purpose statement does not verify",)
    finally:
        await engine.aclose()


# -- regex.globs_match ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("glob1", "glob2", "intersects"),
    [
        ("a.a.[0-9]+z", ".b.b2359825792*594823z", True),  # OPA's cases
        ("[a-z]+", "[0-9]*", False),
        ("a.+", "a", False),
        ("a.*", "a", True),
        ("a.*", "ab", True),
        ("a*", "b*", False),  # only the empty string is common
        ("ab+", "a+b", True),
        ("\\.x", "[.]x", True),
        ("\\.x", "ax", False),
        ("[a-c]", "[d-f]", False),
    ],
)
async def test_globs_match_when_both_globs_match_a_common_string(glob1: str, glob2: str, intersects: bool) -> None:
    assert glob_intersects(glob1, glob2) is intersects
    assert await rego("regex.globs_match(a, b)", a=glob1, b=glob2) is intersects


async def test_globs_match_on_a_dangling_quantifier_is_an_error() -> None:
    with pytest.raises(PolicyEvaluationError, match="repeats nothing"):
        await rego('regex.globs_match("*a", "a")')


# -- the CLI ----------------------------------------------------------------------------------------------


def test_cli_eval_and_test_see_the_builtins(tessera: typer.Typer, runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "p_test.rego").write_text(
        "package p_test\n\n"
        f'test_decode if io.jwt.decode("{KIT_TOKEN}")[1].sub == "alice"\n\n'
        f'test_verify if io.jwt.verify_hs256("{KIT_TOKEN}", "secret")\n'
    )
    evaluated = runner.invoke(tessera, ["policy", "eval", 'crypto.sha256("abc")'])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.output)["result"][0]["expressions"][0]["value"] == hashlib.sha256(b"abc").hexdigest()
    tested = runner.invoke(tessera, ["policy", "test", str(tmp_path)])
    assert tested.exit_code == 0, tested.output
    assert "PASS: 2/2" in tested.output


def test_builtins_are_named_as_in_opa() -> None:
    assert {"crypto.sha256", "io.jwt.decode", "io.jwt.decode_verify", "regex.globs_match"} <= set(BUILTINS)
    assert all(name.split(".")[0] in {"crypto", "io", "regex"} for name in BUILTINS)
