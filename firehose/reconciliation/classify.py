"""Reconciliation's pure core: what the API says should be archived, against what a listing or an object read
found, as ``findings.Finding``s.

This module does no I/O and reads no clock: listings, events and objects are passed in, so every rule here is
tested without servers. ``run`` drives it (listing, paging, repair, checkpoints).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from firehose.archive.base import ObjectInfo
from firehose.archive.layout import identity, preferred
from firehose.codec import canonical
from firehose.event import Destination, EventView
from firehose.findings import Finding, Verdict, parse_expiry


@dataclass(frozen=True, slots=True)
class Expected:
    """One object the API says a destination should hold."""

    event_id: str
    lead_id: str
    type: str | None
    destination: Destination
    key: str
    expires_at: datetime | None
    ended: float | None = None
    """The event's end (``EventView.ended``), Unix seconds: what its delivery lag counts from."""


def expected_objects(event: Mapping[str, Any], *, destinations: list[Destination] | None = None) -> list[Expected]:
    """The objects one API event should have: one per enabled destination (or per ``destinations`` given, for an
    ``--archive`` override). Empty when the firehose sends it nowhere or the lead id is unknown: an override says
    where the archive is, not that events the firehose never sent should be in it (a tryout against one store
    reported 133 firehose-disabled events as missing)."""
    view = EventView(event)
    lead_id = view.lead_id
    own = view.destinations()
    if lead_id is None or not own:
        return []
    targets = destinations if destinations is not None else own
    expires = parse_expiry(event.get("expires_at"))
    return [Expected(view.id, lead_id, view.type, d, d.key(lead_id, view.id), expires, view.ended) for d in targets]


def _finding(verdict: Verdict, item: Expected, key: str | None = None, **extra: Any) -> Finding:
    return Finding(
        verdict,
        item.event_id,
        key or item.key,
        item.destination.url(),
        item.lead_id,
        item.type,
        item.expires_at,
        **extra,
    )


def by_identity(listed: Iterable[ObjectInfo]) -> dict[tuple[str, str, str], list[str]]:
    """The listed keys of the firehose layout by ``layout.identity`` (folder, lead id, event id): every spelling
    of one event (``.json`` or not, gzip, upper-case ids) under one identity."""
    keys: dict[tuple[str, str, str], list[str]] = {}
    for info in listed:
        found = identity(info.key)
        if found is not None:
            keys.setdefault(found, []).append(info.key)
    return keys


def classify_presence(expected: Iterable[Expected], listed: Mapping[str, ObjectInfo]) -> Iterator[Finding]:
    """``match`` or ``missing`` for each expected object, from a listing alone (the nightly default).

    An event is matched by its identity, not its key's spelling: a key without ``.json``, gzip-compressed or
    with upper-case ids is the object (facts.md §1.2 leaves the layout's spelling open). Each event is
    classified once per destination, however often the API returned it or the store holds it.
    """
    spellings = by_identity(listed.values())
    seen: set[tuple[str, tuple[str, str, str] | None]] = set()
    for item in expected:
        wanted = identity(item.key)
        if (item.destination.url(), wanted) in seen:
            continue
        seen.add((item.destination.url(), wanted))
        keys = spellings.get(wanted) if wanted is not None else None
        if keys:
            yield _finding(Verdict.MATCH, item, key=preferred(keys, item.key))
        else:
            yield _finding(Verdict.MISSING, item)


def archive_only(
    listed: Iterable[ObjectInfo], expected_ids: set[str], *, destination: str, start: datetime, end: datetime
) -> Iterator[Finding]:
    """Listed events created inside ``[start, end]`` that the API did not return, one finding per event.

    Only keys of the firehose layout count, judged by their event id's time; an event the API returned
    (``expected_ids``, lower case) is never archive-only, whatever its key's spelling.
    """
    for (_, lead_id, event_id), keys in by_identity(listed).items():
        made = datetime.fromtimestamp(int(event_id[:8], 16), tz=start.tzinfo)
        if not start <= made <= end or event_id in expected_ids:
            continue
        yield Finding(
            Verdict.ARCHIVE_ONLY,
            event_id,
            min(keys),
            destination,
            lead_id,
            reason="in the archive, not returned by the API (expired from it, or never reported)",
        )


def differing_fields(api_event: Mapping[str, Any], archived: Mapping[str, Any]) -> tuple[str, ...]:
    """Top-level fields whose canonical JSON differs (key order and whitespace do not count)."""
    if canonical(api_event) == canonical(archived):
        return ()  # the usual answer, in two encodings instead of two per field (26 fields: 52 a read)
    names = sorted(set(api_event) | set(archived))
    return tuple(name for name in names if canonical(api_event.get(name)) != canonical(archived.get(name)))


def classify_content(
    item: Expected, api_event: Mapping[str, Any], records: list[Any], *, include_pii: bool = False
) -> Finding:
    """``match`` or ``differ`` from an archived object's records (the one whose id is the event's). With
    ``include_pii`` a ``differ`` carries both values of each differing field; without, only their names."""
    same_id = [r for r in records if isinstance(r, Mapping) and str(r.get("id", "")).lower() == item.event_id]
    if not same_id:
        return _finding(Verdict.ERROR, item, reason="the archived object holds no record with this event's id")
    fields = differing_fields(api_event, same_id[0])
    if fields:
        values = (
            {name: {"archive": same_id[0].get(name), "api": api_event.get(name)} for name in fields}
            if include_pii
            else None
        )
        return _finding(Verdict.DIFFER, item, reason=f"{len(fields)} fields differ", fields=fields, values=values)
    return _finding(Verdict.MATCH, item)


def sampled(event_id: str, percent: float) -> bool:
    """Whether ``--verify sample:P`` reads this event: a fixed hash of the id, so the same events every run."""
    if percent >= 100:
        return True
    bucket = int.from_bytes(hashlib.sha256(event_id.lower().encode()).digest()[:4], "big") % 10_000
    return bucket < percent * 100
