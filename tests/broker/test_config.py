"""BrokerConfig: defaults, broker.toml round trip, and a repr that leaks nothing."""

from dataclasses import replace
from pathlib import Path

import pytest

import broker
from broker.config import BrokerConfig
from tessera.errors import BadRequest


def test_defaults_live_in_the_directory(tmp_path: Path) -> None:
    config = BrokerConfig(directory=tmp_path, url="https://broker.example/")

    assert config.url == "https://broker.example"
    assert config.token_endpoint == "https://broker.example/token"
    assert config.key_path == tmp_path.resolve() / "authority.key"
    assert config.database_url.endswith(str(tmp_path.resolve() / "broker.db"))
    assert replace(config, port=9000).key_path == config.key_path


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    config = BrokerConfig(directory=tmp_path, url="https://broker.example", host="0.0.0.0", port=9443)
    config.save()

    assert BrokerConfig.load(tmp_path) == config
    assert "database_url" not in (tmp_path / "broker.toml").read_text()


def test_load_refuses_a_missing_or_broken_file(tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match="broker init"):
        BrokerConfig.load(tmp_path)
    (tmp_path / "broker.toml").write_text('url = "https://b.example"\nport = "eighty"\n')
    with pytest.raises(BadRequest, match="port"):
        BrokerConfig.load(tmp_path)


@pytest.mark.parametrize("url", ["broker.example", "ftp://broker.example", "https://b.example/?x=1"])
def test_url_must_be_an_absolute_http_url(tmp_path: Path, url: str) -> None:
    with pytest.raises(BadRequest):
        BrokerConfig(directory=tmp_path, url=url)


def test_repr_masks_the_database_password(tmp_path: Path) -> None:
    config = BrokerConfig(
        directory=tmp_path, url="https://b.example", database_url="postgresql+asyncpg://tessera:hunter2@db/tessera"
    )

    assert "hunter2" not in repr(config)
    assert "***" in repr(config)


def test_public_surface_is_pinned() -> None:
    assert broker.__all__ == ["BrokerConfig", "create_app"]


def test_crawl_and_quota_settings_round_trip_and_are_checked(tmp_path: Path) -> None:
    config = BrokerConfig(directory=tmp_path, url="https://b.example", crawl_interval=60, max_offerings=5)
    config.save()

    assert BrokerConfig.load(tmp_path) == config
    assert "dead_after" not in (tmp_path / "broker.toml").read_text()
    (tmp_path / "broker.toml").write_text('url = "https://b.example"\nmax_offerings = -1\n')
    with pytest.raises(BadRequest, match="max_offerings"):
        BrokerConfig.load(tmp_path)


def test_security_profiles_default_to_the_ranks_the_patterns_know(tmp_path: Path) -> None:
    config = BrokerConfig(directory=tmp_path, url="https://b.example")
    config.save()

    assert config.security_profiles == ("base", "trust", "trust_plus")
    assert "security_profiles" not in (tmp_path / "broker.toml").read_text()


def test_security_profiles_round_trip_and_are_checked(tmp_path: Path) -> None:
    config = BrokerConfig(directory=tmp_path, url="https://b.example", security_profiles=("low", "high"))
    config.save()

    assert "security_profiles" in (tmp_path / "broker.toml").read_text()
    assert BrokerConfig.load(tmp_path).security_profiles == ("low", "high")
    for bad in ('"base"', "[]", '["base", "base"]', '["Base Level"]', "[1]"):
        (tmp_path / "broker.toml").write_text(f'url = "https://b.example"\nsecurity_profiles = {bad}\n')
        with pytest.raises(BadRequest, match="security_profiles"):
            BrokerConfig.load(tmp_path)


def test_participant_status_lifetime_is_a_positive_whole_number(tmp_path: Path) -> None:
    assert BrokerConfig(directory=tmp_path, url="https://b.example").participant_status_lifetime == 60
    (tmp_path / "broker.toml").write_text('url = "https://b.example"\nparticipant_status_lifetime = 0\n')
    with pytest.raises(BadRequest, match="participant_status_lifetime"):
        BrokerConfig.load(tmp_path)
