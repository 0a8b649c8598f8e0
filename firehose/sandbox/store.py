"""The sandbox's event store: events kept as encoded JSON, indexed by id in sorted order.

Ids sort by creation second, so every ``GET /events`` window (ids exclusive, times inclusive, the 90-day
expiry) is one slice of the sorted id list, found by bisection. Events are held encoded, so a page without
rules or field selection is served by joining bytes.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from firehose.codec import decode, encode
from firehose.ids import highest_id_at, lowest_id_at

Predicate = Callable[[dict[str, Any]], bool]


@dataclass(frozen=True)
class Window:
    """One ``GET /events`` query, already validated."""

    after_id: str | None = None
    before_id: str | None = None
    start_seconds: int | None = None
    end_seconds: int | None = None
    sort: str = "desc"
    limit: int = 100


class EventStore:
    """Thread-safe: the HTTP server reads while the submit endpoint adds."""

    def __init__(self) -> None:
        self._ids: list[str] = []
        self._docs: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._ids)

    def add_many(self, events: Iterable[dict[str, Any]]) -> None:
        encoded = [(str(event["id"]).lower(), encode(event)) for event in events]
        with self._lock:
            for event_id, doc in encoded:
                if event_id not in self._docs:
                    self._ids.append(event_id)
                self._docs[event_id] = doc
            self._ids.sort()

    def add(self, event: dict[str, Any]) -> None:
        event_id = str(event["id"]).lower()
        doc = encode(event)
        with self._lock:
            if event_id not in self._docs:
                bisect.insort(self._ids, event_id)
            self._docs[event_id] = doc

    def get(self, event_id: str) -> bytes | None:
        return self._docs.get(event_id.lower())

    def query(self, window: Window, *, expired_before_seconds: int, predicate: Predicate | None = None) -> list[bytes]:
        """The encoded events of one page, in the window's sort order."""
        low = lowest_id_at(expired_before_seconds)
        if window.start_seconds is not None:
            low = max(low, lowest_id_at(window.start_seconds))
        high = highest_id_at(window.end_seconds) if window.end_seconds is not None else "f" * 24
        with self._lock:
            lo = bisect.bisect_left(self._ids, low)
            if window.after_id is not None:
                lo = max(lo, bisect.bisect_right(self._ids, window.after_id.lower()))
            hi = bisect.bisect_right(self._ids, high)
            if window.before_id is not None:
                hi = min(hi, bisect.bisect_left(self._ids, window.before_id.lower()))
            # Copy the slice's ids under the lock; bytes objects are immutable, so reading them later is safe.
            span = range(lo, hi) if window.sort == "asc" else range(hi - 1, lo - 1, -1)
            page: list[bytes] = []
            for index in span:
                doc = self._docs[self._ids[index]]
                if predicate is not None and not predicate(decode(doc)):
                    continue
                page.append(doc)
                if len(page) >= window.limit:
                    break
        return page
