"""What reconciling an (event, destination) pair can conclude: the bottom layer, which the state database, the
classifier, the run, audits and reports all share, and which imports nothing of firehose's.

Every (event, destination) pair lands in exactly one class (architecture.md §4):

- ``match``: in the API and in the archive (and, when content was read, the same canonical JSON);
- ``missing``: in the API, not in the archive;
- ``differ``: in both, canonical content differs (the differing top-level fields are named);
- ``archive_only``: in the archive inside the window, not returned by the API (expired from it, or never
  reported);
- ``error``: could not be decided, with the reason;
- ``not_configured``: the event's firehose sends it nowhere (disabled), so it is no gap;
- ``repaired``: was ``missing``, and ``--repair`` wrote it and read it back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class Verdict(StrEnum):
    MATCH = "match"
    MISSING = "missing"
    DIFFER = "differ"
    ARCHIVE_ONLY = "archive_only"
    ERROR = "error"
    NOT_CONFIGURED = "not_configured"
    REPAIRED = "repaired"
    """Was ``missing``; ``--repair`` wrote it, read it back and found it equal."""


GAPS = (Verdict.MISSING, Verdict.DIFFER)
"""The classes that make a run exit 1 (after repair)."""


@dataclass(frozen=True, slots=True)
class Finding:
    """The class of one (event, destination) pair, with what a report needs to say about it."""

    verdict: Verdict
    event_id: str
    key: str
    destination: str  # the destination's URL, e.g. s3://bucket/prefix
    lead_id: str | None = None
    type: str | None = None
    expires_at: datetime | None = None
    reason: str | None = None
    fields: tuple[str, ...] = field(default_factory=tuple)
    """For ``differ``: the top-level fields whose canonical JSON differs."""
    values: Mapping[str, Any] | None = None
    """For ``differ`` with ``--include-pii`` only: each differing field's ``{"archive": ..., "api": ...}``. Lead
    data, so it is kept only when asked for."""


def parse_expiry(value: Any) -> datetime | None:
    """``expires_at`` as an aware datetime in UTC; None when absent or unreadable (tolerant: not documented as
    required). A time without a zone is taken as UTC (compared with an aware one it raised TypeError); one that
    cannot be told in UTC (``9999-12-31T23:59-05:00``) is unknown."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        return None
