"""`tessera broker …` and `tessera participant …`, run as the installed console script and in-process."""

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from broker.cli import register
from tessera.identity import generate_key, public_jwk

Run = Callable[..., tuple[int, str, str]]
TESSERA = Path(sys.executable).parent / "tessera"


def _script(*args: str) -> tuple[int, str, str]:
    done = subprocess.run([str(TESSERA), *args], capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout, done.stderr


def _in_process(*args: str) -> tuple[int, str, str]:
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(params=["script", "in-process"])
def tessera(request: pytest.FixtureRequest) -> Run:
    return _script if request.param == "script" else _in_process


def jwk_file(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.jwk.json"
    path.write_text(json.dumps({**public_jwk(generate_key())}))
    return path


def add_participant(participant_id: str, broker_dir: str, jwk: str) -> list[str]:
    """`tessera participant add` with every required option."""
    options = ["--org", "O", "--region", "R", "--security-profile", "base"]
    return ["participant", "add", participant_id, "--broker-dir", broker_dir, "--jwk", jwk, *options]


def test_init_add_and_list_participants(tessera: Run, tmp_path: Path) -> None:
    directory = tmp_path / "broker"
    code, out, err = tessera("broker", "init", "--dir", str(directory), "--url", "http://127.0.0.1:8500")
    assert code == 0, err
    assert (directory / "authority.key").stat().st_mode & 0o777 == 0o600
    assert (directory / "broker.toml").exists()

    add = ["participant", "add", "--broker-dir", str(directory), "--org", "Acme", "--region", "EU"]
    code, _, err = tessera(
        *add, "urn:tessera:acme", "--jwk", str(jwk_file(tmp_path, "acme")), "--security-profile", "base"
    )
    assert code == 0, err

    code, out, err = tessera("participant", "list", "--broker-dir", str(directory), "--json")
    assert code == 0, err
    (listed,) = json.loads(out)
    assert (listed["id"], listed["org"], listed["region"], listed["security_profile"]) == (
        "urn:tessera:acme",
        "Acme",
        "EU",
        "base",
    )
    assert "d" not in listed["jwk"]


def test_init_refuses_to_overwrite_the_key_without_force(tessera: Run, tmp_path: Path) -> None:
    args = ("broker", "init", "--dir", str(tmp_path), "--url", "https://broker.example")
    assert tessera(*args)[0] == 0
    key = (tmp_path / "authority.key").read_bytes()

    code, _, err = tessera(*args)
    assert code == 2
    assert "--force" in err
    assert (tmp_path / "authority.key").read_bytes() == key

    assert tessera(*args, "--force")[0] == 0
    assert (tmp_path / "authority.key").read_bytes() != key


@pytest.mark.parametrize(
    "args",
    [
        ["broker", "init", "--dir", "{dir}/new", "--url", "not a url"],
        ["participant", "list", "--broker-dir", "{dir}/missing"],
        add_participant("bad id", "{dir}", "{dir}/key.json"),
        add_participant("urn:tessera:x", "{dir}", "{dir}/broker.toml"),
    ],
)
def test_bad_input_exits_with_2(tessera: Run, tmp_path: Path, args: list[str]) -> None:
    assert _in_process("broker", "init", "--dir", str(tmp_path), "--url", "https://broker.example")[0] == 0
    (tmp_path / "key.json").write_text(json.dumps(public_jwk(generate_key())))

    code, _, err = tessera(*[a.format(dir=tmp_path) for a in args])

    assert code == 2
    assert err


def test_adding_a_participant_twice_exits_with_2(tmp_path: Path) -> None:
    _in_process("broker", "init", "--dir", str(tmp_path), "--url", "https://broker.example")
    args = add_participant("urn:tessera:acme", str(tmp_path), str(jwk_file(tmp_path, "acme")))
    assert _in_process(*args)[0] == 0

    code, _, err = _in_process(*args)

    assert code == 2
    assert "already" in err


def test_every_command_has_help(tessera: Run) -> None:
    for command in (
        ["broker"],
        ["broker", "init"],
        ["broker", "serve"],
        ["participant", "add"],
        ["participant", "list"],
        ["broker", "delete-entry"],
        ["broker", "events"],
        ["certificate", "verify"],
    ):
        code, out, _ = tessera(*command, "--help")
        assert code == 0 and "Usage" in out


def _init(directory: Path) -> None:
    assert _in_process("broker", "init", "--dir", str(directory), "--url", "https://broker.example")[0] == 0


def _listed(tessera: Run, directory: Path) -> dict[str, Any]:
    code, out, err = tessera("participant", "list", "--broker-dir", str(directory), "--json")
    assert code == 0, err
    (listed,) = json.loads(out)
    return dict(listed)


CLAIM_OPTIONS = [
    "--jurisdiction",
    "CN",
    "--role",
    "researcher",
    "--role",
    "member",
    "--industry",
    "I64",
    "--registry-type",
    "uscc",
    "--registry-id",
    "91350100M000100Y43",
]


def test_add_takes_every_claim_and_list_shows_them(tessera: Run, tmp_path: Path) -> None:
    _init(tmp_path)
    args = add_participant("urn:tessera:acme", str(tmp_path), str(jwk_file(tmp_path, "acme")))

    code, _, err = tessera(*args, *CLAIM_OPTIONS)
    assert code == 0, err

    listed = _listed(tessera, tmp_path)
    assert {k: listed[k] for k in ("jurisdiction", "roles", "industry", "registry_type", "registry_id")} == {
        "jurisdiction": "CN",
        "roles": ["researcher", "member"],
        "industry": "I64",
        "registry_type": "uscc",
        "registry_id": "91350100M000100Y43",
    }
    assert listed["claims"]["registry_id"] == {"type": "uscc", "value": "91350100M000100Y43"}
    assert tessera("participant", "list", "--broker-dir", str(tmp_path))[0] == 0  # the table


@pytest.mark.parametrize(
    ("options", "names"),
    [
        (["--security-profile", "trusted"], "security_profile: 'trusted' is not one of base, trust, trust_plus"),
        (["--jurisdiction", "cn"], "jurisdiction: 'cn'"),
        (["--registry-type", "uscc", "--registry-id", "91350100M000100Y44"], "check character (position 18)"),
        (["--registry-type", "lei", "--registry-id", "529900T8BM49AURSDO56"], "MOD 97-10"),
        (["--registry-id", "91350100M000100Y43"], "give both or neither"),
        (["--role", "two words"], "roles: 'two words'"),
    ],
)
def test_add_refuses_a_bad_claim_with_exit_2_naming_it(
    tessera: Run, tmp_path: Path, options: list[str], names: str
) -> None:
    _init(tmp_path)
    args = add_participant("urn:tessera:acme", str(tmp_path), str(jwk_file(tmp_path, "acme")))

    code, _, err = tessera(*args, *options)

    assert code == 2
    assert names in " ".join(err.split())  # rich wraps long lines
    assert tessera("participant", "list", "--broker-dir", str(tmp_path), "--json")[1].strip() == "[]"


def test_add_accepts_the_profiles_broker_toml_defines(tmp_path: Path) -> None:
    _init(tmp_path)
    with (tmp_path / "broker.toml").open("a") as toml:
        toml.write('security_profiles = ["bronze", "gold"]\n')
    args = add_participant("urn:tessera:acme", str(tmp_path), str(jwk_file(tmp_path, "acme")))

    code, _, err = _in_process(*args)  # the helper's --security-profile base is not among them
    assert code == 2 and "one of bronze, gold" in err
    assert _in_process(*args, "--security-profile", "gold")[0] == 0


def test_update_changes_and_clears_claims(tessera: Run, tmp_path: Path) -> None:
    _init(tmp_path)
    assert (
        _in_process(
            *add_participant("urn:tessera:acme", str(tmp_path), str(jwk_file(tmp_path, "acme"))), *CLAIM_OPTIONS
        )[0]
        == 0
    )
    update = ["participant", "update", "urn:tessera:acme", "--broker-dir", str(tmp_path)]

    code, out, err = tessera(*update, "--security-profile", "trust_plus", "--role", "auditor", "--clear", "industry")
    assert code == 0, err
    assert "industry, roles, security_profile" in out

    listed = _listed(tessera, tmp_path)
    assert (listed["security_profile"], listed["roles"], listed["industry"]) == ("trust_plus", ["auditor"], None)
    assert listed["jurisdiction"] == "CN"


def test_update_jwk_rotates_the_key(tessera: Run, tmp_path: Path) -> None:
    _init(tmp_path)
    assert _in_process(*add_participant("urn:tessera:acme", str(tmp_path), str(jwk_file(tmp_path, "acme"))))[0] == 0
    rotated = json.loads(jwk_file(tmp_path, "rotated").read_text())
    update = ["participant", "update", "urn:tessera:acme", "--broker-dir", str(tmp_path)]

    code, out, err = tessera(*update, "--jwk", str(tmp_path / "rotated.jwk.json"))

    assert code == 0, err
    assert f"jwk (key id {rotated['kid']})" in out
    assert _listed(tessera, tmp_path)["jwk"]["kid"] == rotated["kid"]
    code, _, err = tessera(*update, "--jwk", str(tmp_path / "missing.json"))
    assert code == 2 and "cannot read a JWK" in err


@pytest.mark.parametrize(
    ("options", "names"),
    [
        (["--security-profile", "trusted"], "is not one of base, trust, trust_plus"),
        (["--clear", "org"], "--clear org: not an optional attribute"),
        (["--clear", "industry", "--industry", "C13"], "contradicts --industry"),
        (["--clear", "registry_id"], "give both or neither"),
        ([], "nothing to update"),
    ],
)
def test_update_refuses_bad_input_with_exit_2(tessera: Run, tmp_path: Path, options: list[str], names: str) -> None:
    _init(tmp_path)
    assert (
        _in_process(
            *add_participant("urn:tessera:acme", str(tmp_path), str(jwk_file(tmp_path, "acme"))), *CLAIM_OPTIONS
        )[0]
        == 0
    )
    before = _listed(tessera, tmp_path)

    code, _, err = tessera("participant", "update", "urn:tessera:acme", "--broker-dir", str(tmp_path), *options)

    assert code == 2
    assert names in " ".join(err.split())
    assert _listed(tessera, tmp_path) == before


def test_update_of_an_unknown_participant_exits_with_2(tmp_path: Path) -> None:
    _init(tmp_path)
    code, _, err = _in_process("participant", "update", "urn:tessera:x", "--broker-dir", str(tmp_path), "--org", "X")
    assert code == 2 and "no participant" in err


def test_the_security_profile_help_names_the_real_profiles(tessera: Run) -> None:
    for command in ("add", "update"):
        code, out, _ = tessera("participant", command, "--help")
        text = " ".join(out.replace("│", " ").split())
        assert code == 0
        assert "trusted" not in text
        assert "base, trust, trust_plus" in text
