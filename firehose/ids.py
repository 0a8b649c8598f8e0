"""BSON ObjectId arithmetic.

An ObjectId is 12 bytes written as 24 hex digits: 4 bytes of Unix seconds, 5 random bytes, a 3-byte counter
(https://www.mongodb.com/docs/manual/core/object-id). Its first 8 hex digits therefore sort by creation
second, which is what lets firehose turn a time window into a range of lead ids (architecture.md §4).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

ID_PATTERN = re.compile(r"^[0-9a-fA-F]{24}$")
"""What LeadConduit's ``ID`` schema accepts."""

MAX_SECONDS = 0xFFFFFFFF
"""The largest time an ObjectId can hold (year 2106)."""


def is_object_id(value: object) -> bool:
    """True when ``value`` is a 24-hex-digit string."""
    return isinstance(value, str) and ID_PATTERN.match(value) is not None


def seconds_of(object_id: str) -> int:
    """The Unix second an ObjectId was made in."""
    return int(object_id[:8], 16)


def time_of(object_id: str) -> datetime:
    """The UTC time an ObjectId was made in (second resolution)."""
    return datetime.fromtimestamp(seconds_of(object_id), tz=UTC)


def _clamp(seconds: int) -> int:
    return max(0, min(MAX_SECONDS, seconds))


def lowest_id_at(seconds: int) -> str:
    """The smallest ObjectId of a second: every id made at or after it sorts at or above this one."""
    return f"{_clamp(seconds):08x}" + "0" * 16


def highest_id_at(seconds: int) -> str:
    """The largest ObjectId of a second: every id made at or before it sorts at or below this one."""
    return f"{_clamp(seconds):08x}" + "f" * 16


def make_id(seconds: int, random5: int, counter: int) -> str:
    """An ObjectId from its three parts (seconds, 40 random bits, 24-bit counter)."""
    return f"{_clamp(seconds):08x}{random5 & 0xFF_FFFF_FFFF:010x}{counter & 0xFF_FFFF:06x}"
