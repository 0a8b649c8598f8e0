"""The Azure Blob backend: the only module that uses azure-storage-blob and azure-core.

azure errors are translated here, once, into ``ArchiveError`` subclasses that name the container and blob.
"""

from __future__ import annotations

from collections.abc import Iterator

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
)
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings

from firehose.archive.base import AzureCredential, ObjectInfo
from firehose.errors import ArchiveAccessDenied, ArchiveError, ArchiveNotFound


def translate(exc: Exception, *, container: str, key: str | None = None) -> ArchiveError:
    """One azure error as a firehose error naming the container (and blob)."""
    where = f"az://{container}/{key}" if key else f"az://{container}"
    if isinstance(exc, ResourceNotFoundError):
        code = getattr(exc, "error_code", None) or ""
        if "Container" in str(code):
            return ArchiveNotFound(f"{where}: container {container} does not exist")
        return ArchiveNotFound(f"{where}: no such blob")
    if isinstance(exc, ClientAuthenticationError) or (isinstance(exc, HttpResponseError) and exc.status_code == 403):
        return ArchiveAccessDenied(f"{where}: access denied (HTTP 403); check the credentials for this container")
    if isinstance(exc, ServiceRequestError):
        return ArchiveError(f"{where}: cannot reach the Azure Blob endpoint")
    if isinstance(exc, HttpResponseError):
        return ArchiveError(f"{where}: HTTP {exc.status_code} {getattr(exc, 'error_code', '') or ''}".rstrip())
    return ArchiveError(f"{where}: {type(exc).__name__}")


def make_service(credential: AzureCredential) -> BlobServiceClient:
    """A BlobServiceClient from a connection string, an account URL (+SAS), or the default credential."""
    if credential.connection_string:
        return BlobServiceClient.from_connection_string(credential.connection_string.reveal())
    if not credential.account_url:
        raise ArchiveError("Azure: no connection string and no account URL; map this credential in the config")
    if credential.sas_token:
        return BlobServiceClient(account_url=credential.account_url, credential=credential.sas_token.reveal())
    from azure.identity import DefaultAzureCredential  # optional: only for users of the default chain

    return BlobServiceClient(account_url=credential.account_url, credential=DefaultAzureCredential())


class AzureStore:
    """One Azure Blob container."""

    def __init__(
        self, container: str, credential: AzureCredential, *, service: BlobServiceClient | None = None
    ) -> None:
        self.container = container
        self.url = f"az://{container}"
        self._service = service or make_service(credential)
        self._client: ContainerClient = self._service.get_container_client(container)

    def __repr__(self) -> str:
        return f"AzureStore({self.url!r})"

    def list(self, prefix: str = "", *, start_after: str | None = None) -> Iterator[ObjectInfo]:
        try:
            for blob in self._client.list_blobs(name_starts_with=prefix or None):
                if start_after is not None and blob.name <= start_after:
                    continue
                yield ObjectInfo(
                    key=blob.name, size=blob.size, etag=str(blob.etag).strip('"'), last_modified=blob.last_modified
                )
        except AzureError as exc:
            raise translate(exc, container=self.container) from exc

    def read(self, key: str) -> bytes:
        try:
            # decompress=False: the stored bytes as they are, even when Content-Encoding is gzip.
            return self._client.download_blob(key, decompress=False).readall()
        except AzureError as exc:
            raise translate(exc, container=self.container, key=key) from exc

    def head(self, key: str) -> ObjectInfo | None:
        try:
            props = self._client.get_blob_client(key).get_blob_properties()
        except ResourceNotFoundError as exc:
            error = translate(exc, container=self.container, key=key)
            if "no such blob" in str(error):
                return None
            raise error from exc
        except AzureError as exc:
            raise translate(exc, container=self.container, key=key) from exc
        return ObjectInfo(key=key, size=props.size, etag=str(props.etag).strip('"'), last_modified=props.last_modified)

    def write(self, key: str, data: bytes, *, if_absent: bool = True, content_type: str = "application/json") -> bool:
        settings = ContentSettings(content_type=content_type)
        try:
            if if_absent:
                # If-None-Match: * ; do not also pass etag="*" (the SDK then fails, local-servers.md §1).
                self._client.upload_blob(
                    key, data, content_settings=settings, match_condition=MatchConditions.IfMissing
                )
            else:
                self._client.upload_blob(key, data, content_settings=settings, overwrite=True)
        except ResourceExistsError:
            return False
        except HttpResponseError as exc:
            if if_absent and exc.status_code in (409, 412):
                return False
            raise translate(exc, container=self.container, key=key) from exc
        except AzureError as exc:
            raise translate(exc, container=self.container, key=key) from exc
        return True

    def create(self) -> None:
        try:
            self._client.create_container()
        except ResourceExistsError:
            return
        except AzureError as exc:
            raise translate(exc, container=self.container) from exc

    def close(self) -> None:
        self._client.close()
        self._service.close()
