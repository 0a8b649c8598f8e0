from __future__ import annotations

from pathlib import Path

import pytest

from firehose.config import DEFAULT_LEADCONDUIT_URL, config_path, load_settings
from firehose.errors import ConfigError, UsageError
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
        ("[leadconduit]\nmax_attempts = 0\n", r"max_attempts in \[leadconduit\] of .*c.toml must be from 1 to 100"),
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


# Issue 11, items 14 and 15: a config file that is wrong in any way is one ConfigError naming the file and what.
@pytest.mark.parametrize(
    ("content", "message"),
    [
        (bytes(range(256)), "not valid TOML: not UTF-8 text"),
        (b"a = " + b"[" * 3000 + b"]" * 3000, "not valid TOML: nested too deeply"),
        (b'[leadconduit]\nurll = "https://x.example"\n', "unknown setting 'urll' in \\[leadconduit\\]"),
        (b"[leadconduitt]\n", "unknown section or setting 'leadconduitt'"),
        (b"timeout_seconds = 5\n", "unknown section or setting 'timeout_seconds'"),
        (b"[leadconduit]\ntimeout_seconds = nan\n", "timeout_seconds in \\[leadconduit\\].* must be from"),
        (b"[leadconduit]\ntimeout_seconds = inf\n", "timeout_seconds in \\[leadconduit\\].* must be from"),
        (b"[leadconduit]\nmax_attempts = 1000000000\n", "max_attempts in .* must be from 1 to 100"),
        (b"[leadconduit]\nmax_attempts = true\n", "max_attempts in .* must be a number"),
        (b"[leadconduit]\nbackoff_max_seconds = 1e400\n", "backoff_max_seconds in .* must be from"),
        (b'[leadconduit]\nurl = "http://"\n', "names no host"),
        (b'[leadconduit]\nurl = "http://[::1"\n', "is not a URL"),
        (b'[leadconduit]\nurl = "http://h:99999"\n', "is not a URL"),
    ],
)
def test_a_broken_config_file_is_a_config_error_naming_it(tmp_path: Path, content: bytes, message: str) -> None:
    config = tmp_path / "firehose.toml"
    config.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as raised:
        load_settings(config_file=config, env={})
    assert str(config) in str(raised.value) or "[leadconduit]" in str(raised.value)


def test_a_bad_url_flag_is_a_usage_error_and_a_bad_variable_a_config_error() -> None:
    for url in ("http://", "http://[::1", "https://[zz]/", "ftp://x", "http://a b"):
        with pytest.raises(UsageError, match="--url"):
            load_settings(config_file=None, env={}, overrides={"url": url})
        with pytest.raises(ConfigError, match="LEADCONDUIT_URL"):
            load_settings(config_file=None, env={"LEADCONDUIT_URL": url})


def test_a_missing_key_names_the_variable_the_config_names(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[leadconduit]\napi_key_env = "X_KEY"\n')
    settings = load_settings(config_file=config, env={"LEADCONDUIT_API_KEY": "other"})
    with pytest.raises(ConfigError, match=r"X_KEY .*is not set") as raised:
        settings.api.require_key()
    assert "LEADCONDUIT_API_KEY" not in str(raised.value)


def test_nan_and_inf_in_the_environment_are_refused() -> None:
    for value in ("nan", "inf", "-1", "1e400"):
        with pytest.raises(ConfigError, match="FIREHOSE_LEADCONDUIT_TIMEOUT_SECONDS"):
            load_settings(config_file=None, env={"FIREHOSE_LEADCONDUIT_TIMEOUT_SECONDS": value})
