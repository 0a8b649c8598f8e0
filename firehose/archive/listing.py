"""Listing a key range fast: one probe page, then the rest split into ranges of about a page each, listed in
parallel and yielded in key order.

Keys under a firehose prefix sort by lead creation time (``layout``), so the probe tells how much time one page
of keys spans; the remaining time is cut into slices of that span, each bounded by the lowest ObjectId of its
first second. Slices are ``(start_after, end_at]`` key ranges, contiguous, so every key in the range is listed
exactly once whatever its shape. Each slice lists under the longest prefix its two bounds share, so the server
stops early. Finer slices than a page lose (6-hex splits of a sparse archive ran 3x slower than none,
architecture.md §4), so slices are never narrower than what the probe measured.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice

from firehose.archive.base import ObjectInfo, Store
from firehose.archive.layout import ArchivedEvent, as_event, boundary, folder, is_verification, lead_bounds, parse_key
from firehose.errors import ArchiveError
from firehose.ids import seconds_of

MAX_SLICES = 4096
"""Upper bound on slices for one listing; wider slices are used past it."""
FUTURE_SLACK_SECONDS = 86_400
"""Lead ids are made at submission, so none should be later than now; a day of slack covers clock skew."""


def _slices(prefix: str, last_key: str, first_key: str, end_at: str | None, t_end: int) -> list[tuple[str, str | None]]:
    """Contiguous ``(start_after, end_at]`` ranges covering ``(last_key, end_at]``, each about one page;
    ``t_end`` is the second past which no lead of the range was made."""
    first, last = parse_key(first_key), parse_key(last_key)
    if first is None or last is None:
        return [(last_key, end_at)]  # not the firehose layout: no time to split by
    t0, t1 = seconds_of(first[0]), seconds_of(last[0])
    span = max(1, t1 - t0)
    count = (t_end - t1) // span
    if count > MAX_SLICES:
        span = -(-(t_end - t1) // MAX_SLICES)
    bounds = [last_key]
    moment = t1 + span
    while moment < t_end:
        edge = boundary(prefix, moment)
        if edge > bounds[-1] and (end_at is None or edge < end_at):
            bounds.append(edge)
        moment += span
    ranges: list[tuple[str, str | None]] = [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]
    ranges.append((bounds[-1], end_at))
    return ranges


def _common(prefix: str, low: str, high: str | None) -> str:
    if high is None:
        return prefix
    shared = os.path.commonprefix([low, high])  # noqa: RUF071 (character-wise is the point: key ranges)
    return shared if shared.startswith(prefix) else prefix


def list_window(
    store: Store,
    prefix: str,
    *,
    start_seconds: int | None,
    end_seconds: int | None,
    workers: int = 8,
    clock: Callable[[], float] = time.time,
) -> Iterator[ObjectInfo]:
    """Every object of the leads made in ``[start_seconds, end_seconds]`` (None: unbounded), in key order."""
    start_after, end_at = lead_bounds(prefix, start_seconds, end_seconds)
    listing_prefix = folder(prefix) if start_seconds is not None or end_seconds is not None else prefix
    return list_range(
        store,
        listing_prefix,
        start_after=start_after,
        end_at=end_at,
        end_seconds=end_seconds,
        workers=workers,
        clock=clock,
    )


def list_range(
    store: Store,
    prefix: str = "",
    *,
    start_after: str | None = None,
    end_at: str | None = None,
    end_seconds: int | None = None,
    workers: int = 8,
    clock: Callable[[], float] = time.time,
) -> Iterator[ObjectInfo]:
    """Every object under ``prefix`` with a key in ``(start_after, end_at]``, in key order.

    ``end_seconds`` is the last second of the leads in range (the window's end); without it, leads can run to
    now, plus a day of slack, and one last open range takes whatever sorts after.
    """
    probe = list(islice(store.list(prefix, start_after=start_after, end_at=end_at), store.page_size))
    yield from probe
    if len(probe) < store.page_size or workers <= 1:
        if len(probe) == store.page_size:  # one worker: carry on sequentially
            yield from store.list(prefix, start_after=probe[-1].key, end_at=end_at)
        return
    base = folder(prefix) if parse_key(probe[0].key) else prefix
    t_end = end_seconds + 1 if end_seconds is not None else int(clock()) + FUTURE_SLACK_SECONDS
    ranges = _slices(base, probe[-1].key, probe[0].key, end_at, t_end)

    def fetch(bounds: tuple[str, str | None]) -> list[ObjectInfo]:
        low, high = bounds
        return list(store.list(_common(prefix, low, high), start_after=low, end_at=high))

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="archive-list")
    pending: deque[Future[list[ObjectInfo]]] = deque()
    todo = iter(ranges)
    try:
        for bounds in islice(todo, workers * 2):
            pending.append(pool.submit(fetch, bounds))
        while pending:
            items = pending.popleft().result()
            following = next(todo, None)
            if following is not None:
                pending.append(pool.submit(fetch, following))
            yield from items
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class ArchiveListing:
    """The archived events of a store URL's prefix, optionally for the leads of a time window.

    Iterating yields ``ArchivedEvent`` rows in key order (and, with ``include_other``, an ``ObjectInfo`` for each
    key outside the layout). Verification files are skipped; other keys outside the layout are counted in
    ``other`` so that a caller can say how many were left out, never dropping them in silence.
    """

    def __init__(
        self,
        store: Store,
        prefix: str,
        *,
        start_seconds: int | None = None,
        end_seconds: int | None = None,
        workers: int = 8,
        include_other: bool = False,
    ) -> None:
        self.store, self.prefix = store, prefix
        self.start_seconds, self.end_seconds = start_seconds, end_seconds
        self.workers, self.include_other = workers, include_other
        self.events = self.verification = self.other = 0

    def __iter__(self) -> Iterator[ArchivedEvent | ObjectInfo]:
        for info in list_window(
            self.store,
            self.prefix,
            start_seconds=self.start_seconds,
            end_seconds=self.end_seconds,
            workers=self.workers,
        ):
            event = as_event(info)
            if event is not None:
                self.events += 1
                yield event
            elif is_verification(info.key):
                self.verification += 1
            else:
                self.other += 1
                if self.include_other:
                    yield info


def find_event_keys(
    store: Store, prefix: str, event_id: str, *, lead_id: str | None = None, workers: int = 8
) -> list[str]:
    """Keys that hold ``event_id`` under ``prefix``.

    With the lead id, two HEADs (with and without ``.json``). Without it, the leads made up to an hour, then a
    day, then 90 days before the event are listed (a lead precedes its events; feedback and retries come later).
    """
    if lead_id is not None:
        base = folder(prefix) + f"{lead_id}/{event_id}"
        return [key for key in (base + ".json", base) if store.head(key) is not None]
    made = seconds_of(event_id)
    for lookback in (3600, 86_400, 90 * 86_400):
        found = [
            info.key
            for info in list_window(store, prefix, start_seconds=made - lookback, end_seconds=made, workers=workers)
            if (ids := parse_key(info.key)) is not None and ids[1] == event_id.lower()
        ]
        if found:
            return found
    return []


def read_many(store: Store, keys: Iterable[str], *, workers: int = 8) -> Iterator[tuple[str, bytes | ArchiveError]]:
    """``(key, stored bytes)`` for each key, in the order given, read in parallel; a failed read is yielded as
    its error rather than raised, so one broken object does not stop the rest."""

    def read(key: str) -> tuple[str, bytes | ArchiveError]:
        try:
            return key, store.read(key)
        except ArchiveError as exc:
            return key, exc

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="archive-read")
    pending: deque[Future[tuple[str, bytes | ArchiveError]]] = deque()
    todo = iter(keys)
    try:
        for key in islice(todo, workers * 4):
            pending.append(pool.submit(read, key))
        while pending:
            result = pending.popleft().result()
            following = next(todo, None)
            if following is not None:
                pending.append(pool.submit(read, following))
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
