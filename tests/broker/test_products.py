"""Data-product codes, lifecycle history and certificates verified offline, through real HTTP and the CLI."""

import json
from pathlib import Path
from typing import Any

import jwt
import pytest
from typer.testing import CliRunner

from broker.cli import register as register_commands
from broker.products import check_digit, make_code, valid_code
from tests.broker.conftest import RunningBroker
from tests.broker.test_registry import offering, register, registration


def tessera(*args: str) -> tuple[int, str, str]:
    import typer

    app = typer.Typer()
    register_commands(app)
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


async def product(broker: RunningBroker, code: str) -> dict[str, Any]:
    response = await broker.http.get(f"/products/{code}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_codes_carry_a_luhn_check_digit() -> None:
    code = make_code(2026, 123)

    assert code == f"TDP-2026-000123-{check_digit('2026000123')}"
    assert valid_code(code)
    assert not valid_code(code[:-1] + str((int(code[-1]) + 1) % 10))
    assert not valid_code("TDP-2026-000132-" + code[-1]) or check_digit("2026000132") == int(code[-1])
    assert not valid_code("XYZ-1-2-3")


async def test_code_is_stable_through_change_correction_cancellation_and_return(broker: RunningBroker) -> None:
    acme = await broker.admit("acme")
    first = await register(broker, acme, registration(offering("temps", "Furnace temps"), offering("other", "Other")))
    code = first.json()["offerings"][1]["product_code"]
    other = first.json()["offerings"][0]["product_code"]

    await register(broker, acme, registration(offering("temps", "Furnace temperatures"), offering("other", "Other")))
    corrected = {**offering("temps", "Furnace temperatures (°C)"), "correction": "unit was missing"}
    await register(broker, acme, registration(corrected, offering("other", "Other")))
    await register(broker, acme, registration(offering("other", "Other")))
    back = await register(
        broker, acme, registration(offering("temps", "Furnace temperatures"), offering("other", "Other"))
    )

    assert back.json()["offerings"][1]["product_code"] == code
    assert code != other and valid_code(code) and valid_code(other)
    history = (await product(broker, code))["history"]
    assert [(h["version"], h["action"]) for h in history] == [
        (1, "registered"),
        (2, "changed"),
        (3, "corrected"),
        (4, "cancelled"),
        (5, "registered"),
    ]
    assert history[2]["reason"] == "unit was missing"
    assert history[2]["metadata"]["title"] == "Furnace temperatures (°C)"
    assert (await product(broker, code))["status"] == "ACTIVE"


async def test_registering_the_same_metadata_again_adds_no_history(broker: RunningBroker) -> None:
    acme = await broker.admit("acme")
    body = registration(offering("temps", "Furnace temps"))
    code = (await register(broker, acme, body)).json()["offerings"][0]["product_code"]

    again = await register(broker, acme, body)

    assert again.json()["changes"] == {"added": [], "changed": [], "removed": [], "withdrawn": []}
    assert len((await product(broker, code))["history"]) == 1


async def test_unknown_product_is_a_404(broker: RunningBroker) -> None:
    response = await broker.http.get("/products/TDP-2026-999999-0")

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


@pytest.fixture
async def certified(broker: RunningBroker, tmp_path: Path) -> tuple[str, Path, dict[str, Any]]:
    acme = await broker.admit("acme")
    answer = await register(broker, acme, registration(offering("temps", "Furnace temperatures")))
    code = answer.json()["offerings"][0]["product_code"]
    response = await broker.http.get(f"/products/{code}/certificate")
    assert response.status_code == 200
    jwks = tmp_path / "jwks.json"
    jwks.write_text((await broker.http.get("/.well-known/jwks.json")).text)
    return response.json()["certificate"], jwks, answer.json()["offerings"][0]


async def test_certificate_verifies_offline_against_the_jwks(certified: tuple[str, Path, dict[str, Any]]) -> None:
    token, jwks, registered = certified

    code, out, err = tessera("certificate", "verify", token, "--jwks", str(jwks), "--json")

    assert code == 0, err
    claims = json.loads(out)
    assert claims["product_code"] == registered["product_code"]
    assert claims["content_hash"] == registered["content_hash"]
    assert (claims["participant_id"], claims["offering_id"], claims["status"]) == (
        "urn:tessera:acme",
        "temps",
        "ACTIVE",
    )


async def test_certificate_file_verifies_against_a_jwks_url(
    broker: RunningBroker, certified: tuple[str, Path, dict[str, Any]], tmp_path: Path
) -> None:
    token, _, _ = certified
    path = tmp_path / "cert.json"
    path.write_text(json.dumps({"certificate": token}))

    import asyncio

    code, out, err = await asyncio.to_thread(
        tessera, "certificate", "verify", str(path), "--jwks", broker.url + "/.well-known/jwks.json"
    )

    assert code == 0, err
    assert "valid" in out


async def test_tampered_certificate_fails(certified: tuple[str, Path, dict[str, Any]]) -> None:
    token, jwks, _ = certified
    header, payload, signature = token.split(".")
    claims = json.loads(jwt.utils.base64url_decode(payload))
    forged = jwt.utils.base64url_encode(json.dumps({**claims, "title": "Something else"}).encode()).decode()

    code, _, err = tessera("certificate", "verify", f"{header}.{forged}.{signature}", "--jwks", str(jwks))

    assert code == 1
    assert "invalid" in err


async def test_certificate_signed_by_another_key_fails(
    certified: tuple[str, Path, dict[str, Any]], tmp_path: Path
) -> None:
    from tests.broker.conftest import new_key

    token, jwks, _ = certified
    claims = jwt.decode(token, options={"verify_signature": False})
    other = new_key()
    forged = other.sign_jwt(claims, typ="tessera-product+jwt")

    code, _, err = tessera("certificate", "verify", forged, "--jwks", str(jwks))

    assert code == 1
    assert "no key" in err


def test_verify_with_an_unreadable_jwks_exits_with_2(tmp_path: Path) -> None:
    code, _, err = tessera("certificate", "verify", "a.b.c", "--jwks", str(tmp_path / "missing.json"))

    assert code == 2
    assert "JWKS" in err
