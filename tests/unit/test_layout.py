from __future__ import annotations

import pytest

from firehose.archive.layout import KEY_END, boundary, is_verification, lead_bounds, parse_key
from firehose.archive.listing import _slices
from firehose.ids import lowest_id_at

LEAD, EVENT = "6ae18ae9a55055783f30ae4b", "6ae18ae9a55055783f30ae4c"


@pytest.mark.parametrize(
    "key",
    [
        f"{LEAD}/{EVENT}.json",
        f"events/{LEAD}/{EVENT}.json",
        f"a/b/{LEAD}/{EVENT}",
        f"{LEAD}/{EVENT}.json.gz",
        f"x/{LEAD.upper()}/{EVENT.upper()}.json",
    ],
)
def test_parse_key_is_tolerant(key: str) -> None:
    assert parse_key(key) == (LEAD, EVENT)


@pytest.mark.parametrize("key", ["events/readme.txt", f"{LEAD}.json", f"{LEAD}/{EVENT}.json/extra", f"{LEAD}x/{EVENT}"])
def test_other_keys_are_not_events(key: str) -> None:
    assert parse_key(key) is None


@pytest.mark.parametrize(
    ("key", "verification"),
    [
        ("leadconduit_verification_20240101120000123.txt", True),
        ("events/leadconduit_verification_5fd4371e940df5a34a3888b2_20240101120000123.txt", True),
        ("leadconduit-events/test.txt", True),
        ("events/leadconduit-events/test.txt", True),
        ("events/test.txt", False),
        (f"{LEAD}/{EVENT}.json", False),
    ],
)
def test_verification_files(key: str, verification: bool) -> None:
    assert is_verification(key) is verification


def test_lead_bounds_hold_exactly_the_window_leads() -> None:
    start_after, end_at = lead_bounds("events", 1000, 2000)
    assert start_after == "events/" + lowest_id_at(1000)
    assert end_at is not None and end_at.endswith("/" + KEY_END)
    inside = f"events/{1000:08x}{'0' * 15}1/{EVENT}.json"
    last = f"events/{2000:08x}{'f' * 16}/{'f' * 24}.json"
    before = f"events/{999:08x}{'f' * 16}/{EVENT}.json"
    after = f"events/{2001:08x}{'0' * 16}/{EVENT}.json"
    assert start_after < inside <= end_at and start_after < last <= end_at
    assert not start_after < before and not after <= end_at
    assert lead_bounds("", None, None) == (None, None)


def test_slices_are_contiguous_and_cover_the_rest() -> None:
    first = f"p/{1000:08x}{'a' * 16}/{EVENT}.json"
    last = f"p/{1100:08x}{'a' * 16}/{EVENT}.json"
    ranges = _slices("p/", last, first, None, 2000)
    assert ranges[0][0] == last and ranges[-1][1] is None
    assert all(ranges[i][1] == ranges[i + 1][0] for i in range(len(ranges) - 1))
    assert len(ranges) == 9  # 100-second slices from 1100 to 2000, plus the open end
    assert ranges[1][0] == boundary("p/", 1200)


def test_slices_of_foreign_keys_fall_back_to_one_range() -> None:
    assert _slices("", "zzz", "aaa", "zzzz", 10**9) == [("zzz", "zzzz")]
