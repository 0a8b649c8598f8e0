"""Where events should be in the archive, and whether they are there: ``locate(events, settings)``, the locate job
as one library call, and the check of one event's destinations it runs (``check_destinations``).

Brings the LeadConduit event (its ``firehose`` property and lead id) together with the stores its destinations
name; ``api`` and ``archive`` never meet anywhere else but in such modules (architecture.md §3).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from firehose.archive import ObjectInfo, Store
from firehose.archive.listing import lead_objects
from firehose.config import Settings
from firehose.connections import api_client, destination_opener
from firehose.errors import ArchiveError, ConfigError, DataError, ExitCode
from firehose.event import Destination, EventView

SCHEMA = "firehose.locate/1"
"""The versioned report schema: a field is added, never renamed or removed, within /1."""

FIELDS = ("status", "service", "bucket", "key", "url", "credential_id", "size", "etag", "last_modified", "error")
"""A destination's fields in a report, in order; ``event_id`` follows."""


@dataclass(frozen=True)
class Location:
    """One destination of an event: where its object should be, and what was found there."""

    destination: Destination
    key: str
    found: ObjectInfo | None = None
    error: str | None = None
    error_code: ExitCode | None = None

    @property
    def status(self) -> str:
        if not self.destination.enabled:
            return "disabled"
        if self.error:
            return "error"
        return "present" if self.found else "missing"

    def as_row(self) -> dict[str, Any]:
        found = self.found
        return {
            "status": self.status,
            "url": f"{self.destination.scheme}://{self.destination.bucket}/{self.key}",
            "service": self.destination.service,
            "bucket": self.destination.bucket,
            "key": found.key if found else self.key,
            "credential_id": self.destination.credential_id,
            "size": found.size if found else None,
            "etag": found.etag if found else None,
            "last_modified": found.last_modified if found else None,
            "error": self.error,
        }


def check_destinations(
    event: Mapping[str, Any],
    open_store: Callable[[Destination], Store],
    *,
    destinations: list[Destination] | None = None,
) -> list[Location]:
    """Check each destination of ``event`` (all of them, disabled ones reported as such).

    ``open_store`` gives the store for a destination (its bucket, with the credential its ``credential_id``
    maps to). ``destinations`` replaces the event's own (``--archive URL``). Any spelling of the key is
    tolerated (no ``.json``, gzip, upper-case ids). A store that fails, or a credential that is not mapped, is
    reported on its row; the other destinations are still checked.
    """
    view = EventView(event)
    lead_id = view.lead_id
    if lead_id is None:
        raise DataError(f"event {view.id} names no lead id (vars.lead.id or the source response's lead.id)")
    targets = destinations if destinations is not None else view.destinations(include_disabled=True)
    locations = []
    for destination in targets:
        key = destination.key(lead_id, view.id)
        if not destination.enabled:
            locations.append(Location(destination, key))
            continue
        try:
            store = open_store(destination)
            try:
                spellings = lead_objects(store, destination.prefix, lead_id, wanted=[view.id]).get(view.id.lower())
                found = next((i for i in spellings if i.key == key), spellings[0]) if spellings else None
            finally:
                store.close()
        except (ArchiveError, ConfigError) as exc:
            locations.append(Location(destination, key, error=str(exc), error_code=exc.exit_code))
            continue
        locations.append(Location(destination, key, found=found))
    return locations


def exit_code(locations: Iterable[Location]) -> ExitCode:
    """Configuration problems first (3), then store errors (5), then anything missing (1), else 0."""
    locations = list(locations)
    codes = {location.error_code for location in locations if location.error_code is not None}
    for code in (ExitCode.CONFIG, ExitCode.ARCHIVE):
        if code in codes:
            return code
    return ExitCode.DIFFERENCES if any(loc.status == "missing" for loc in locations) else ExitCode.OK


@dataclass(frozen=True)
class EventLocations:
    """One event's destinations, each with what was found there."""

    event_id: str
    locations: tuple[Location, ...]


@dataclass(frozen=True)
class LocateResult:
    """Where each event asked about should be in the archive and what is there, and what that means (the exit
    code). ``events`` keeps the order they were given in."""

    events: tuple[EventLocations, ...]

    @property
    def locations(self) -> tuple[Location, ...]:
        """Every event's destinations, in order."""
        return tuple(location for event in self.events for location in event.locations)

    @property
    def without_destinations(self) -> tuple[str, ...]:
        """The ids of the events whose firehose names no destination at all."""
        return tuple(event.event_id for event in self.events if not event.locations)

    @property
    def exit_code(self) -> ExitCode:
        """3 when a credential_id has no mapping, else 5 when a store failed, else 1 when an enabled destination
        lacks its event, else 0."""
        return exit_code(self.locations)

    def rows(self) -> list[dict[str, Any]]:
        """One row per destination of each event (``Location.as_row`` and the event's id)."""
        return [
            {**location.as_row(), "event_id": event.event_id} for event in self.events for location in event.locations
        ]

    def report(self) -> dict[str, Any]:
        """The result as the versioned report (``firehose.locate/1``), ready for JSON: what ``firehose locate
        --format json`` writes. ``event_id`` names the event when there is one, null for several
        (``event_ids`` lists them all)."""
        ids = [event.event_id for event in self.events]
        return {
            "schema": SCHEMA,
            "event_id": ids[0] if len(ids) == 1 else None,
            "event_ids": ids,
            "destinations": [{name: _plain(row[name]) for name in (*FIELDS, "event_id")} for row in self.rows()],
            "exit_code": int(self.exit_code),
        }


def _plain(value: Any) -> Any:
    """A report value: a time as ISO 8601 UTC to the second (``2026-11-01T00:00:03Z``), as listings write it."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value.tzinfo else value.isoformat()
    return value


def locate(
    events: Iterable[str | Mapping[str, Any]],
    settings: Settings,
    *,
    archive: Destination | str | None = None,
    credential_id: str | None = None,
) -> LocateResult:
    """Where each of ``events`` should be in the archive, and whether it is there: each given as an event id
    (fetched from ``GET /events/{id}`` as the settings say) or as the event itself.

    Each event's firehose destinations are checked in its own stores, with the credentials the settings map for
    their ``credential_id`` (or ``credential_id`` for all). ``archive`` (a ``Destination`` or a store URL) is
    looked in instead of each event's own destinations, for other layouts. A store that fails or a credential
    that is not mapped is reported on its row; an event that names no lead id raises ``DataError``.
    """
    wanted = [events] if isinstance(events, (str, Mapping)) else list(events)
    override = Destination.from_url(archive, credential_id, name="--archive") if isinstance(archive, str) else archive
    open_for = destination_opener(settings, credential_id)
    fetched = _fetch([given for given in wanted if isinstance(given, str)], settings)
    found = []
    for given in wanted:
        event = fetched[given] if isinstance(given, str) else given
        event_id = given if isinstance(given, str) else EventView(event).id
        locations = check_destinations(event, open_for, destinations=[override] if override else None)
        found.append(EventLocations(event_id, tuple(locations)))
    return LocateResult(tuple(found))


def _fetch(event_ids: list[str], settings: Settings) -> dict[str, Mapping[str, Any]]:
    """The events ``event_ids`` name, from the API (not opened when there are none)."""
    if not event_ids:
        return {}
    from firehose.api import LeadConduit

    with api_client(settings) as http:
        api = LeadConduit(http)
        return {event_id: api.get_event(event_id) for event_id in dict.fromkeys(event_ids)}
