"""How firehose reaches what it reads and writes, with the credentials the settings map: the one place that turns
a store URL or an event's destination into an open store, and the settings' API section into a client.

Every job and command opens stores and the API through here, so a credential mapping (``credential_id`` to a
``[credentials]`` entry, ``--credential`` overriding it) means the same thing everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from firehose.archive import Store, StoreUrl
from firehose.archive import open_store as open_store_with
from firehose.config import API_USERNAME, Settings
from firehose.event import Destination

if TYPE_CHECKING:
    from firehose.http import HttpClient

StoreOpener = Callable[[Destination], Store]
"""Opens the store of an event's destination (what a reconcile, audit or verify run is given)."""

__all__ = ["StoreOpener", "api_client", "destination_opener", "open_store", "open_url"]


def _open(where: StoreUrl, settings: Settings, credential_id: str | None) -> Store:
    sdk = settings.sdk_reads
    if where.scheme == "s3":
        return open_store_with(where, s3=settings.credentials.s3(credential_id), sdk_reads=sdk)
    if where.scheme == "az":
        return open_store_with(where, azure=settings.credentials.azure_for(credential_id), sdk_reads=sdk)
    return open_store_with(where)


def open_url(
    url: str, settings: Settings, credential_id: str | None = None, name: str = "URL"
) -> tuple[Store, StoreUrl]:
    """The store a URL names (``s3://bucket/prefix``, ``az://container/prefix``, ``file:///dir``) and the parsed
    URL, with the credential ``credential_id`` maps to for its service. ``name`` is the flag or argument the URL
    came from, for the error a bad one gets."""
    where = StoreUrl.parse(url, name)
    return _open(where, settings, credential_id), where


def open_store(url: str, settings: Settings, credential_id: str | None = None) -> Store:
    """The store a URL names, opened with the credential mapped for it (close it when done)."""
    return open_url(url, settings, credential_id)[0]


def destination_opener(settings: Settings, credential_id: str | None = None) -> StoreOpener:
    """Opens the store of an event's destination with the credential its ``credential_id`` maps to, or the one
    ``credential_id`` names when given (``--credential``)."""

    def open_for(destination: Destination) -> Store:
        where = StoreUrl(destination.scheme, destination.bucket, "")
        return _open(where, settings, credential_id or destination.credential_id)

    return open_for


def api_client(settings: Settings) -> HttpClient:
    """An HTTP client for LeadConduit's API as the settings say (URL, key, timeout, retries); a ``ConfigError``
    when no API key is set. Use it as a context manager."""
    from firehose.http import HttpClient, RetryPolicy

    api = settings.api
    key = api.require_key()
    return HttpClient(
        api.url,
        auth=(API_USERNAME, key.reveal()),
        timeout_seconds=api.timeout_seconds,
        retry=RetryPolicy(max_attempts=api.max_attempts, backoff_max_seconds=api.backoff_max_seconds),
    )
