"""The Azure Blob backend: the only module that uses azure-storage-blob and azure-core.

azure errors are translated here, once, into ``ArchiveError`` subclasses that name the container and blob.

The SDK is imported and its clients made on first use, not with the module: a store whose credential is an
account key or a SAS token lists and reads through the lean path (below) and may never need it, and importing it
costs about 0.2 s of a command's start-up (``python -X importtime``), time in which a store waits for nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import formatdate, parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

from firehose.archive.base import (
    AzureCredential,
    ObjectInfo,
    Once,
    PageWalk,
    RequestCount,
    RetentionSettings,
    request_prefix,
)
from firehose.errors import ArchiveAccessDenied, ArchiveError, ArchiveNotFound, ConfigError
from firehose.http import Answer, ObjectGetter
from firehose.secret import redact_url

if TYPE_CHECKING:
    from azure.storage.blob import BlobServiceClient, ContainerClient

LEAN_API_VERSION = "2026-02-06"
"""The Blob service version the lean path asks for: the first that takes List Blobs' ``startFrom`` (a window's
listing starts at its first key with it; an older version would make a real store list the prefix from its
start), and a version the SDK itself knows (a test checks it is in the SDK's list)."""


def translate(exc: Exception, *, container: str, key: str | None = None) -> ArchiveError:
    """One azure error as a firehose error naming the container (and blob)."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
    )

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


# _LEAN_LISTING_NOTE: the SDK spends about 155 µs of CPU per blob deserialising List Blobs answers, more than
# the server takes to send them. So listing sends a raw request (the lean path's, or with a token credential the
# container client's own pipeline through ``_send_request``, the generated client's documented way to send one)
# and reads the few fields firehose needs from the XML itself.
_BLOB = re.compile(rb"<Blob>(.*?)</Blob>", re.S)
_NAME = re.compile(rb"<Name>(.*?)</Name>", re.S)
_LAST_MODIFIED = re.compile(rb"<Last-Modified>(.*?)</Last-Modified>")
_ETAG = re.compile(rb"<Etag>(.*?)</Etag>")
_LENGTH = re.compile(rb"<Content-Length>(\d+)</Content-Length>")
_NEXT_MARKER = re.compile(rb"<NextMarker>(.*?)</NextMarker>", re.S)
_MONTHS = {
    m: i
    for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)
}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _text(raw: bytes) -> str:
    text = raw.decode("utf-8")
    return html.unescape(text) if "&" in text else text


def _http_date(raw: bytes) -> datetime:
    """``Fri, 27 Nov 2026 11:31:50 GMT`` (RFC 1123, always this shape in Blob listings), quickly."""
    text = raw.decode()
    try:
        return datetime(
            int(text[12:16]),
            _MONTHS[text[8:11]],
            int(text[5:7]),
            int(text[17:19]),
            int(text[20:22]),
            int(text[23:25]),
            tzinfo=UTC,
        )
    except (KeyError, ValueError):
        return parsedate_to_datetime(text)


ListingPage = tuple[list[ObjectInfo], str | None]
"""One List Blobs answer: its blobs and the next marker."""


def parse_listing(body: bytes, end_at: str | None = None) -> ListingPage:
    """The blobs of one List Blobs answer and its next marker (None on the last page). With ``end_at``, the blobs
    up to the first one past it (which ends the listing), and no marker: a range that ends inside a page of 5,000
    names (a slice's, an upper-case id range) does not pay for reading the rest of it."""
    items = []
    for match in _BLOB.finditer(body):
        chunk = match.group(1)
        name = _NAME.search(chunk)
        if name is None:
            continue
        key = _text(name.group(1))
        modified, etag, length = _LAST_MODIFIED.search(chunk), _ETAG.search(chunk), _LENGTH.search(chunk)
        items.append(
            ObjectInfo(
                key=key,
                size=int(length.group(1)) if length else 0,
                etag=_text(etag.group(1)).strip('"') if etag else "",
                last_modified=_http_date(modified.group(1)) if modified else _EPOCH,
            )
        )
        if end_at is not None and key > end_at:
            return items, None  # the range ends in this page
    marker = _NEXT_MARKER.search(body)
    return items, (_text(marker.group(1)) or None) if marker else None


def make_service(credential: AzureCredential) -> BlobServiceClient:
    """A BlobServiceClient from a connection string, an account URL (+SAS), or the default credential."""
    from azure.storage.blob import BlobServiceClient

    # The SDK's default retry waits 15 s, then 18 s, then 24 s, and retries a refused connection three times: over
    # a minute before an unreachable endpoint is reported. Shorter waits keep retries for throttling and
    # hiccups; one retry of a failed connection is enough to ride out a blip.
    options: dict[str, Any] = {
        "retry_total": 3,
        "retry_connect": 1,
        "initial_backoff": 1,
        "increment_base": 2,
        "connection_timeout": 10,
    }
    if credential.connection_string:
        return BlobServiceClient.from_connection_string(credential.connection_string.reveal(), **options)
    # Both are configuration (exit 3), not a store that failed; the account URL may carry a SAS: redacted.
    if not credential.account_url:
        raise ConfigError("Azure: no connection string and no account URL; map this credential in the config")
    if credential.sas_token:
        return BlobServiceClient(
            account_url=credential.account_url, credential=credential.sas_token.reveal(), **options
        )
    try:
        from azure.identity import DefaultAzureCredential  # optional: only for users of the default chain
    except ImportError as exc:
        raise ConfigError(
            f"{redact_url(credential.account_url)}: the Azure default credential needs azure-identity"
            " (pip install 'firehose[azure-identity]'); or map a connection string or SAS token for this credential"
        ) from exc

    return BlobServiceClient(account_url=credential.account_url, credential=DefaultAzureCredential(), **options)


# -- the lean read path -------------------------------------------------------------------------------------
# A download through the SDK costs about 1 ms of CPU or more (its pipeline of policies and its downloader), more
# than the blob's transfer. Reads go instead through ``ObjectGetter`` (http.client, a keep-alive connection per
# thread), authorised here: Shared Key when the connection string holds the account key, the SAS token's query
# otherwise. A token credential (the Azure default chain) stays on the SDK's path, which knows how to get one.


def connection_fields(connection_string: str) -> dict[str, str]:
    """``Name=value;`` pairs of a connection string (values may hold ``=``: base64 keys, SAS tokens)."""
    fields = {}
    for part in connection_string.split(";"):
        name, _, value = part.partition("=")
        if name.strip():
            fields[name.strip()] = value.strip()
    return fields


class SharedKey:
    """Shared Key authorisation of Blob GET requests:
    https://learn.microsoft.com/rest/api/storageservices/authorize-with-shared-key (the 2009-09-19+ form)."""

    def __init__(self, account: str, key: str, version: str) -> None:
        self.account = account
        self._key = base64.b64decode(key)
        self._version = version

    def headers(self, path: str, query: dict[str, str], *, now: float | None = None) -> list[tuple[str, str]]:
        """Headers that authorise ``GET path?query``; ``path`` URI-encoded as sent, ``query`` not encoded."""
        date = formatdate(now, usegmt=True)
        resource = f"/{self.account}{path}" + "".join(
            f"\n{name.lower()}:{query[name]}" for name in sorted(query, key=str.lower)
        )
        to_sign = f"GET\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{self._version}\n{resource}"
        signature = base64.b64encode(hmac.new(self._key, to_sign.encode(), hashlib.sha256).digest()).decode()
        return [
            ("x-ms-date", date),
            ("x-ms-version", self._version),
            ("Authorization", f"SharedKey {self.account}:{signature}"),
        ]


class LeanReads:
    """Authorised GETs of one container's blobs, and its List Blobs requests, through ``ObjectGetter``."""

    def __init__(self, container_url: str, version: str, shared_key: SharedKey | None) -> None:
        parts = urlsplit(container_url)
        self.url, self.shared_key = container_url, shared_key
        self._getter = ObjectGetter(f"{parts.scheme}://{parts.netloc}")
        self._host, self._base, self._sas = parts.netloc, parts.path.rstrip("/") + "/", parts.query
        self._version = version
        self._shared_key = shared_key

    def get(self, container: str, key: str, version_id: str | None = None) -> Answer:
        query = {"versionid": version_id} if version_id else {}
        return self._send(self._base + quote(key, safe="/~"), query, f"az://{container}/{key}")

    def list_page(self, container: str, query: dict[str, str]) -> Answer:
        """One List Blobs request; ``query`` its parameters, not encoded."""
        return self._send(self._base.rstrip("/"), query, f"az://{container}")

    def _send(self, path: str, query: dict[str, str], where: str) -> Answer:
        """GET ``path`` (URI-encoded) with ``query`` (not encoded) and the SAS token's, authorised."""
        pairs = [self._sas] if self._sas else []
        if query:
            pairs.append(urlencode(query, quote_via=quote))
        target = path + ("?" + "&".join(pairs) if pairs else "")
        shared_key = self._shared_key

        def headers() -> list[tuple[str, str]]:
            signed = shared_key.headers(path, query) if shared_key else [("x-ms-version", self._version)]
            return [("Host", self._host), *signed]

        return self._getter.get(target, headers, where=where)

    def close(self) -> None:
        self._getter.close()


def answer_error(status: int, code: str, *, container: str, key: str | None = None) -> ArchiveError:
    """The error of a raw request that did not answer 200 (its status and ``x-ms-error-code``), a blob's GET or,
    without ``key``, the container's List Blobs, as ``translate`` words the SDK's."""
    where = f"az://{container}/{key}" if key else f"az://{container}"
    if status == 404:
        if key is None or "Container" in code:
            return ArchiveNotFound(f"{where}: container {container} does not exist")
        return ArchiveNotFound(f"{where}: no such blob")
    if status in (401, 403):
        return ArchiveAccessDenied(f"{where}: access denied (HTTP {status}); check the credentials for this container")
    return ArchiveError(f"{where}: HTTP {status} {code}".rstrip())


def blob_endpoint(fields: dict[str, str]) -> str | None:
    """The blob service URL a connection string names (its fields, names upper-cased), as the SDK reads it
    (``parse_connection_str``): ``BlobEndpoint``, else the account's host under ``EndpointSuffix``."""
    if "BLOBENDPOINT" in fields:
        return fields["BLOBENDPOINT"]
    account = fields.get("ACCOUNTNAME")
    if not account:
        return None
    if "DEFAULTENDPOINTSPROTOCOL" in fields and "ENDPOINTSUFFIX" in fields:
        return f"{fields['DEFAULTENDPOINTSPROTOCOL']}://{account}.blob.{fields['ENDPOINTSUFFIX']}"
    return f"https://{account}.blob.{fields.get('ENDPOINTSUFFIX', 'core.windows.net')}"


def container_url(endpoint: str, container: str, sas: str = "") -> str:
    """A container's URL under a blob service URL, with a SAS token's query (as the SDK's ``ContainerClient.url``)."""
    parts = urlsplit(endpoint)
    query = sas.lstrip("?") or parts.query
    base = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}/{quote(container)}"
    return f"{base}?{query}" if query else base


def lean_reads_for(container: str, credential: AzureCredential) -> LeanReads | None:
    """The lean path for a container, when its credential is an account key or a SAS token (a connection
    string's, or beside an account URL); None where only the SDK knows how (a token credential, the emulator's
    ``UseDevelopmentStorage=true``, a key that is not base64 or a string the SDK would refuse: its own errors)."""
    if credential.connection_string:
        text = credential.connection_string.reveal().rstrip(";")
        if any("=" not in part for part in text.split(";")):
            return None  # malformed: the SDK's refusal, at once
        fields = {name.upper(): value for name, value in connection_fields(text).items()}
        if fields.get("USEDEVELOPMENTSTORAGE", "").lower() == "true" or "BLOBSECONDARYENDPOINT" in fields:
            return None
        endpoint = blob_endpoint(fields)
        account, key, sas = fields.get("ACCOUNTNAME"), fields.get("ACCOUNTKEY"), fields.get("SHAREDACCESSSIGNATURE")
        if endpoint is None or not urlsplit(endpoint).netloc:
            return None
        if account and key:
            try:
                shared_key = SharedKey(account, key, LEAN_API_VERSION)
            except (binascii.Error, ValueError):
                return None
            return LeanReads(container_url(endpoint, container), LEAN_API_VERSION, shared_key)
        if sas:
            return LeanReads(container_url(endpoint, container, sas), LEAN_API_VERSION, None)
        return None
    url = credential.account_url
    if url and urlsplit(url).netloc and credential.sas_token:
        return LeanReads(container_url(url, container, credential.sas_token.reveal()), LEAN_API_VERSION, None)
    return None  # an account URL alone: the Azure default credential, which only the SDK can get


def _info_of(key: str, answer: Answer) -> ObjectInfo:
    """What a GET's headers tell about the blob (as the SDK's download properties would)."""
    headers = answer.headers
    modified = headers.get("last-modified")
    until = headers.get("x-ms-immutability-policy-until-date")
    return ObjectInfo(
        key=key,
        size=len(answer.body),
        etag=str(headers.get("etag", "")).strip('"'),
        last_modified=parsedate_to_datetime(modified) if modified else datetime(1970, 1, 1, tzinfo=UTC),
        version_id=headers.get("x-ms-version-id"),
        retention_mode=headers.get("x-ms-immutability-policy-mode"),
        retain_until=parsedate_to_datetime(until) if until else None,
    )


class AzureStore:
    """One Azure Blob container."""

    def __init__(
        self,
        container: str,
        credential: AzureCredential,
        *,
        service: BlobServiceClient | None = None,
        page_size: int = 5000,
        sdk_reads: bool = False,
    ) -> None:
        self.container = container
        self.page_size = page_size
        """Blobs per List Blobs request: 5,000 is the most Azure returns."""
        self.url = f"az://{container}"
        self.requests = RequestCount()
        self._lean = None if sdk_reads or service is not None else lean_reads_for(container, credential)
        self._sdk: Once[tuple[BlobServiceClient, ContainerClient]] = Once(lambda: self._make_sdk(credential, service))
        if self._lean is None:
            self._sdk.get()  # every request goes through the SDK: a credential it refuses is refused now

    def _make_sdk(
        self, credential: AzureCredential, service: BlobServiceClient | None
    ) -> tuple[BlobServiceClient, ContainerClient]:
        from azure.core.exceptions import AzureError

        try:
            made = service or make_service(credential)
        except (ValueError, AzureError) as exc:
            # The SDK's message may quote the connection string; ours names only the container.
            raise ConfigError(f"{self.url}: the Azure connection string or account URL is malformed") from exc
        return made, made.get_container_client(self.container)

    @property
    def _service(self) -> BlobServiceClient:
        return self._sdk.get()[0]

    @property
    def _client(self) -> ContainerClient:
        return self._sdk.get()[1]

    def __repr__(self) -> str:
        return f"AzureStore({self.url!r})"

    def list(
        self, prefix: str = "", *, start_after: str | None = None, end_at: str | None = None, limit: int | None = None
    ) -> Iterator[ObjectInfo]:
        sent = request_prefix(prefix, start_after, end_at)
        lean = self._lean

        def fetch(marker: str | None, size: int) -> tuple[list[ObjectInfo], str | None]:
            self.requests.add("list")
            params = {"restype": "container", "comp": "list", "maxresults": str(size)}
            if sent:
                params["prefix"] = sent
            if marker:
                params["marker"] = marker
            elif start_after:
                params["startFrom"] = start_after  # inclusive; PageWalk drops an exact match
            if lean is not None:
                answer = lean.list_page(self.container, params)
                if answer.status != 200:
                    code = answer.headers.get("x-ms-error-code", "")
                    raise answer_error(answer.status, code, container=self.container)
                return parse_listing(answer.body, end_at)
            return self._sdk_listing(params, end_at)

        return PageWalk(fetch, page_size=self.page_size, start_after=start_after, end_at=end_at, limit=limit)

    def _sdk_listing(self, params: dict[str, str], end_at: str | None) -> ListingPage:
        """One List Blobs request through the container client's pipeline (a token credential's path)."""
        from azure.core.exceptions import AzureError
        from azure.core.rest import HttpRequest

        url = self._client.url
        try:
            # A raw request (see _LEAN_LISTING_NOTE), streamed so the pipeline does not parse the XML itself.
            response = self._client._client._send_request(
                # The container URL already holds a SAS token's query when one is used.
                HttpRequest("GET", f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"),
                stream=True,
            )
        except AzureError as exc:
            raise translate(exc, container=self.container) from exc
        if response.status_code != 200:
            response.close()
            raise answer_error(
                response.status_code, response.headers.get("x-ms-error-code", ""), container=self.container
            )
        return parse_listing(response.read(), end_at)

    def _lean_get(self, key: str, version_id: str | None = None) -> Answer | None:
        """A 200 answer from the lean path; None where only the SDK goes; raises for a missing or refused blob."""
        lean = self._lean
        if lean is None:
            return None
        answer = lean.get(self.container, key, version_id)
        if answer.status == 200:
            return answer
        raise answer_error(answer.status, answer.headers.get("x-ms-error-code", ""), container=self.container, key=key)

    def read(self, key: str) -> bytes:
        from azure.core.exceptions import AzureError

        self.requests.add("get")
        answer = self._lean_get(key)
        if answer is not None:
            return answer.body
        try:
            # decompress=False: the stored bytes as they are, even when Content-Encoding is gzip.
            return self._client.download_blob(key, decompress=False).readall()
        except AzureError as exc:
            raise translate(exc, container=self.container, key=key) from exc

    def fetch(self, key: str, *, version_id: str | None = None) -> tuple[bytes, ObjectInfo]:
        from azure.core.exceptions import AzureError

        self.requests.add("get")
        answer = self._lean_get(key, version_id)
        if answer is not None:
            return answer.body, _info_of(key, answer)
        try:
            download = self._client.download_blob(key, decompress=False, version_id=version_id)
            body = download.readall()
        except AzureError as exc:
            raise translate(exc, container=self.container, key=key) from exc
        props = download.properties
        policy = getattr(props, "immutability_policy", None)
        return body, ObjectInfo(
            key=key,
            size=len(body),
            etag=str(props.etag).strip('"'),
            last_modified=props.last_modified,
            version_id=getattr(props, "version_id", None),
            retention_mode=getattr(policy, "policy_mode", None) if policy else None,
            retain_until=getattr(policy, "expiry_time", None) if policy else None,
        )

    def retention(self) -> RetentionSettings:
        from azure.core.exceptions import AzureError, HttpResponseError

        notes: list[tuple[str, str]] = [
            ("versioning", "not reported by this endpoint: blob versioning is a storage-account setting"),
            ("lifecycle", "not reported by this endpoint: lifecycle management is a storage-account policy"),
        ]
        lock_enabled = legal_hold = None
        soft_delete = None
        try:
            container = self._client.get_container_properties()
            with_versioning = bool(getattr(container, "immutable_storage_with_versioning_enabled", False))
            lock_enabled = bool(container.has_immutability_policy) or with_versioning
            legal_hold = bool(container.has_legal_hold)
        except HttpResponseError as exc:
            if exc.status_code != 403:
                raise translate(exc, container=self.container) from exc
            notes.append(("immutability", "not readable with these credentials (HTTP 403)"))
        except AzureError as exc:
            raise translate(exc, container=self.container) from exc
        try:
            policy = self._service.get_service_properties().get("delete_retention_policy")
            soft_delete = (policy.days or 0) if policy is not None and policy.enabled else 0
        except HttpResponseError as exc:
            notes.append(("soft_delete", f"not readable here (HTTP {exc.status_code}): needs account-level access"))
        except AzureError as exc:
            raise translate(exc, container=self.container) from exc
        if lock_enabled:
            notes.append(("immutability", "a policy exists; its period is not reported by this endpoint"))
        return RetentionSettings(
            kind="az",
            lock_enabled=lock_enabled,
            legal_hold=legal_hold,
            soft_delete_days=soft_delete,
            notes=tuple(notes),
        )

    def head(self, key: str) -> ObjectInfo | None:
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        self.requests.add("head")
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
        from azure.core import MatchConditions
        from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError
        from azure.storage.blob import ContentSettings

        self.requests.add("put")
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
        from azure.core.exceptions import AzureError, ResourceExistsError

        try:
            self._client.create_container()
        except ResourceExistsError:
            return
        except AzureError as exc:
            raise translate(exc, container=self.container) from exc

    def close(self) -> None:
        if self._lean is not None:
            self._lean.close()
        if (sdk := self._sdk.made) is not None:
            service, client = sdk
            client.close()
            service.close()
