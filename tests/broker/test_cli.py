"""`tessera broker …` and `tessera participant …`, run as the installed console script and in-process."""

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

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
