"""SM3 and SM2 against the standards' published examples, and signed documents in both profiles.

The connector-level half (two SM connectors, mixed profiles, tampering on the wire, the SM3 audit chain)
is tests/connector/test_crypto_profile.py.
"""

import base64
import json
from pathlib import Path

import jwt
import pytest

from tessera.audit import HASHES
from tessera.crypto import PROFILES, Es256Signer, Sm2Signer, UnacceptedAlgorithm, sign_document, verify_document
from tessera.crypto.documents import KEY_BINDING, bind_key
from tessera.crypto.sm2 import Sm2PrivateKey, Sm2PublicKey
from tessera.errors import TokenRejected
from tessera.identity import SigningKey, generate_key, save_private_key

# GB/T 32905-2016, examples 1 and 2.
SM3_EXAMPLES = [
    (b"abc", "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"),
    (b"abcd" * 16, "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"),
]
# The signature example on the recommended curve (GM/T 0003.5-2012, the signer id "1234567812345678").
SM2_D = "3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8"
SM2_X = "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"
SM2_Y = "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13"
SM2_MESSAGE = b"message digest"
SM2_R = "F5A03B0648D2C4630EEAC513E1BB81A15944DA3827D5B74143AC7EACEEE720B3"
SM2_S = "B1B6AA29DF212FD8763182BC0D421CA1BB9038FD1F7F42D4840B69C485BBC1AA"
DOCUMENT = {"@id": "urn:uuid:a1", "@type": "Agreement", "title": "人口统计", "uses": 3}


@pytest.fixture
def identity(tmp_path: Path) -> SigningKey:
    save_private_key(generate_key(), tmp_path / "connector.key")
    return SigningKey.load(tmp_path / "connector.key")


@pytest.fixture
def sm2_signer(tmp_path: Path, identity: SigningKey) -> Sm2Signer:
    key = Sm2PrivateKey.generate(tmp_path / "connector.sm2.key")
    return Sm2Signer.bound(key, identity, "urn:tessera:acme")


@pytest.mark.parametrize(("message", "digest"), SM3_EXAMPLES)
def test_the_audit_chains_sm3_gives_the_standards_digests(message: bytes, digest: str) -> None:
    assert HASHES["sm3"](message) == digest


def test_the_standards_private_key_gives_its_public_key(tmp_path: Path) -> None:
    sec1 = bytes.fromhex("30310201010420" + SM2_D + "a00a06082a811ccf5501822d")  # ECPrivateKey, curve SM2
    pem = tmp_path / "example.key"
    pem.write_text(f"-----BEGIN EC PRIVATE KEY-----\n{base64.b64encode(sec1).decode()}\n-----END EC PRIVATE KEY-----\n")
    assert Sm2PrivateKey.load(pem).public == Sm2PublicKey(bytes.fromhex(SM2_X), bytes.fromhex(SM2_Y))


def test_the_standards_signature_verifies_and_a_changed_one_does_not() -> None:
    public = Sm2PublicKey(bytes.fromhex(SM2_X), bytes.fromhex(SM2_Y))
    signature = bytes.fromhex(SM2_R + SM2_S)
    assert public.verify(SM2_MESSAGE, signature)
    assert not public.verify(SM2_MESSAGE + b".", signature)
    assert not public.verify(SM2_MESSAGE, signature[:-1] + bytes([signature[-1] ^ 1]))
    assert not public.verify(SM2_MESSAGE, signature[:32])
    off_the_curve = Sm2PublicKey(public.x, public.y[:-1] + bytes([public.y[-1] ^ 1]))
    assert not off_the_curve.verify(SM2_MESSAGE, signature)


def test_a_generated_key_signs_and_its_public_key_verifies(tmp_path: Path) -> None:
    key = Sm2PrivateKey.generate(tmp_path / "k.pem")
    assert oct((tmp_path / "k.pem").stat().st_mode & 0o777) == "0o600"
    first, second = key.sign(b"data"), key.sign(b"data")
    assert first != second  # a fresh k each time
    assert key.public.verify(b"data", first) and key.public.verify(b"data", second)
    assert Sm2PublicKey.from_jwk(key.public.to_jwk()) == key.public
    assert "BEGIN" not in repr(key) and "BEGIN" not in repr(Sm2Signer(key, "binding"))


def test_a_p256_key_is_not_an_sm2_key(tmp_path: Path) -> None:
    save_private_key(generate_key(), tmp_path / "p256.key")
    with pytest.raises(ValueError, match="not an SM2 private key"):
        Sm2PrivateKey.load(tmp_path / "p256.key")


def test_an_sm2_document_signature_verifies_under_the_sm_profile(identity: SigningKey, sm2_signer: Sm2Signer) -> None:
    jws = sign_document(DOCUMENT, sm2_signer)
    header = jwt.get_unverified_header(jws)
    assert header["alg"] == "SM2SM3" and KEY_BINDING in header
    assert verify_document(jws, identity.jwk, accept=("SM2SM3",)) == DOCUMENT


def test_a_tampered_sm2_document_signature_is_refused(identity: SigningKey, sm2_signer: Sm2Signer) -> None:
    header, payload, signature = sign_document(DOCUMENT, sm2_signer).split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
    raw[10] ^= 1
    forged_signature = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    other = base64.urlsafe_b64encode(json.dumps({**DOCUMENT, "uses": 30}).encode()).decode().rstrip("=")
    for forged in (f"{header}.{payload}.{forged_signature}", f"{header}.{other}.{signature}"):
        with pytest.raises(TokenRejected, match="signature does not verify"):
            verify_document(forged, identity.jwk, accept=("SM2SM3",))


def test_a_key_bound_by_another_identity_is_refused(tmp_path: Path, sm2_signer: Sm2Signer) -> None:
    save_private_key(generate_key(), tmp_path / "other.key")
    someone_else = SigningKey.load(tmp_path / "other.key")
    with pytest.raises(TokenRejected, match="key binding rejected"):
        verify_document(sign_document(DOCUMENT, sm2_signer), someone_else.jwk, accept=("SM2SM3",))


def test_the_algorithm_comes_from_the_key_not_from_the_header(identity: SigningKey, sm2_signer: Sm2Signer) -> None:
    # An SM2 key's signature relabelled ES256, and an identity-key (P-256) signature labelled SM2SM3.
    binding = bind_key(identity, "urn:tessera:acme", sm2_signer.key.public.to_jwk())
    relabelled = jwt.api_jws.encode(b"{}", identity.key, algorithm="ES256", headers={KEY_BINDING: binding})
    with pytest.raises(TokenRejected, match="its key signs with SM2SM3"):
        verify_document(relabelled, identity.jwk, accept=("SM2SM3", "ES256"))
    header = base64.urlsafe_b64encode(b'{"alg":"SM2SM3"}').decode().rstrip("=")
    _, payload, signature = sign_document(DOCUMENT, Es256Signer(identity)).split(".")
    with pytest.raises(TokenRejected, match="its key signs with ES256"):
        verify_document(f"{header}.{payload}.{signature}", identity.jwk, accept=("SM2SM3", "ES256"))


def test_each_profile_refuses_the_other_profiles_algorithm(identity: SigningKey, sm2_signer: Sm2Signer) -> None:
    default = PROFILES["default"].signer(identity, participant_id="urn:tessera:acme", sm2_key=Path("unused"))
    assert isinstance(default, Es256Signer)
    es256 = sign_document(DOCUMENT, default)
    assert verify_document(es256, identity.jwk) == DOCUMENT
    with pytest.raises(
        UnacceptedAlgorithm, match=r"signed with ES256, which this connector does not accept \(SM2SM3\)"
    ):
        verify_document(es256, identity.jwk, accept=("SM2SM3",))
    with pytest.raises(UnacceptedAlgorithm) as refused:
        verify_document(sign_document(DOCUMENT, sm2_signer), identity.jwk)
    assert refused.value.algorithm == "SM2SM3"
