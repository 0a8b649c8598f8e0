"""Which source events a replay takes, and from where: the API, archives (listed by the window's lead ids) or an
id list (a dead-letter file works as is). What cannot be used is kept in ``Problems`` with why, never dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from firehose.api import EventQuery, LeadConduit
from firehose.archive import Store
from firehose.archive.base import IN_FLIGHT
from firehose.archive.layout import ArchivedEvent
from firehose.archive.listing import ArchiveListing, find_event_keys, read_many
from firehose.arguments import names
from firehose.codec import decode, records
from firehose.errors import ArchiveError, DataError, FirehoseError, UsageError
from firehose.event import EventView
from firehose.ids import is_object_id, seconds_of
from firehose.rules import RuleError, evaluate_all


@dataclass(frozen=True)
class Selection:
    """Which source events to replay. Empty tuples select everything."""

    start: datetime | None = None
    end: datetime | None = None
    flows: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    outcomes: tuple[str, ...] = ()
    reason: str | None = None
    """A regular expression searched in the event's ``reason``."""
    rules: tuple[dict[str, Any], ...] = ()

    def __post_init__(self) -> None:
        for name in ("flows", "sources", "outcomes"):  # a caller's outcomes="error" is one outcome
            object.__setattr__(self, name, names(getattr(self, name), name))
        if self.start is not None and self.end is not None and self.start > self.end:
            raise UsageError(f"--start {self.start.isoformat()} is after --end {self.end.isoformat()}")
        if self.reason is not None:
            try:
                re.compile(self.reason)
            except re.error as exc:
                raise UsageError(f"--reason {self.reason!r} is not a regular expression: {exc}") from None

    def matches(self, event: Mapping[str, Any]) -> bool:
        """Whether an event passes every filter (checked locally: for archives and id lists, and for what the
        API cannot filter)."""
        view = EventView(event)
        if view.type != "source":
            return False
        made = seconds_of(view.id)
        if self.start is not None and made < self.start.timestamp():
            return False
        if self.end is not None and made > self.end.timestamp():
            return False
        if self.flows and str(view.get("vars", "flow", "id")) not in self.flows:
            return False
        if self.sources and str(view.get("vars", "source", "id")) not in self.sources:
            return False
        if self.outcomes and str(event.get("outcome")) not in self.outcomes:
            return False
        if self.reason is not None and not re.search(self.reason, str(event.get("reason") or "")):
            return False
        if self.rules:
            try:
                return evaluate_all(list(self.rules), event)
            except RuleError as exc:
                raise UsageError(f"--rules: {exc}") from None
        return True

    def api_query(self) -> EventQuery:
        """The ``/events`` query that does as much of the filtering as LeadConduit documents."""
        rules = list(self.rules)
        for field_name, values in (("flow.id", self.flows), ("source.id", self.sources)):
            if values:
                rules.append({"lhv": field_name, "op": "is included in", "rhv": list(values)})
        return EventQuery(start=self.start, end=self.end, rules=tuple(rules), types=("source",), outcomes=self.outcomes)


@dataclass
class Problems:
    """Objects or ids that could not be used, each reported with its reason (never dropped in silence)."""

    items: list[tuple[str, str]] = field(default_factory=list)

    def add(self, where: str, reason: str) -> None:
        # An error that names the object already (``s3://b/k: not valid JSON``) is not prefixed with it twice.
        self.items.append((where, reason.removeprefix(f"{where}: ")))


def from_api(api: LeadConduit, selection: Selection) -> Iterator[dict[str, Any]]:
    for event in api.iter_events(selection.api_query()):
        if selection.matches(event):
            yield event


def from_archive(store: Store, prefix: str, selection: Selection, problems: Problems) -> Iterator[dict[str, Any]]:
    """Source events archived under ``prefix``, for the leads of the window (from an hour before its start)."""
    start = int(selection.start.timestamp()) - 3600 if selection.start else None
    end = int(selection.end.timestamp()) if selection.end else None
    listing = ArchiveListing(store, prefix, start_seconds=start, end_seconds=end)
    keys = (row.key for row in listing if isinstance(row, ArchivedEvent))
    for key, body in read_many(store, keys):
        where = f"{store.url}/{key}"
        if isinstance(body, ArchiveError):
            problems.add(where, str(body))
            continue
        try:
            found = records(body, where=where)
        except DataError as exc:
            problems.add(where, str(exc))
            continue
        for event in found:
            if isinstance(event, dict) and selection.matches(event):
                yield event


def from_ids(
    lines: Iterable[str], fetch: Callable[[str], dict[str, Any] | None], problems: Problems
) -> Iterator[dict[str, Any]]:
    """Events named in an id list: a bare id per line, or NDJSON lines with ``event_id``/``id`` and, as in a
    dead-letter file, the ``event`` itself (used as is, nothing fetched). A named event that is not a source
    event is refused (``UsageError``), since the caller asked for it by name."""
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        event: dict[str, Any] | None
        if text.startswith("{"):
            try:
                row = decode(text, where=f"--ids line {number}")
            except DataError as exc:  # that line fails alone, reported; the others go on
                problems.add(f"--ids line {number}", str(exc))
                continue
            if not isinstance(row, dict):
                problems.add(f"--ids line {number}", "not a JSON object")
                continue
            event = row.get("event") if isinstance(row.get("event"), dict) else None
            event_id = str(row.get("event_id") or row.get("id") or "")
            if event is not None and not is_object_id(event.get("id")):
                problems.add(f"--ids line {number}", "its event has no valid id")
                continue
            if event is None and event_id:
                if not is_object_id(event_id):  # never looked up: an archive listing reads its time from it
                    problems.add(f"--ids line {number}", f"{event_id[:40]!r} is not an event id")
                    continue
                event = fetch(event_id)
        else:
            event_id = text
            if not is_object_id(event_id):
                problems.add(f"--ids line {number}", f"{event_id[:40]!r} is not an event id")
                continue
            event = fetch(event_id)
        if event is None:
            problems.add(f"--ids line {number}", f"event {event_id or '?'} was not found")
            continue
        view = EventView(event)
        if view.type != "source":
            raise UsageError(
                f"event {view.id} (--ids line {number}) is a {view.type} event: replay sends source events only"
            )
        yield event


class Sources:
    """Where a replay's events come from: the API (``api``, or None), and archives (``(store, prefix)`` pairs)."""

    def __init__(
        self, api: LeadConduit | None, archives: Sequence[tuple[Store, str]], *, workers: int = IN_FLIGHT
    ) -> None:
        self.api, self.archives, self.workers = api, archives, workers

    def fetch(self, event_id: str, problems: Problems) -> dict[str, Any] | None:
        """One event by id: from the first archive that holds it, else from the API."""
        for store, prefix in self.archives:
            for key in find_event_keys(store, prefix, event_id, workers=self.workers):
                for record in records(store.read(key), where=f"{store.url}/{key}"):
                    if isinstance(record, dict) and str(record.get("id", "")).lower() == event_id.lower():
                        return record
        if self.api is not None:
            try:
                return self.api.get_event(event_id)
            except FirehoseError as exc:
                problems.add(event_id, str(exc))
        return None

    def select(
        self, selection: Selection, problems: Problems, *, ids: Iterable[str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """The selected source events: those named in ``ids`` (fetched where needed), else every matching one
        from the archives, then from the API."""
        if ids is not None:
            for event in from_ids(ids, lambda event_id: self.fetch(event_id, problems), problems):
                if selection.matches(event):
                    yield event
            return
        for store, prefix in self.archives:
            yield from from_archive(store, prefix, selection, problems)
        if self.api is not None:
            yield from from_api(self.api, selection)
