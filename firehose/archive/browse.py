"""Listing and reading an archive by URL, as library calls: ``list_archive`` (what ``firehose archive ls`` lists)
and ``read_archive`` (the records ``firehose archive cat`` prints). Both stream, so memory stays flat however
large the archive, and both close their store when the caller is done (use them in a ``with`` block).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from firehose.archive.base import IN_FLIGHT, Store
from firehose.archive.layout import ArchivedEvent, folder
from firehose.archive.listing import ArchiveListing, find_event_keys, read_many
from firehose.arguments import epoch_seconds, names
from firehose.codec import iter_records
from firehose.config import Settings
from firehose.connections import open_url
from firehose.errors import ArchiveError, DataError, UsageError
from firehose.ids import is_object_id

LISTED_FIELDS = ("time", "lead_id", "event_id", "size", "etag", "last_modified", "key")
"""A listed object's fields, in order (an object outside the layout has only size, etag, last_modified, key)."""


@dataclass(frozen=True)
class Unreadable:
    """An object (or an event id) that could not be read or parsed, or named nothing: reported, never skipped."""

    where: str
    reason: str

    def __str__(self) -> str:
        return self.reason if self.reason.startswith(self.where) else f"{self.where}: {self.reason}"


class _Browse:
    """An open store and the listing of a window, closed with the ``with`` block."""

    def __init__(self, url: str, settings: Settings, credential_id: str | None, workers: int) -> None:
        self.url, self.workers = url, workers
        self.store: Store
        self.store, where = open_url(url, settings, credential_id)
        self.prefix = where.prefix
        self.listing: ArchiveListing | None = None
        self._in_block = False

    def __enter__(self) -> Any:
        self._in_block = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.store.close()

    def _closing(self, items: Iterator[Any]) -> Iterator[Any]:
        """``items``, and the store closed after them when no ``with`` block will close it."""
        try:
            yield from items
        finally:
            if not self._in_block:
                self.store.close()

    def window(self, start: int | None, end: int | None, *, include_other: bool = False) -> ArchiveListing:
        self.listing = ArchiveListing(
            self.store, self.prefix, start_seconds=start, end_seconds=end, workers=self.workers,
            include_other=include_other,
        )  # fmt: skip
        return self.listing

    def elsewhere(self) -> list[str]:
        """Deeper prefixes that hold events a window passed over (looked for when it found no event at all), as
        URLs to list instead; empty when there are none."""
        listing = self.listing
        if listing is None:
            return []
        if not listing.events and not listing.elsewhere:
            listing.look_elsewhere()
        return [f"{self.url.rstrip('/')}/{prefix.rstrip('/')}" for prefix in listing.elsewhere_prefixes]


class ArchiveList(_Browse):
    """The objects under a URL (for a window: the events of its leads), as report rows; then their ``counts``."""

    FIELDS = LISTED_FIELDS

    def __init__(
        self,
        url: str,
        settings: Settings,
        *,
        start: int | None,
        end: int | None,
        include_other: bool,
        credential_id: str | None,
        workers: int,
    ) -> None:
        super().__init__(url, settings, credential_id, workers)
        self.objects = self.window(start, end, include_other=include_other)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self._closing(self._rows())

    def _rows(self) -> Iterator[dict[str, Any]]:
        for item in self.objects:
            if isinstance(item, ArchivedEvent):
                yield {name: getattr(item, name) for name in LISTED_FIELDS}
            else:
                yield {"size": item.size, "etag": item.etag, "last_modified": item.last_modified, "key": item.key}

    @property
    def counts(self) -> dict[str, int]:
        listing = self.objects
        return {"events": listing.events, "verification_files": listing.verification, "other_keys": listing.other}


def list_archive(
    url: str,
    settings: Settings,
    *,
    start: datetime | int | None = None,
    end: datetime | int | None = None,
    include_other: bool = False,
    credential_id: str | None = None,
    workers: int = IN_FLIGHT,
) -> ArchiveList:
    """The archived events under ``url``; with ``start``/``end`` (epoch seconds), those of the leads made in that
    window, listed as one key range in parallel slices. Verification files are counted, not listed; keys outside
    the layout are counted, and listed with ``include_other``. Use in a ``with`` block (or iterate it to the end:
    the store is closed then)."""
    first, last = _window(start, end)
    return ArchiveList(
        url, settings, start=first, end=last, include_other=include_other, credential_id=credential_id,
        workers=workers,
    )  # fmt: skip


def _window(start: datetime | int | None, end: datetime | int | None) -> tuple[int | None, int | None]:
    """A window as epoch seconds (a ``datetime`` or seconds; naive is UTC); a ``UsageError`` when it ends first."""
    first, last = epoch_seconds(start, "--start"), epoch_seconds(end, "--end")
    if first is not None and last is not None and first > last:
        raise UsageError("--start is after --end")
    return first, last


class ArchiveReading(_Browse):
    """The records of the objects named, or of a window's leads, in order; an ``Unreadable`` in their place for
    what could not be read, parsed or found (the rest still come)."""

    def __init__(
        self,
        url: str,
        settings: Settings,
        *,
        targets: Iterable[str],
        start: int | None,
        end: int | None,
        lead_id: str | None,
        credential_id: str | None,
        workers: int,
    ) -> None:
        super().__init__(url, settings, credential_id, workers)
        self.targets, self.lead_id = tuple(targets), lead_id
        self.in_window = start is not None or end is not None
        self.start, self.end = start, end
        self.problems = 0
        """Objects or event ids that yielded an ``Unreadable``."""

    def __iter__(self) -> Iterator[Any]:
        return self._closing(self._all())

    def _all(self) -> Iterator[Any]:
        keys: list[str] = []
        for target in self.targets:
            found = self._key_of(target)
            if isinstance(found, Unreadable):
                self.problems += 1
                yield found
            else:
                keys.append(found)
        yield from self._records(keys)
        if self.in_window:
            listing = self.window(self.start, self.end)
            yield from self._records(item.key for item in listing if isinstance(item, ArchivedEvent))

    def _key_of(self, target: str) -> str | Unreadable:
        """A KEY (whole, or relative to the URL's prefix) as it is; an event id, found by a search."""
        if not is_object_id(target):
            return target if target.startswith(self.prefix) else folder(self.prefix) + target
        found = find_event_keys(self.store, self.prefix, target.lower(), lead_id=self.lead_id, workers=self.workers)
        return found[0] if found else Unreadable(f"event {target}", f"event {target} not found under {self.url}")

    def _records(self, keys: Iterable[str]) -> Iterator[Any]:
        for key, body in read_many(self.store, keys, workers=self.workers):
            where = f"{self.store.url}/{key}"
            try:
                if isinstance(body, Exception):
                    raise body
                yield from iter_records(body, where=where)  # one at a time: memory
            except (DataError, ArchiveError) as exc:  # a missing, refused or unreadable key: the next one too
                self.problems += 1
                yield Unreadable(where, str(exc))


def read_archive(
    url: str,
    settings: Settings,
    *,
    targets: str | Iterable[str] = (),
    start: datetime | int | None = None,
    end: datetime | int | None = None,
    lead_id: str | None = None,
    credential_id: str | None = None,
    workers: int = IN_FLIGHT,
) -> ArchiveReading:
    """Every record of the objects ``targets`` name (keys, or event ids found by a search; ``lead_id`` saves the
    search), then of every event of the leads made in ``start``..``end`` (epoch seconds). An object may hold one
    event, a JSON array or NDJSON, gzip-compressed or not. Use in a ``with`` block (or iterate it to the end)."""
    targets = names(targets, "targets")
    start, end = _window(start, end)
    if not targets and start is None and end is None:
        raise UsageError("give KEYs or EVENT_IDs, or --start/--end for a window")
    if lead_id is not None and not is_object_id(lead_id):
        raise UsageError(f"--lead-id {lead_id!r} is not a 24-hex-digit lead id")
    return ArchiveReading(
        url, settings, targets=targets, start=start, end=end, lead_id=lead_id, credential_id=credential_id,
        workers=workers,
    )  # fmt: skip
