"""How firehose reaches what it reads and writes, with the credentials the settings map: the one place that turns
a store URL or an event's destination into an open store, and the settings' API section into a client.

Every job and command opens stores and the API through here, so a credential mapping (``credential_id`` to a
``[credentials]`` entry, ``--credential`` overriding it) means the same thing everywhere.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import multiprocessing.util
import threading
from collections.abc import Callable, Hashable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from firehose.archive import ObjectInfo, Store, StoreUrl
from firehose.archive import open_store as open_store_with
from firehose.archive.base import RequestCount, RetentionSettings
from firehose.config import API_USERNAME, Settings
from firehose.event import Destination

if TYPE_CHECKING:
    from firehose.http import HttpClient

StoreOpener = Callable[[Destination], Store]
"""Opens the store of an event's destination (what a reconcile, audit or verify run is given)."""

__all__ = [
    "StoreOpener",
    "api_client",
    "close_kept",
    "destination_opener",
    "keep_connections",
    "open_store",
    "open_url",
]


def _open(where: StoreUrl, settings: Settings, credential_id: str | None) -> Store:
    if _KEEPING:
        key = ("store", where.scheme, where.bucket, _credential_of(where, settings, credential_id), settings.sdk_reads)
        return _lend(key, lambda: _KeptStore(_opened(where, settings, credential_id)))
    return _opened(where, settings, credential_id)


def _credential_of(where: StoreUrl, settings: Settings, credential_id: str | None) -> Hashable:
    if where.scheme == "s3":
        return settings.credentials.s3(credential_id)
    if where.scheme == "az":
        return settings.credentials.azure_for(credential_id)
    return None


def _opened(where: StoreUrl, settings: Settings, credential_id: str | None) -> Store:
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
    from firehose.http import HttpClient, KeptHttpClient

    api = settings.api
    if _KEEPING:
        api.require_key()  # a missing key refused at once, as ever
        return _lend(("api", api), lambda: _api_client(settings, KeptHttpClient))
    return _api_client(settings, HttpClient)


ClientT = TypeVar("ClientT", bound="HttpClient")


def _api_client(settings: Settings, kind: type[ClientT]) -> ClientT:
    from firehose.http import RetryPolicy

    api = settings.api
    key = api.require_key()
    return kind(
        api.url,
        auth=(API_USERNAME, key.reveal()),
        timeout_seconds=api.timeout_seconds,
        retry=RetryPolicy(max_attempts=api.max_attempts, backoff_max_seconds=api.backoff_max_seconds),
    )


# -- kept connections: a worker process running slice after slice ------------------------------------------------
# A slice opened the API client and every store it reads, and closed them when it was done: the next slice, in the
# same worker, made them all again (an S3 client about 25 ms, an HTTPS connection's handshake per server). In a
# worker, ``keep_connections`` keeps each one, by what it was made from (the API settings; the store, its
# credential and how it reads), for the next slice: a job's ``close`` hands it back, and the next ``open`` of the
# same lends it again. One user at a time: a Dask worker running two slices at once on two threads lends each its
# own (a slice counts its requests as the difference of its store's counter before and after, and that counter
# must be its own). The state database is not kept: each slice has its own (one run at a time per database, and a
# slice killed resumes its own windows), and opening one costs about 1 ms.

_KEEPING = False
_IDLE: dict[Hashable, list[Any]] = {}
_MADE: list[Any] = []
_LOCK = threading.Lock()
T = TypeVar("T")


def keep_connections() -> None:
    """From now on, in this process: the API clients and stores jobs open are kept when closed, and lent again to
    the next job that opens the same (same settings, credential and store), until ``close_kept`` or the process
    ends. For a worker that runs slice after slice."""
    global _KEEPING
    with _LOCK:
        if _KEEPING:
            return
        _KEEPING = True
    atexit.register(close_kept)
    # A multiprocessing child ends without atexit's handlers; its own finalizers run.
    multiprocessing.util.Finalize(None, close_kept, exitpriority=0)


def close_kept() -> None:
    """Close every client and store ``keep_connections`` kept, and keep no more."""
    global _KEEPING
    with _LOCK:
        made, _MADE[:] = list(_MADE), []
        _IDLE.clear()
        _KEEPING = False
    for kept in made:
        kept.given_back = None
        with contextlib.suppress(Exception):  # a process ending: a connection that will not close is let go
            kept.release()


def _lend(key: Hashable, make: Callable[[], T]) -> T:
    """An idle one made from ``key`` before, else a new one (made outside the lock: it may take a while)."""
    with _LOCK:
        idle = _IDLE.get(key)
        if idle:
            found: T = idle.pop()
            return found
    made = make()
    made.given_back = functools.partial(_give_back, key)  # type: ignore[attr-defined]  # a Kept* below
    with _LOCK:
        _MADE.append(made)
    return made


def _give_back(key: Hashable, kept: Any) -> None:
    with _LOCK:
        idle = _IDLE.setdefault(key, [])
        if kept not in idle:  # closed twice: lent once
            idle.append(kept)


class _KeptStore:
    """A store kept for the next slice: ``close`` hands it back to be lent again; ``release`` closes it."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.url = store.url
        self.requests: RequestCount = store.requests
        self.page_size = store.page_size
        self.given_back: Callable[[_KeptStore], None] | None = None

    def list(
        self, prefix: str = "", *, start_after: str | None = None, end_at: str | None = None, limit: int | None = None
    ) -> Iterator[ObjectInfo]:
        return self._store.list(prefix, start_after=start_after, end_at=end_at, limit=limit)

    def read(self, key: str) -> bytes:
        return self._store.read(key)

    def fetch(self, key: str, *, version_id: str | None = None) -> tuple[bytes, ObjectInfo]:
        return self._store.fetch(key, version_id=version_id)

    def retention(self) -> RetentionSettings:
        return self._store.retention()

    def head(self, key: str) -> ObjectInfo | None:
        return self._store.head(key)

    def write(self, key: str, data: bytes, *, if_absent: bool = True, content_type: str = "application/json") -> bool:
        return self._store.write(key, data, if_absent=if_absent, content_type=content_type)

    def create(self) -> None:
        self._store.create()

    def close(self) -> None:
        if self.given_back is not None:
            self.given_back(self)
        else:
            self._store.close()

    def release(self) -> None:
        self._store.close()
