"""Where one event should be in the archive, and whether it is there.

Brings the LeadConduit event (its ``firehose`` property and lead id) together with the stores its destinations
name; ``api`` and ``archive`` never meet anywhere else but in such modules (architecture.md §3).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from firehose.archive import ObjectInfo, Store
from firehose.archive.listing import lead_objects
from firehose.errors import ArchiveError, ConfigError, DataError, ExitCode
from firehose.event import Destination, EventView


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


def locate(
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


def exit_code(locations: list[Location]) -> ExitCode:
    """Configuration problems first (3), then store errors (5), then anything missing (1), else 0."""
    codes = {location.error_code for location in locations if location.error_code is not None}
    for code in (ExitCode.CONFIG, ExitCode.ARCHIVE):
        if code in codes:
            return code
    return ExitCode.DIFFERENCES if any(loc.status == "missing" for loc in locations) else ExitCode.OK
