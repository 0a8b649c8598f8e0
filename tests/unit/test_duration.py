"""One duration grammar for every flag: units required, months never taken for minutes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from firehose.duration import days_of, parse_duration
from firehose.errors import UsageError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15min", timedelta(minutes=15)),
        ("1h30min", timedelta(minutes=90)),
        ("7d", timedelta(days=7)),
        ("9w", timedelta(weeks=9)),
        ("18mo", timedelta(days=540)),
        ("1y", timedelta(days=365)),
        ("2 years 6 months", timedelta(days=910)),
        ("0s", timedelta(0)),
    ],
)
def test_durations_read_as_written(text: str, expected: timedelta) -> None:
    assert parse_duration(text, "--flag") == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("7", "a unit is required"),
        ("15m", "'m' could be minutes or months; write 15min or 15mo"),
        ("-3d", "is not a duration"),
        ("inf", "is not a duration"),
        ("nan", "is not a duration"),
        ("99999y", "longer than 100 years"),
        ("7 fortnights", "unknown unit 'fortnights'"),
        ("", "is not a duration"),
        ("soon", "is not a duration"),
    ],
)
def test_nonsense_is_refused_naming_the_flag(text: str, says: str) -> None:
    with pytest.raises(UsageError, match="--expiring-within") as raised:
        parse_duration(text, "--expiring-within")
    assert says in str(raised.value)


def test_retention_days_round_up_and_refuse_nothing() -> None:
    assert days_of("7y", "--require-retention") == 2555 and days_of("36h", "--require-retention") == 2
    with pytest.raises(UsageError, match="longer than nothing"):
        days_of("0d", "--require-retention")
