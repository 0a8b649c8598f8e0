"""The local stack (localstack/stack) behaves like the real services where it matters to us."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import boto3
import botocore.config
import botocore.exceptions
import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient

from tests.conftest import AZURE_CONNECTION_STRING, AZURE_PORT, S3_ENDPOINT

pytestmark = pytest.mark.usefixtures("stack")
STACK = Path(__file__).resolve().parents[2] / "localstack" / "stack"


def s3(key: str = "test", secret: str = "test"):
    return boto3.client(
        "s3",
        endpoint_url=S3_ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=botocore.config.Config(retries={"max_attempts": 1}),
    )


def stack(*args: str, run_dir: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if run_dir is not None:
        env["FIREHOSE_STACK_DIR"] = str(run_dir)
    return subprocess.run([str(STACK), *args], capture_output=True, text=True, env=env, timeout=120, check=False)


@pytest.mark.parametrize(
    ("key", "secret", "code"), [("test", "wrong", "SignatureDoesNotMatch"), ("nobody", "test", "InvalidAccessKeyId")]
)
def test_s3_checks_signatures(key: str, secret: str, code: str) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        s3(key, secret).list_buckets()
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert caught.value.response["Error"]["Code"] == code


def test_s3_does_not_create_buckets_silently() -> None:
    bucket = f"missing-{uuid.uuid4().hex[:10]}"
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        s3().put_object(Bucket=bucket, Key="a.json", Body=b"{}")
    assert caught.value.response["Error"]["Code"] == "NoSuchBucket"
    assert bucket not in [b["Name"] for b in s3().list_buckets()["Buckets"]]


def test_azure_checks_the_account_key() -> None:
    wrong = AZURE_CONNECTION_STRING.replace("Eby8vdM02", "AAAAAAAAA")
    with pytest.raises(HttpResponseError) as caught:
        list(BlobServiceClient.from_connection_string(wrong).list_containers())
    assert caught.value.status_code == 403


def test_start_twice_says_already_running_and_status_names_pids() -> None:
    again = stack("start")
    assert again.returncode == 0
    assert "SeaweedFS already running (pid " in again.stdout and "Azurite already running (pid " in again.stdout
    status = stack("status")
    assert status.returncode == 0 and "SeaweedFS running (pid" in status.stdout


def test_a_port_in_use_is_named(tmp_path: Path) -> None:
    # Another run directory has no record of the running servers, so their ports count as someone else's.
    result = stack("start", run_dir=tmp_path)
    assert result.returncode == 1
    assert "port 8333 is already in use by another process" in result.stderr or "already in use" in result.stderr
    assert not (tmp_path / "seaweedfs.pid").exists()


def test_stop_when_not_running_is_a_clear_message(tmp_path: Path) -> None:
    result = stack("stop", run_dir=tmp_path)
    assert result.returncode == 0
    assert "seaweedfs is not running" in result.stdout and "azurite is not running" in result.stdout
    (tmp_path / "seaweedfs.pid").write_text("1\n")  # pid 1 is not SeaweedFS: it must not be signalled
    result = stack("stop", run_dir=tmp_path)
    assert "seaweedfs is not running" in result.stdout


def test_env_prints_what_clients_need() -> None:
    out = stack("env").stdout
    assert f"FIREHOSE_TEST_S3_ENDPOINT={S3_ENDPOINT}" in out
    assert f"BlobEndpoint=http://127.0.0.1:{AZURE_PORT}/devstoreaccount1" in out


def test_the_stack_script_answers_help_with_its_commands_and_exit_0() -> None:
    shown = subprocess.run([str(STACK), "--help"], capture_output=True, text=True, timeout=30)
    assert shown.returncode == 0 and "localstack/stack start" in shown.stdout, shown
    wrong = subprocess.run([str(STACK), "strat"], capture_output=True, text=True, timeout=30)
    assert wrong.returncode == 2 and "usage:" in wrong.stderr
