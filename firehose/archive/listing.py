"""Listing a key range fast: one probe page, then the rest as lead-id hex prefixes listed in parallel, yielded
in key order.

Keys under a firehose folder sort by lead creation time (``layout``): the first 8 hex digits of a lead id are
its second, so a hex prefix of length L holds the leads of 16**(8-L) seconds (4 digits ≈ 18 h, 5 ≈ 68 min).
The probe page tells how much time one page of keys spans; L is chosen so each prefix holds about a page,
since finer splits lose (6-hex splits of a sparse archive ran 3x slower than none, architecture.md §4).

Each prefix is listed with exactly that ``Prefix``, so the server stops at its end and returns nothing it must
then throw away. Between two consecutive lowercase hex prefixes, keys can sort only where the alphabet jumps
(``9`` to ``a``, or a carry): such gaps are checked with a one-key request and listed if anything is there, and
whatever sorts after the last prefix is listed at the end. So every key of the range is listed exactly once,
whatever its shape.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from itertools import chain, islice
from typing import TypeVar

from firehose.archive.base import IN_FLIGHT, ObjectInfo, Store, listed_all
from firehose.archive.layout import (
    KEY_END,
    KEY_PATTERN,
    ArchivedEvent,
    as_event,
    boundary,
    folder,
    is_verification,
    lead_bounds,
    lead_segment,
    parse_key,
    upper_case_lead,
    upper_case_ranges,
)
from firehose.errors import ArchiveError
from firehose.ids import seconds_of

T = TypeVar("T")
R = TypeVar("R")

MAX_SLICES = 4096
"""Upper bound on prefixes for one listing; shorter prefixes are used past it."""
FUTURE_SLACK_SECONDS = 86_400
"""Lead ids are made at submission, so none should be later than now; a day of slack covers clock skew."""


@dataclass(frozen=True)
class Slice:
    """One listing request's worth of the range: keys under ``prefix`` in ``(start_after, end_at]``.

    A ``gap`` slice covers the keys that may sort between two hex prefixes; it is checked with a one-key
    request first and yields only keys below ``below``.
    """

    prefix: str
    start_after: str | None
    end_at: str | None
    gap: bool = False
    below: str | None = None


def prefix_length(seconds_per_page: int) -> int:
    """The hex-prefix length whose prefixes span about ``seconds_per_page`` (so hold about a page each)."""
    digits = round(math.log(max(1, seconds_per_page), 16))
    return max(1, min(8, 8 - digits))


def _slices(prefix: str, last_key: str, first_key: str, end_at: str | None, t_end: int) -> list[Slice]:
    """Slices covering ``(last_key, end_at]`` under ``prefix``, in key order; ``t_end`` is a second past which
    no lead of the range was made (``end_at`` still bounds everything)."""
    whole = [Slice(prefix, last_key, end_at)]
    first, last = KEY_PATTERN.search(first_key), KEY_PATTERN.search(last_key)
    if first is None or last is None:
        return whole  # not the firehose layout: no time to split by
    base = last_key[: last.start(1)]  # the folder the lead ids follow
    if first_key[: first.start(1)] != base or not base.startswith(prefix):
        return whole  # the probe spans several folders: list the rest in one go
    t0, t1 = seconds_of(first.group(1)), seconds_of(last.group(1))
    length = prefix_length(t1 - t0)
    step = 16 ** (8 - length)
    while (t_end - t1) // step > MAX_SLICES:
        length, step = length - 1, step * 16
    current = last.group(1)[:length]
    if current != current.lower():
        return whole
    slices = [Slice(base + current, last_key, end_at)]  # the rest of the probe's own prefix
    number = int(current, 16) + 1
    while number * step < t_end and number < 16**length:
        following = f"{number:0{length}x}"
        if end_at is not None and base + following > end_at:
            break
        slices.extend(_gap(base, f"{number - 1:0{length}x}", following))
        slices.append(Slice(base + following, None, end_at))
        number += 1
    slices.append(Slice(prefix, base + f"{number - 1:0{length}x}" + KEY_END, end_at))  # what sorts after
    return slices


def _gap(base: str, previous: str, following: str) -> list[Slice]:
    """The slice for keys that may sort between two consecutive hex prefixes, if any can."""
    if _adjacent(previous, following):
        return []
    return [
        Slice(
            _shared(base + previous, base + following),
            base + previous + KEY_END,
            base + following,
            gap=True,
            below=base + following,
        )
    ]


def _adjacent(low: str, high: str) -> bool:
    """True when no string sorts between every key starting with ``low`` and the first starting with ``high``:
    they differ only in the last character, and it steps by one code point."""
    return low[:-1] == high[:-1] and ord(high[-1]) - ord(low[-1]) == 1


def _shared(a: str, b: str) -> str:
    size = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        size += 1
    return a[:size]


def _data_end(store: Store, prefix: str, first_key: str, last_key: str, t_high: int) -> int:
    """A second past which no lead of the range has keys, found by bisection with one-key listings, so that a
    range whose data stops early (a window reaching to now, a whole archive) is not cut into empty slices."""
    first, last = KEY_PATTERN.search(first_key), KEY_PATTERN.search(last_key)
    if first is None or last is None:
        return t_high
    base = last_key[: last.start(1)]
    low, high = seconds_of(last.group(1)), t_high
    span = max(1, low - seconds_of(first.group(1)))
    ceiling = boundary(base, high)
    while high - low > span:
        middle = (low + high) // 2
        if next(iter(store.list(prefix, start_after=boundary(base, middle), end_at=ceiling, limit=1)), None):
            low = middle
        else:
            high = middle
    return high


def list_window(
    store: Store,
    prefix: str,
    *,
    start_seconds: int | None,
    end_seconds: int | None,
    workers: int = IN_FLIGHT,
    ahead: int | None = None,
    clock: Callable[[], float] = time.time,
) -> Iterator[ObjectInfo]:
    """Every object of the leads made in ``[start_seconds, end_seconds]`` (None: unbounded), in key order.

    ``ahead`` caps the slices listed but not yet consumed (default ``2 * workers``): a consumer slower than the
    store (reconcile, paced by ``/events``) sets it low, so memory holds a few pages, not the whole listing."""
    start_after, end_at = lead_bounds(prefix, start_seconds, end_seconds)
    if start_seconds is None and end_seconds is None:
        return list_range(store, prefix, workers=workers, ahead=ahead, clock=clock)  # every key, every spelling
    lower = list_range(
        store,
        folder(prefix),
        start_after=start_after,
        end_at=end_at,
        start_seconds=start_seconds,
        end_seconds=end_seconds,
        workers=workers,
        ahead=ahead,
        clock=clock,
    )
    upper = chain.from_iterable(
        store.list(folder(prefix), start_after=after, end_at=end)
        for after, end in upper_case_ranges(prefix, start_seconds, end_seconds)
    )
    return _by_lead_time(lower, upper, start_seconds, end_seconds)


def _by_lead_time(
    lower: Iterator[ObjectInfo], upper: Iterator[ObjectInfo], start_seconds: int | None, end_seconds: int | None
) -> Iterator[ObjectInfo]:
    """The window's keys with lower-case ids and those spelt in upper case, merged in lead-time order.

    Upper-case ids sort apart (``6AE1`` < ``6ae1``), so they are listed as a range of their own (one request
    when there are none) and taken only from there; among themselves they sort by time too, so one pass merges.
    """

    def upper_case(items: Iterator[ObjectInfo]) -> Iterator[tuple[int, ObjectInfo]]:
        for info in items:
            lead = lead_segment(info.key)
            if lead is None or not upper_case_lead(info.key):
                continue
            made = seconds_of(lead)
            if (start_seconds is None or made >= start_seconds) and (end_seconds is None or made <= end_seconds):
                yield made, info

    extra = upper_case(upper)
    pending = next(extra, None)
    for info in lower:
        lead = lead_segment(info.key)
        if lead is not None:
            if upper_case_lead(info.key):
                continue  # taken from the upper-case range, in its time order
            made = seconds_of(lead)
            while pending is not None and pending[0] < made:
                yield pending[1]
                pending = next(extra, None)
        yield info
    while pending is not None:
        yield pending[1]
        pending = next(extra, None)


def list_range(
    store: Store,
    prefix: str = "",
    *,
    start_after: str | None = None,
    end_at: str | None = None,
    start_seconds: int | None = None,
    end_seconds: int | None = None,
    workers: int = IN_FLIGHT,
    ahead: int | None = None,
    clock: Callable[[], float] = time.time,
) -> Iterator[ObjectInfo]:
    """Every object under ``prefix`` with a key in ``(start_after, end_at]``, in key order.

    It starts with one probe page: a range that fits in it costs that one request (on Azurite every listing
    request scans the whole container, and on Azure each is billed). Past it, with both ``start_seconds`` and
    ``end_seconds`` (a window of leads under the folder ``prefix``), the rest of a short window is listed as its
    own exact hex prefixes; anything longer is split by the density the probe page showed.

    ``end_seconds`` is the last second of the leads in range (the window's end); without it, leads can run to
    now, plus a day of slack, and one last open range takes whatever sorts after.
    """
    listing = store.list(prefix, start_after=start_after, end_at=end_at)
    probe = list(islice(listing, store.page_size))
    yield from probe
    if len(probe) < store.page_size or listed_all(listing):
        return  # the whole range fitted one page: one request, however long the window
    if workers <= 1:  # carry on sequentially
        yield from listing
        return
    plan = None
    if start_seconds is not None and end_seconds is not None:
        plan = _window_slices(prefix, start_after, end_at, start_seconds, end_seconds, max(2, workers * 2))
    if plan is not None:
        ranges = _after(plan, probe[-1].key)
    else:
        t_high = end_seconds + 1 if end_seconds is not None else int(clock()) + FUTURE_SLACK_SECONDS
        t_end = _data_end(store, prefix, probe[0].key, probe[-1].key, t_high)
        ranges = _slices(prefix, probe[-1].key, probe[0].key, end_at, t_end)
    for items in ordered_map(lambda piece: _fetch(store, piece), ranges, workers=workers, ahead=ahead or workers * 2):
        yield from items


def _after(plan: list[Slice], key: str) -> list[Slice]:
    """The slices of ``plan`` (in key order) narrowed to keys after ``key``, the last one a probe page listed."""
    left = []
    for piece in plan:
        if piece.end_at is not None and piece.end_at <= key:
            continue
        if key.startswith(piece.prefix) or piece.gap:
            if piece.start_after is None or piece.start_after < key:
                piece = replace(piece, start_after=key)
        elif piece.prefix < key:
            continue  # every key under this prefix sorts before ``key``
        left.append(piece)
    return left


def _fetch(store: Store, piece: Slice) -> list[ObjectInfo]:
    """One slice's objects; a gap slice is checked with a one-key request first (it is almost always empty)."""
    if not piece.gap:
        return list(store.list(piece.prefix, start_after=piece.start_after, end_at=piece.end_at))
    assert piece.below is not None
    peek = next(iter(store.list(piece.prefix, start_after=piece.start_after, end_at=piece.end_at, limit=1)), None)
    if peek is None or peek.key.startswith(piece.below):
        return []
    found = store.list(piece.prefix, start_after=piece.start_after, end_at=piece.end_at)
    return [info for info in found if not info.key.startswith(piece.below)]


def _window_slices(
    base: str, start_after: str | None, end_at: str | None, start_seconds: int, end_seconds: int, max_slices: int
) -> list[Slice] | None:
    """Exact hex-prefix slices for a short window, planned from its bounds alone (no probe): the longest prefixes
    (finest slices) that cover it in at most ``max_slices``. None for a window too long for 4-hex prefixes,
    where a probe page's density chooses better."""
    length = 8
    while length > 1 and (end_seconds >> 4 * (8 - length)) - (start_seconds >> 4 * (8 - length)) + 1 > max_slices:
        length -= 1
    if length < 4:
        return None
    first, last = start_seconds >> 4 * (8 - length), end_seconds >> 4 * (8 - length)
    slices = []
    for number in range(first, last + 1):
        current = f"{number:0{length}x}"
        if number > first:
            slices.extend(_gap(base, f"{number - 1:0{length}x}", current))
        slices.append(
            Slice(base + current, start_after if number == first else None, end_at if number == last else None)
        )
    return slices


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
        workers: int = IN_FLIGHT,
        include_other: bool = False,
    ) -> None:
        self.store, self.prefix = store, prefix
        self.start_seconds, self.end_seconds = start_seconds, end_seconds
        self.workers, self.include_other = workers, include_other
        self.events = self.verification = self.other = 0
        self.elsewhere = 0
        """With a window: events of other prefixes than the URL's (below it), which a window does not select."""
        self.elsewhere_prefixes: list[str] = []
        """A few of those prefixes, for a hint ("the keys are under events/auto/")."""

    def __iter__(self) -> Iterator[ArchivedEvent | ObjectInfo]:
        windowed = self.start_seconds is not None or self.end_seconds is not None
        folder = self._folder()
        for info in list_window(
            self.store,
            self.prefix,
            start_seconds=self.start_seconds,
            end_seconds=self.end_seconds,
            workers=self.workers,
        ):
            event = as_event(info)
            if event is not None and windowed and not self._selected(event, folder):
                continue
            if event is not None:
                self.events += 1
                yield event
            elif is_verification(info.key):
                self.verification += 1
            else:
                self.other += 1
                if self.include_other:
                    yield info

    def _folder(self) -> str:
        return self.prefix if not self.prefix or self.prefix.endswith("/") else self.prefix + "/"

    def _under(self, event: ArchivedEvent, folder: str) -> bool:
        """Whether the event's lead sits right under ``folder``; if not, it is counted (and its folder noted)."""
        at = event.key.lower().rfind(event.lead_id.lower())
        if event.key[:at] == folder:
            return True
        self.elsewhere += 1
        if len(self.elsewhere_prefixes) < 5 and event.key[:at] not in self.elsewhere_prefixes:
            self.elsewhere_prefixes.append(event.key[:at])
        return False

    def look_elsewhere(self, keys: int = 2000) -> None:
        """After a window found nothing: look at the first ``keys`` keys under the prefix for events in deeper
        folders, to say where they are (``elsewhere_prefixes``)."""
        folder = self._folder()
        for info in self.store.list(self.prefix, limit=keys):
            event = as_event(info)
            if event is not None:
                self._under(event, folder)

    def _selected(self, event: ArchivedEvent, folder: str) -> bool:
        """A window selects the leads made in it whose folder is the URL's prefix itself: a key that only sorts
        into the listed range (``events/...`` at a bucket's root) is not one of them, only counted for a hint."""
        if not self._under(event, folder):
            return False
        made = seconds_of(event.lead_id)
        if self.start_seconds is not None and made < self.start_seconds:
            return False
        return self.end_seconds is None or made <= self.end_seconds


def lead_objects(store: Store, prefix: str, lead_id: str, *, wanted: Iterable[str] = ()) -> dict[str, list[ObjectInfo]]:
    """The objects of one lead's folder, by event id (lower case), every spelling of each: one listing of the
    folder, then one of its upper-case spelling (if the id has letters) unless every ``wanted`` event id was
    already found. Cheaper than a HEAD per spelling."""
    found: dict[str, list[ObjectInfo]] = {}
    spellings = dict.fromkeys((lead_id.lower(), lead_id.upper()))  # one entry for an all-digit id
    missing = {event_id.lower() for event_id in wanted}
    for number, spelling in enumerate(spellings):
        if number and missing and missing <= found.keys():
            break
        for info in store.list(folder(prefix) + spelling + "/"):
            ids = parse_key(info.key)
            if ids is not None and ids[0] == lead_id.lower():
                found.setdefault(ids[1], []).append(info)
    return found


def find_event_keys(
    store: Store, prefix: str, event_id: str, *, lead_id: str | None = None, workers: int = IN_FLIGHT
) -> list[str]:
    """Keys that hold ``event_id`` under ``prefix``, every spelling (``.json`` or not, gzip, upper-case ids).

    With the lead id, its folder is listed. Without it, the leads made up to an hour, then a day, then 90 days
    before the event are listed (a lead precedes its events; feedback and retries come later).
    """
    if lead_id is not None:
        objects = lead_objects(store, prefix, lead_id, wanted=[event_id])
        return [info.key for info in objects.get(event_id.lower(), [])]
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


def read_many(
    store: Store, keys: Iterable[str], *, workers: int = IN_FLIGHT
) -> Iterator[tuple[str, bytes | ArchiveError]]:
    """``(key, stored bytes)`` for each key, in the order given, read in parallel; a failed read is yielded as
    its error rather than raised, so one broken object does not stop the rest."""

    def read(key: str) -> tuple[str, bytes | ArchiveError]:
        try:
            return key, store.read(key)
        except ArchiveError as exc:
            return key, exc

    return ordered_map(read, keys, workers=workers, ahead=workers * 4)


def ordered_map(function: Callable[[T], R], items: Iterable[T], *, workers: int, ahead: int) -> Iterator[R]:
    """``map(function, items)`` on a thread pool, results in input order, at most ``ahead`` in flight (memory
    stays bounded however many items); stopping early cancels what has not started."""
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="archive")
    pending: deque[Future[R]] = deque()
    todo = iter(items)
    try:
        for item in islice(todo, ahead):
            pending.append(pool.submit(function, item))
        while pending:
            result = pending.popleft().result()
            following = next(todo, None)
            if following is not None:
                pending.append(pool.submit(function, following))
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
