"""One grammar for every duration a flag takes (``--lag``, ``--recheck``, ``--expiring-within``,
``--settle-after``, ``--require-retention``): a number and a unit, several of them added up (``2y6mo``,
``1h30min``).

Units are required, and months are spelled so that nobody takes them for minutes: ``s`` (seconds), ``min``,
``h``, ``d``, ``w``, ``mo`` (30 days), ``y`` (365 days), or the words (``minutes``, ``months``, ...). A bare
``m`` is refused with the two readings named, never guessed. Negative, infinite and absurd (over 100 years)
values are refused, each with the flag named.
"""

from __future__ import annotations

import re
from datetime import timedelta

from firehose.errors import UsageError

UNITS = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86_400, "day": 86_400, "days": 86_400,
    "w": 604_800, "wk": 604_800, "week": 604_800, "weeks": 604_800,
    "mo": 2_592_000, "month": 2_592_000, "months": 2_592_000,
    "y": 31_536_000, "yr": 31_536_000, "year": 31_536_000, "years": 31_536_000,
}  # fmt: skip
"""Seconds per unit: a month is 30 days and a year 365, as retention policies count them."""
LONGEST = timedelta(days=36_500)
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]+)")
EXAMPLES = "such as 90s, 15min, 2h, 7d, 18mo or 7y"


def parse_duration(text: str, flag: str, *, allow_zero: bool = True) -> timedelta:
    """The duration ``text`` says; ``UsageError`` naming ``flag`` when it says none, or an impossible one."""
    cleaned = text.strip().lower()
    parts = _PART.findall(cleaned)
    if not parts or _PART.sub("", cleaned).strip():
        hint = " (a unit is required)" if re.fullmatch(r"[\d.]+", cleaned) else ""
        raise UsageError(f"{flag} {text!r} is not a duration{hint}: write one {EXAMPLES}")
    seconds = 0.0
    for number, unit in parts:
        if unit == "m":
            raise UsageError(f"{flag} {text!r}: 'm' could be minutes or months; write {number}min or {number}mo")
        if unit not in UNITS:
            raise UsageError(f"{flag} {text!r}: unknown unit {unit!r}; write a duration {EXAMPLES}")
        seconds += float(number) * UNITS[unit]
    if seconds > LONGEST.total_seconds():
        raise UsageError(f"{flag} {text!r} is longer than 100 years")
    if seconds == 0 and not allow_zero:
        raise UsageError(f"{flag} {text!r} must be longer than nothing")
    return timedelta(seconds=seconds)


def days_of(text: str, flag: str) -> int:
    """A duration in whole days (rounded up), for retention: ``7y`` is 2,555 days."""
    duration = parse_duration(text, flag, allow_zero=False)
    return -(-int(duration.total_seconds()) // 86_400)
