"""The ``Store`` contract every archive backend keeps, and the value types it speaks in.

A store is one bucket (S3), one container (Azure Blob) or one directory tree (disk). Keys are full keys
inside it, ``/``-separated, exactly as the firehose wrote them; a store URL's path is only a default prefix.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from firehose.secret import Secret


@dataclass(frozen=True, slots=True)  # slots: a listing holds many of these at once
class ObjectInfo:
    """What a listing or a head tells about one stored object. A read (``Store.fetch``) also tells its version
    and retention, where the store has them (listings do not)."""

    key: str
    size: int
    etag: str
    last_modified: datetime
    version_id: str | None = None
    retention_mode: str | None = None
    """Object Lock mode (``COMPLIANCE``, ``GOVERNANCE``) or Azure immutability policy mode (``Locked``, ...)."""
    retain_until: datetime | None = None


@dataclass(frozen=True)
class LifecycleRule:
    """One lifecycle rule as a store reports it: what it does to objects under ``prefix``, and when."""

    id: str
    enabled: bool
    prefix: str
    """The key prefix it applies to ("" for the whole bucket)."""
    expiration_days: int | None = None
    """Current objects are deleted (or, with versioning, turned into old versions) this many days after creation."""
    expiration_date: datetime | None = None
    noncurrent_expiration_days: int | None = None
    """Old versions are deleted this many days after they stop being current."""
    transition_days: int | None = None
    transition_class: str | None = None


@dataclass(frozen=True)
class RetentionSettings:
    """What a store says about keeping its objects. A field left None was not reported by the endpoint; ``notes``
    says why, per setting (``{"lifecycle": "not reported by this endpoint: ..."}``)."""

    kind: str
    """``s3``, ``az`` or ``file``."""
    versioning: str | None = None
    """``Enabled``, ``Suspended`` or ``Disabled`` (never enabled)."""
    lock_enabled: bool | None = None
    """S3 Object Lock, or an Azure container immutability policy or immutable storage with versioning."""
    lock_mode: str | None = None
    """S3 default retention mode (``COMPLIANCE``, ``GOVERNANCE``), Azure policy state (``Locked``, ...)."""
    lock_days: int | None = None
    legal_hold: bool | None = None
    soft_delete_days: int | None = None
    """Azure soft delete: 0 when off."""
    lifecycle: tuple[LifecycleRule, ...] | None = None
    notes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class S3Credential:
    """How to reach an S3 (or S3-compatible) store. Unset fields fall back to boto3's own chain."""

    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: Secret | None = None
    profile: str | None = None


@dataclass(frozen=True)
class AzureCredential:
    """How to reach an Azure Blob store: a connection string, or an account URL with an optional SAS token.

    With neither a connection string nor a SAS token, the Azure default credential chain is used.
    """

    connection_string: Secret | None = None
    account_url: str | None = None
    sas_token: Secret | None = None


IN_FLIGHT = 32
"""Requests in flight to one store by default (``--workers``): a real store takes 10-50 ms a request, so
throughput comes from many at once, not from CPU."""

PageFetch = Callable[[str | None, int], tuple[list[ObjectInfo], str | None]]
"""One listing request: ``(continuation token or None for the first page, keys wanted)`` to a page and the
next token (None after the last page). The first request starts after (or, for Azure, at) ``start_after``."""


class PageWalk(Iterator[ObjectInfo]):
    """The ``Store.list`` contract on top of a backend's page requests: keys in ``(start_after, end_at]``, at most
    ``limit`` of them, asking for no more than is needed.

    ``finished`` tells, without another request, that nothing is left: the last page had no continuation and all
    of it has been taken (or ``end_at``/``limit`` was reached). A parallel listing reads it after its probe page,
    so that a range that fits one page costs one request, not a plan of slices (each of which makes Azurite scan
    its whole container)."""

    def __init__(
        self, fetch: PageFetch, *, page_size: int, start_after: str | None, end_at: str | None, limit: int | None
    ) -> None:
        self._fetch, self._page_size = fetch, page_size
        self._start_after, self._end_at, self._left = start_after, end_at, limit
        self._page: Iterator[ObjectInfo] = iter(())
        self._buffered = 0
        self._token: str | None = None
        self._started = self.finished = False

    def __next__(self) -> ObjectInfo:
        while not self.finished:
            if self._buffered == 0:
                if self._started and not self._token:
                    self.finished = True
                    break
                self._next_page()
                continue
            item = next(self._page)
            self._buffered -= 1
            if self._start_after is not None and item.key <= self._start_after:
                continue
            if self._end_at is not None and item.key > self._end_at:
                self.finished = True
                break
            if self._left is not None:
                self._left -= 1
                self.finished = self._left <= 0
            if self._buffered == 0 and not self._token:
                self.finished = True  # that was the last page's last key
            return item
        raise StopIteration

    def _next_page(self) -> None:
        # One more than wanted: a server whose start is inclusive may return start_after itself first.
        wanted = self._page_size if self._left is None else min(self._page_size, self._left + 1)
        items, self._token = self._fetch(self._token, wanted)
        self._started = True
        self._page, self._buffered = iter(items), len(items)


def request_prefix(prefix: str, start_after: str | None, end_at: str | None) -> str:
    """The ``Prefix`` a listing of ``prefix`` in ``(start_after, end_at]`` can send: longer than ``prefix`` when
    both bounds share more, since every key between two strings starts with what they share.

    Neither S3 nor Azure takes an end: a page runs past ``end_at`` to its full size, and those keys are thrown
    away here. A day's window and its upper-case id range (``6ad7f27...`` to ``6ad951...``, ``6AD7F27...`` to
    ``6AD951...``) share ``6ad`` or ``6AD``, so the server stops at that prefix's end: the upper-case range's
    page no longer fills with the lower-case keys that sort right after it, and a day's probe page stops at the
    end of the 12 days whose ids share its first three hex digits. Azurite spends about 0.08 ms of CPU on each
    key it returns."""
    if start_after is None or end_at is None:
        return prefix
    shared = 0
    for low, high in zip(start_after, end_at, strict=False):
        if low != high:
            break
        shared += 1
    return start_after[:shared] if shared > len(prefix) and start_after.startswith(prefix) else prefix


def listed_all(listing: Iterator[ObjectInfo]) -> bool:
    """True when a store's listing is known, without another request, to hold nothing more (``PageWalk``)."""
    return isinstance(listing, PageWalk) and listing.finished


class RequestCount:
    """Requests a store has made, by kind (``list``, ``get``, ``head``, ``put``), for reports; thread-safe."""

    KINDS = ("list", "get", "head", "put")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(self.KINDS, 0)

    def add(self, kind: str) -> None:
        with self._lock:
            self._counts[kind] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    @contextlib.contextmanager
    def added_to(self, into: MutableMapping[str, int]) -> Iterator[None]:
        """The requests made during the block, by kind, added to ``into`` (a destination's counts in a report),
        the block's failure or not: a request that failed was made."""
        before = self.snapshot()
        try:
            yield
        finally:
            after = self.snapshot()
            for kind, number in after.items():
                into[kind] = into.get(kind, 0) + number - before[kind]


class Store(Protocol):
    """One bucket, container or directory.

    - ``list`` yields the objects whose keys start with ``prefix`` and lie in ``(start_after, end_at]``, in
      ascending key order (byte order), lazily, a page at a time; it stops asking for pages past ``end_at``,
      or after ``limit`` objects (a request for one key asks the server for one key).
    - ``read`` returns the stored bytes unchanged (no gzip decoding); a missing key raises ``ArchiveNotFound``.
    - ``head`` returns ``None`` for a missing key.
    - ``write`` with ``if_absent=True`` never replaces an object: it returns ``False`` when the key exists.
    - Every vendor error leaves as an ``ArchiveError`` naming the store and the key.
    """

    url: str
    """Where the store is, for messages (``s3://bucket``); never holds a secret."""
    requests: RequestCount
    page_size: int
    """Keys one listing request returns at most: the unit parallel listing splits work into."""

    def list(
        self, prefix: str = "", *, start_after: str | None = None, end_at: str | None = None, limit: int | None = None
    ) -> Iterator[ObjectInfo]: ...

    def read(self, key: str) -> bytes: ...

    def fetch(self, key: str, *, version_id: str | None = None) -> tuple[bytes, ObjectInfo]:
        """The stored bytes with what the read told about the object: version and retention where the store
        has them. ``version_id`` reads that version; a missing key or version raises ``ArchiveNotFound``."""
        ...

    def retention(self) -> RetentionSettings:
        """The store's settings for keeping objects (versioning, lock, lifecycle, ...), as far as it reports
        them; a setting the credentials may not read is left None with a note, not raised."""
        ...

    def head(self, key: str) -> ObjectInfo | None: ...

    def write(
        self, key: str, data: bytes, *, if_absent: bool = True, content_type: str = "application/json"
    ) -> bool: ...

    def create(self) -> None:
        """Create the bucket, container or directory (for the sandbox and tests; firehose never does this)."""
        ...

    def close(self) -> None: ...


T = TypeVar("T")


class Once(Generic[T]):
    """A value made on first use by one thread, however many ask at once, then read without a lock: a store's
    lean read path, set up by the first read (``None`` made: reads go through the SDK)."""

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._made = False
        self._value: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        if not self._made:
            with self._lock:
                if not self._made:
                    self._value = self._make()
                    self._made = True
        return self._value  # type: ignore[return-value]  # set above, before _made

    @property
    def made(self) -> T | None:
        """The value if it has been made (for closing it), else None."""
        return self._value if self._made else None
