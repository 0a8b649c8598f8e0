from __future__ import annotations

from pathlib import Path

import pytest

from firehose.config import load_settings
from firehose.errors import ConfigError

CONFIG = """
[credentials."5fd4371e940df5a34a3888b2"]
service = "aws"
endpoint_url = "http://127.0.0.1:8333"
region = "us-east-1"
access_key_id_env = "ARCHIVE_KEY_ID"
secret_access_key_env = "ARCHIVE_SECRET"

[credentials."5fd4371e940df5a34a3888b3"]
service = "azure"
connection_string_env = "ARCHIVE_AZURE"

[credentials.default.aws]
profile = "archive-reader"
"""
ENV = {
    "ARCHIVE_KEY_ID": "AKIAEXAMPLE",
    "ARCHIVE_SECRET": "very-secret-value",
    "ARCHIVE_AZURE": "DefaultEndpoints=x;AccountKey=zzz",
}


def settings(tmp_path: Path, text: str = CONFIG, env: dict | None = None, **overrides: str):
    path = tmp_path / "firehose.toml"
    path.write_text(text)
    return load_settings(config_file=path, env=ENV if env is None else env, overrides=overrides)


def test_mapped_ids_resolve_with_secrets_from_named_variables(tmp_path: Path) -> None:
    credentials = settings(tmp_path).credentials
    s3 = credentials.s3("5fd4371e940df5a34a3888b2")
    assert s3.endpoint_url == "http://127.0.0.1:8333" and s3.access_key_id == "AKIAEXAMPLE"
    assert s3.secret_access_key is not None and s3.secret_access_key.reveal() == "very-secret-value"
    assert "very-secret-value" not in repr(credentials) and "AccountKey=zzz" not in repr(credentials)
    assert credentials.azure_for("5fd4371e940df5a34a3888b3").connection_string is not None


def test_unlisted_ids_use_the_default_then_the_sdk_chain(tmp_path: Path) -> None:
    credentials = settings(tmp_path).credentials
    assert credentials.s3("000000000000000000000000").profile == "archive-reader"
    assert settings(tmp_path, "").credentials.s3("x").profile is None  # nothing mapped: boto3's own chain


def test_an_unmapped_azure_id_names_the_section_to_add(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r'credential_id 6ae1\w+: add \[credentials\."6ae1\w+"\] with service = "azure"'
    ):
        settings(tmp_path).credentials.azure_for("6ae18ae9a55055783f30ae4b")


def test_flags_and_environment_override_the_mapping(tmp_path: Path) -> None:
    env = {**ENV, "FIREHOSE_S3_REGION": "eu-west-1"}
    credentials = settings(tmp_path, env=env, endpoint_url="http://other:9000").credentials
    s3 = credentials.s3("5fd4371e940df5a34a3888b2")
    assert s3.endpoint_url == "http://other:9000" and s3.region == "eu-west-1"
    env = {**ENV, "FIREHOSE_AZURE_CONNECTION_STRING": "DefaultEndpointsProtocol=http;AccountName=a"}
    assert settings(tmp_path, "", env=env).credentials.azure_for("anything").connection_string is not None


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ('[credentials.a]\nservice = "gcs"\n', {}, 'needs service = "aws" or "azure"'),
        ('[credentials.a]\nservice = "aws"\nsecret_access_key_env = "NOPE"\n', {}, "names NOPE, which is not set"),
        ('[credentials.a]\nservice = "aws"\nconnection_string = "x"\n', {}, "unknown setting 'connection_string'"),
        ('[credentials.a]\nservice = "azure"\nconnection_string = "x"\n', {}, "is for azure, but an S3 bucket"),
    ],
)
def test_bad_credential_entries_name_the_section(tmp_path: Path, text: str, env: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings(tmp_path, text, env=env).credentials.s3("a")


def test_an_unset_secret_variable_matters_only_to_its_credential(tmp_path: Path) -> None:
    text = CONFIG.replace('secret_access_key_env = "ARCHIVE_SECRET"', 'secret_access_key_env = "UNSET_SECRET"')
    loaded = settings(tmp_path, text)  # loading succeeds: `firehose events` needs no archive secret
    assert loaded.credentials.azure_for("5fd4371e940df5a34a3888b3").connection_string is not None
    with pytest.raises(
        ConfigError,
        match=r'\[credentials."5fd4371e940df5a34a3888b2"\].secret_access_key_env names '
        r"UNSET_SECRET, which is not set",
    ):
        loaded.credentials.s3("5fd4371e940df5a34a3888b2")


def test_the_azure_sdks_own_variable_serves_where_nothing_is_mapped(tmp_path: Path) -> None:
    """`localstack/stack env` exports AZURE_STORAGE_CONNECTION_STRING, the Azure SDK's variable: a new user's
    first archive command failed asking for FIREHOSE_AZURE_CONNECTION_STRING."""
    sdk = {**ENV, "AZURE_STORAGE_CONNECTION_STRING": "DefaultEndpoints=sdk;AccountKey=sdk"}
    credentials = settings(tmp_path, env=sdk).credentials
    unmapped = credentials.azure_for("6fd4371e940df5a34a3888b9").connection_string
    assert unmapped is not None and unmapped.reveal() == "DefaultEndpoints=sdk;AccountKey=sdk"
    mapped = credentials.azure_for("5fd4371e940df5a34a3888b3").connection_string
    assert mapped is not None and mapped.reveal() == ENV["ARCHIVE_AZURE"], "a mapping wins over the SDK's variable"
    ours = {**sdk, "FIREHOSE_AZURE_CONNECTION_STRING": "DefaultEndpoints=ours;AccountKey=ours"}
    chosen = settings(tmp_path, env=ours).credentials.azure_for("6fd4371e940df5a34a3888b9").connection_string
    assert chosen is not None and chosen.reveal() == "DefaultEndpoints=ours;AccountKey=ours"
    with pytest.raises(ConfigError, match="AZURE_STORAGE_CONNECTION_STRING"):
        settings(tmp_path, env=ENV).credentials.azure_for("6fd4371e940df5a34a3888b9")


def test_an_account_url_flag_beats_a_connection_string_from_below(tmp_path: Path) -> None:
    """--account-url (or FIREHOSE_AZURE_ACCOUNT_URL) lost to AZURE_STORAGE_CONNECTION_STRING: a connection
    string wins where both are set, so requests went to the SDK variable's account."""
    sdk = {**ENV, "AZURE_STORAGE_CONNECTION_STRING": "BlobEndpoint=http://elsewhere;AccountKey=k"}
    chosen = settings(tmp_path, env=sdk, account_url="https://prod.blob.core.windows.net").credentials.azure_for(
        "6fd4371e940df5a34a3888b9"
    )
    assert chosen.account_url == "https://prod.blob.core.windows.net" and chosen.connection_string is None
    mapped = settings(tmp_path, account_url="https://prod.blob.core.windows.net").credentials.azure_for(
        "5fd4371e940df5a34a3888b3"
    )
    assert mapped.account_url == "https://prod.blob.core.windows.net" and mapped.connection_string is None
