from __future__ import annotations

from datetime import UTC, datetime

from firehose.ids import highest_id_at, is_object_id, lowest_id_at, make_id, seconds_of, time_of


def test_time_of_an_object_id() -> None:
    assert seconds_of("5fd4371e940df5a34a3888b2") == 0x5FD4371E
    assert time_of("5fd4371e940df5a34a3888b2") == datetime(2020, 12, 12, 3, 21, 2, tzinfo=UTC)


def test_lowest_and_highest_ids_bound_every_id_of_their_second() -> None:
    some = make_id(1_700_000_000, 0x1234567890, 0xABCDEF)
    assert lowest_id_at(1_700_000_000) <= some <= highest_id_at(1_700_000_000)
    assert highest_id_at(1_699_999_999) < some < lowest_id_at(1_700_000_001)
    assert lowest_id_at(-5) == "0" * 24 and highest_id_at(2**40) == "f" * 24


def test_is_object_id() -> None:
    assert is_object_id("5FD4371E940DF5A34A3888B2")
    assert not is_object_id("5fd4371e940df5a34a3888b")
    assert not is_object_id(None)
    assert not is_object_id("zzd4371e940df5a34a3888b2")
