"""The S3 backend: the only module that uses boto3 and botocore.

botocore errors are translated here, once, into ``ArchiveError`` subclasses that name the bucket and key.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import boto3
import botocore.config
import botocore.exceptions

from firehose.archive.base import ObjectInfo, S3Credential
from firehose.errors import ArchiveAccessDenied, ArchiveError, ArchiveNotFound

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_DENIED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled", "403"}
_MISSING = {"NoSuchBucket", "NoSuchKey", "404", "NotFound"}


def translate(exc: Exception, *, bucket: str, key: str | None = None) -> ArchiveError:
    """One botocore error as a firehose error naming the bucket (and key)."""
    where = f"s3://{bucket}/{key}" if key else f"s3://{bucket}"
    if isinstance(exc, botocore.exceptions.ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _DENIED:
            return ArchiveAccessDenied(f"{where}: access denied ({code}); check the credentials for this bucket")
        if code == "NoSuchBucket":
            return ArchiveNotFound(f"{where}: bucket {bucket} does not exist")
        if code in _MISSING:
            return ArchiveNotFound(f"{where}: no such key")
        message = exc.response.get("Error", {}).get("Message", "")
        return ArchiveError(f"{where}: {code} {message}".rstrip())
    if isinstance(exc, botocore.exceptions.EndpointConnectionError):
        return ArchiveError(f"{where}: cannot reach the S3 endpoint {exc.kwargs.get('endpoint_url', '')}".rstrip())
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return ArchiveAccessDenied(f"{where}: no AWS credentials found (map this bucket's credential in the config)")
    return ArchiveError(f"{where}: {type(exc).__name__}: {exc}")


_ERRORS = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)


def make_client(credential: S3Credential, *, max_pool_connections: int = 16) -> S3Client:
    """A boto3 S3 client; path-style addressing when an endpoint is given (S3-compatible servers)."""
    session = boto3.session.Session(profile_name=credential.profile) if credential.profile else boto3.session.Session()
    config = botocore.config.Config(
        max_pool_connections=max_pool_connections,
        retries={"mode": "standard", "max_attempts": 5},
        s3={"addressing_style": "path"} if credential.endpoint_url else {},
    )
    kwargs: dict[str, Any] = {"config": config}
    if credential.endpoint_url:
        kwargs["endpoint_url"] = credential.endpoint_url
    if credential.region:
        kwargs["region_name"] = credential.region
    if credential.access_key_id:
        kwargs["aws_access_key_id"] = credential.access_key_id
    if credential.secret_access_key:
        kwargs["aws_secret_access_key"] = credential.secret_access_key.reveal()
    client: S3Client = session.client("s3", **kwargs)
    return client


class S3Store:
    """One S3 bucket."""

    def __init__(self, bucket: str, credential: S3Credential, *, client: S3Client | None = None) -> None:
        self.bucket = bucket
        self.url = f"s3://{bucket}"
        self._client = client or make_client(credential)

    def __repr__(self) -> str:
        return f"S3Store({self.url!r})"

    def list(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if start_after:
            kwargs["StartAfter"] = start_after
        try:
            for page in self._client.get_paginator("list_objects_v2").paginate(**kwargs):
                for item in page.get("Contents", []):
                    yield ObjectInfo(
                        key=item["Key"],
                        size=item["Size"],
                        etag=item["ETag"].strip('"'),
                        last_modified=item["LastModified"],
                    )
        except _ERRORS as exc:
            raise translate(exc, bucket=self.bucket) from exc

    def read(self, key: str) -> bytes:
        try:
            return self._client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except _ERRORS as exc:
            raise translate(exc, bucket=self.bucket, key=key) from exc

    def head(self, key: str) -> ObjectInfo | None:
        try:
            head = self._client.head_object(Bucket=self.bucket, Key=key)
        except botocore.exceptions.ClientError as exc:
            error = translate(exc, bucket=self.bucket, key=key)
            if isinstance(error, ArchiveNotFound) and "no such key" in str(error):
                return None
            raise error from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise translate(exc, bucket=self.bucket, key=key) from exc
        return ObjectInfo(
            key=key, size=head["ContentLength"], etag=head["ETag"].strip('"'), last_modified=head["LastModified"]
        )

    def write(self, key: str, data: bytes, *, if_absent: bool = True, content_type: str = "application/json") -> bool:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key, "Body": data, "ContentType": content_type}
        if if_absent:
            kwargs["IfNoneMatch"] = "*"  # S3 conditional write: refused with 412 if the key exists
        try:
            self._client.put_object(**kwargs)
        except botocore.exceptions.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if if_absent and code in {"PreconditionFailed", "412", "ConditionalRequestConflict"}:
                return False
            raise translate(exc, bucket=self.bucket, key=key) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise translate(exc, bucket=self.bucket, key=key) from exc
        return True

    def create(self) -> None:
        try:
            self._client.create_bucket(Bucket=self.bucket)
        except botocore.exceptions.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                return
            raise translate(exc, bucket=self.bucket) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise translate(exc, bucket=self.bucket) from exc

    def close(self) -> None:
        self._client.close()
