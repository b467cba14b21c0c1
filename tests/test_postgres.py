"""The switch of the PostgreSQL pass (tests/postgres.py): what it accepts, and that a missing server fails it."""

from pathlib import Path

import pytest

from tests import postgres


def test_without_the_switch_every_service_keeps_its_sqlite_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("TESSERA_TEST_DATABASE", raising=False)
    monkeypatch.delenv("TESSERA_TEST_BROKER_DATABASE", raising=False)
    assert (postgres.database_url_for(tmp_path), postgres.database_url_for(tmp_path, broker=True)) == ("", "")


def test_a_pass_asked_for_on_postgresql_fails_where_no_server_can_be_installed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TESSERA_TEST_DATABASE", "postgresql")
    monkeypatch.setattr(postgres, "_server", None)
    monkeypatch.setattr(postgres, "binaries", lambda: None)
    with pytest.raises(RuntimeError, match="PostgreSQL is not installed and cannot be installed here"):
        postgres.database_url_for(tmp_path)
    monkeypatch.setenv("TESSERA_TEST_BROKER_DATABASE", "sqlite")
    assert postgres.database_url_for(tmp_path, broker=True) == ""  # the broker alone stays on its file


def test_an_unknown_database_is_refused_naming_the_choices(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TESSERA_TEST_DATABASE", "mysql")
    with pytest.raises(RuntimeError, match=r"TESSERA_TEST_DATABASE must be one of \('sqlite', 'postgresql'\)"):
        postgres.database_url_for(tmp_path)
