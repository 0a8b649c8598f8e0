"""The ``Store`` contract every archive backend keeps, and the value types it speaks in.

A store is one bucket (S3), one container (Azure Blob) or one directory tree (disk). Keys are full keys
inside it, ``/``-separated, exactly as the firehose wrote them; a store URL's path is only a default prefix.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from firehose.secret import Secret


@dataclass(frozen=True)
class ObjectInfo:
    """What a listing or a head tells about one stored object."""

    key: str
    size: int
    etag: str
    last_modified: datetime


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


PageFetch = Callable[[str | None, int], tuple[list[ObjectInfo], str | None]]
"""One listing request: ``(continuation token or None for the first page, keys wanted)`` to a page and the
next token (None after the last page). The first request starts after (or, for Azure, at) ``start_after``."""


def walk_pages(
    fetch: PageFetch, *, page_size: int, start_after: str | None, end_at: str | None, limit: int | None
) -> Iterator[ObjectInfo]:
    """The ``Store.list`` contract on top of a backend's page requests: keys in ``(start_after, end_at]``, at most
    ``limit`` of them, asking for no more than is needed."""
    token: str | None = None
    left = limit
    while True:
        # One more than wanted: a server whose start is inclusive may return start_after itself first.
        items, token = fetch(token, page_size if left is None else min(page_size, left + 1))
        for item in items:
            if start_after is not None and item.key <= start_after:
                continue
            if end_at is not None and item.key > end_at:
                return
            yield item
            if left is not None:
                left -= 1
                if left <= 0:
                    return
        if not token:
            return


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

    def head(self, key: str) -> ObjectInfo | None: ...

    def write(
        self, key: str, data: bytes, *, if_absent: bool = True, content_type: str = "application/json"
    ) -> bool: ...

    def create(self) -> None:
        """Create the bucket, container or directory (for the sandbox and tests; firehose never does this)."""
        ...

    def close(self) -> None: ...
