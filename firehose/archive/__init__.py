"""Archive stores chosen by URL scheme: ``s3://bucket/prefix``, ``az://container/prefix``, ``file:///dir``.

Backends are imported only when used, so a command that never touches S3 does not pay for ``import boto3``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from firehose.archive.base import AzureCredential, ObjectInfo, S3Credential, Store
from firehose.errors import UsageError
from firehose.secret import redact_url

SCHEMES = ("s3", "az", "file")
"""The URL schemes a store can be opened with."""

__all__ = ["SCHEMES", "AzureCredential", "ObjectInfo", "S3Credential", "Store", "StoreUrl", "open_store"]


@dataclass(frozen=True)
class StoreUrl:
    """A parsed store URL: scheme, bucket/container (or directory) and a key prefix."""

    scheme: str
    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str, name: str = "archive URL") -> StoreUrl:
        """``url`` parsed; a ``UsageError`` naming ``name`` (the flag or argument it came from) when it is no
        store URL. The URL is shown without user info or credential query values (an Azure SAS)."""
        shown = redact_url(url)
        try:
            parts = urlsplit(url)
        except ValueError as exc:  # an invalid IPv6 literal (s3://[): one usage error, not a traceback
            raise UsageError(f"{name} {shown!r} is not a URL: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in SCHEMES:
            supported = ", ".join(f"{s}://" for s in SCHEMES)
            raise UsageError(f"{name} {shown!r} is not supported: use one of {supported}")
        if scheme == "file":
            if parts.netloc not in ("", "localhost"):
                raise UsageError(f"{name} {shown!r}: file URLs take an absolute path (file:///dir)")
            path = unquote(parts.path)
            # file:rel/path and file:// (no path at all) are refused, not read against the working folder or
            # as "/": an empty path once walked the whole disk. The root folder itself is no archive either.
            if not path.startswith("/"):
                raise UsageError(f"{name} {shown!r}: file URLs take an absolute path (file:///dir)")
            if not path.strip("/"):
                raise UsageError(f"{name} {shown!r} names the root folder /: name the archive's folder")
            if "\0" in path:
                raise UsageError(f"{name} {shown!r} holds a NUL character")
            return cls(scheme, path.rstrip("/"), "")
        if not parts.netloc:
            raise UsageError(f"{name} {shown!r} names no bucket or container")
        return cls(scheme, parts.netloc, unquote(parts.path).lstrip("/"))


def open_store(
    url: str | StoreUrl,
    *,
    s3: S3Credential | None = None,
    azure: AzureCredential | None = None,
    page_size: int | None = None,
    sdk_reads: bool = False,
) -> Store:
    """Open the bucket, container or directory a URL names, with the credential for its service.

    ``page_size`` changes how many keys one listing request asks for (tests use small pages to cross pages).
    ``sdk_reads`` reads objects through boto3 or the Azure SDK instead of the lean read path.
    """
    where = url if isinstance(url, StoreUrl) else StoreUrl.parse(url)
    if where.scheme == "s3":
        from firehose.archive.s3 import S3Store

        return S3Store(where.bucket, s3 or S3Credential(), page_size=page_size or 1000, sdk_reads=sdk_reads)
    if where.scheme == "az":
        from firehose.archive.azure import AzureStore

        return AzureStore(where.bucket, azure or AzureCredential(), page_size=page_size or 5000, sdk_reads=sdk_reads)
    from firehose.archive.local import LocalStore

    return LocalStore(Path(where.bucket), page_size=page_size or 1000)
