"""The firehose's key layout, read tolerantly: ``<prefix>/<lead id>/<event id>.json`` (facts.md §1.2).

Keys are parsed, not constructed from assumptions: the prefix may be empty or end in ``/``, the ``.json`` may
be missing, a ``.gz`` may follow, ids may be upper case. One event is one object whatever its key's spelling:
callers compare ``parse_key`` identities, never keys. LeadConduit's verification files
(``leadconduit_verification_*.txt``, ``leadconduit-events/test.txt``) are recognised and skipped.

Because a lead id starts with 8 hex digits of Unix seconds, keys under a prefix sort by the lead's creation
time, so a time window of leads is one contiguous key range (architecture.md §4).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from firehose.archive.base import ObjectInfo, request_prefix
from firehose.ids import highest_id_at, lowest_id_at, time_of

KEY_PATTERN = re.compile(r"(?:^|/)([0-9a-fA-F]{24})/([0-9a-fA-F]{24})(?:\.json)?(?:\.gz)?$")
VERIFICATION_PATTERN = re.compile(r"(?:^|/)(?:leadconduit_verification_[^/]*\.txt|leadconduit-events/test\.txt)$")
KEY_END = "\U0010ffff"
"""Sorts after every character a key can hold: ``x + KEY_END`` bounds every key that starts with ``x``."""


@dataclass(frozen=True, slots=True)
class ArchivedEvent:
    """One listed object that has the firehose's layout."""

    key: str
    lead_id: str
    event_id: str
    size: int
    etag: str
    last_modified: datetime

    @property
    def time(self) -> datetime:
        """When the event was created (from its ObjectId, second resolution)."""
        return time_of(self.event_id)


def parse_key(key: str) -> tuple[str, str] | None:
    """``(lead id, event id)`` of a firehose key, lower-cased; None for any other key."""
    match = KEY_PATTERN.search(key)
    if match is None:
        return None
    return match.group(1).lower(), match.group(2).lower()


def identity(key: str) -> tuple[str, str, str] | None:
    """What makes a key one event's object, whatever its spelling: ``(folder, lead id, event id)``, ids lower
    case, the folder (the key up to the lead id) as written; None for any other key."""
    match = KEY_PATTERN.search(key)
    if match is None:
        return None
    return key[: match.start(1)], match.group(1).lower(), match.group(2).lower()


def lead_segment(key: str) -> str | None:
    """The lead id of a firehose key exactly as spelt in it (case kept); None for any other key."""
    match = KEY_PATTERN.search(key)
    return match.group(1) if match else None


def upper_case_lead(key: str) -> bool:
    """Whether a key's lead id is spelt in upper case (``6AE1...``): such keys sort apart from lower-case ones
    (``A`` < ``a``), so a listing of a window has to look for them in a range of their own."""
    lead = lead_segment(key)
    return lead is not None and lead != lead.lower() and lead == lead.upper()


def preferred(keys: list[str], wanted: str) -> str:
    """The one key that stands for an event stored under several spellings: the one expected (``wanted``), else
    the first in key order. One event is one object, however many spellings of it a store holds."""
    return wanted if wanted in keys else min(keys)


def is_verification(key: str) -> bool:
    """A file LeadConduit writes to test a destination, not an event."""
    return VERIFICATION_PATTERN.search(key) is not None


def as_event(info: ObjectInfo) -> ArchivedEvent | None:
    ids = parse_key(info.key)
    if ids is None:
        return None
    return ArchivedEvent(info.key, ids[0], ids[1], info.size, info.etag, info.last_modified)


def folder(prefix: str) -> str:
    """The key prefix events sit under: empty, or ending in ``/``."""
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


def lead_bounds(prefix: str, start_seconds: int | None, end_seconds: int | None) -> tuple[str | None, str | None]:
    """The key range ``(start_after, end_at]`` that holds every event of leads made in the window.

    ``start_after`` is exclusive and ``end_at`` inclusive; None means unbounded on that side.
    """
    base = folder(prefix)
    start_after = base + _below(start_seconds) if start_seconds is not None else None
    end_at = base + highest_id_at(end_seconds) + "/" + KEY_END if end_seconds is not None else None
    return start_after, end_at


def lead_bounds_upper(prefix: str, start_seconds: int | None, end_seconds: int | None) -> tuple[str | None, str | None]:
    """``lead_bounds`` for keys whose ids are spelt in upper case (the prefix kept as it is)."""
    base = folder(prefix)
    start_after = base + _below(start_seconds).upper() if start_seconds is not None else None
    end_at = base + highest_id_at(end_seconds).upper() + "/" + KEY_END if end_seconds is not None else None
    return start_after, end_at


def upper_case_ranges(
    prefix: str, start_seconds: int | None, end_seconds: int | None
) -> list[tuple[str | None, str | None]]:
    """``lead_bounds_upper`` cut, where its two ends share only digits, at the first hex digit they differ in:
    ranges in key order whose ends share a letter, so that the prefix each request sends (``request_prefix``)
    holds no lower-case key.

    Why: a window's upper-case range is almost always empty, yet ``6ABDA28...`` to ``6B2B...`` share only ``6``,
    and a request with ``Prefix=events/6`` made Azurite go through every lower-case key under it (310 ms of its
    one thread for 5,000 blobs, against 2 ms for ``events/6A`` and ``events/6B``): the reads bench's Azure run
    lost to rclone by that. A real store answers both from its index; there this costs a request or two more."""
    start_after, end_at = lead_bounds_upper(prefix, start_seconds, end_seconds)
    if start_after is None or end_at is None:
        return [(start_after, end_at)]
    base = folder(prefix)
    shared = request_prefix(base, start_after, end_at)  # what one request for the range would send
    at = len(shared)
    if any(letter in shared[len(base) :] for letter in "ABCDEF") or at >= min(len(start_after), len(end_at)):
        return [(start_after, end_at)]  # one request already asks for upper-case keys only
    low, high = start_after[at], end_at[at]
    return [
        (start_after if digit == low else shared + digit, end_at if digit == high else shared + digit + KEY_END)
        for digit in "0123456789ABCDEF"
        if low <= digit <= high
    ]


def _below(seconds: int) -> str:
    """A key part that sorts after every lead id made before ``seconds`` and before every one made at or after it,
    and is not itself an id: the smallest id of the second, its last digit cut. (The id itself would do for S3,
    but SeaweedFS takes a ``StartAfter`` that names a folder as "after that whole folder", so the lead whose id
    is exactly the second's smallest would be skipped.)"""
    return lowest_id_at(seconds)[:-1]


def boundary(prefix: str, seconds: int) -> str:
    """A key bound between the leads made before ``seconds`` and those made at or after it."""
    return folder(prefix) + _below(seconds)
