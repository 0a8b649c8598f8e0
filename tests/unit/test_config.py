from __future__ import annotations

from pathlib import Path

import pytest

from firehose.config import DEFAULT_LEADCONDUIT_URL, config_path, load_settings
from firehose.errors import ConfigError
from firehose.secret import Secret


def test_defaults() -> None:
    settings = load_settings(config_file=None, env={})
    assert settings.api.url == DEFAULT_LEADCONDUIT_URL and settings.api.api_key is None
    with pytest.raises(ConfigError, match="LEADCONDUIT_API_KEY"):
        settings.api.require_key()


def test_flag_beats_env_beats_file(tmp_path: Path) -> None:
    config = tmp_path / "firehose.toml"
    config.write_text('[leadconduit]\nurl = "https://file.example"\nmax_attempts = 2\n')
    env = {"LEADCONDUIT_URL": "https://env.example", "LEADCONDUIT_API_KEY": "k"}
    assert load_settings(config_file=config, env={}).api.url == "https://file.example"
    assert load_settings(config_file=config, env=env).api.url == "https://env.example"
    assert load_settings(config_file=config, env=env, overrides={"url": "https://flag.example"}).api.url == (
        "https://flag.example"
    )
    assert load_settings(config_file=config, env=env).api.max_attempts == 2


def test_key_from_a_named_variable_and_hidden_in_repr(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[leadconduit]\napi_key_env = "MY_KEY"\n')
    settings = load_settings(config_file=config, env={"MY_KEY": "s3cr3t-value"})
    assert settings.api.require_key().reveal() == "s3cr3t-value"
    assert "s3cr3t" not in repr(settings) and "s3cr3t" not in str(settings.api.api_key)
    assert f"{Secret('x')}" == "Secret('***')"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[leadconduit\n", "not valid TOML"),
        ('[leadconduit]\nurl = "ftp://x"\n', "must start with http"),
        ("[leadconduit]\nmax_attempts = 0\n", "max_attempts must be at least 1"),
        ("leadconduit = 3\n", "must be a table"),
    ],
)
def test_bad_config_names_the_file_or_value(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "c.toml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(config_file=config, env={})


def test_config_path_precedence(tmp_path: Path) -> None:
    assert config_path(None, {}, tmp_path) is None
    (tmp_path / "firehose.toml").write_text("")
    assert config_path(None, {}, tmp_path) == tmp_path / "firehose.toml"
    assert config_path(None, {"FIREHOSE_CONFIG": "/x.toml"}, tmp_path) == Path("/x.toml")
    assert config_path("/y.toml", {"FIREHOSE_CONFIG": "/x.toml"}, tmp_path) == Path("/y.toml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(config_file=tmp_path / "nope.toml", env={})
