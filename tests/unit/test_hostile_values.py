"""Issue 11, item 14: values from outside (events, archived objects, shared claims, stored bodies) that once
crashed a walker: JSON deeper than orjson writes, XML deeper than Python's stack, times without a zone, NaN."""

from __future__ import annotations

import contextlib
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from firehose.claims import StoredClaim, claimed_at, in_flight_seconds
from firehose.codec import _dumps_deep, canonical, decode, encode, encode_pretty, preview
from firehose.errors import DataError
from firehose.findings import parse_expiry
from firehose.payload import JSON, XML, edit, fields
from firehose.rules import RuleError, evaluate_all


def _value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 4 or roll < 0.3:
        return rng.choice([0, -7, 2.5, 1e300, "", 'q"\u00e9\n', None, True, False, 2**63 - 1])
    if roll < 0.65:
        return {f"{rng.choice('bcaé')}{i}": _value(rng, depth + 1) for i in range(rng.randint(0, 4))}
    return [_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]


def test_the_deep_encoder_writes_orjsons_bytes() -> None:
    rng = random.Random(11)
    for _ in range(2000):
        value = _value(rng)
        for option, sort_keys, indent in (
            (0, False, False),
            (orjson.OPT_SORT_KEYS, True, False),
            (orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS, True, True),
        ):
            assert _dumps_deep(value, sort_keys=sort_keys, indent=indent) == orjson.dumps(value, option=option)


def test_json_as_deep_as_orjson_reads_is_written_back_the_same() -> None:
    text = b'{"a":' * 600 + b'[1,{"z":2,"b":3}]' + b"}" * 600  # past orjson's 255 for writing
    value = decode(text)
    assert encode(value) == text
    assert decode(canonical(value)) == value and decode(encode_pretty(value)) == value
    assert preview(value, 20) == '{"a":{"a":{"a":{"a":'
    with pytest.raises(DataError, match="where: not valid JSON"):
        decode(b"[" * 1025 + b"]" * 1025, where="where")


def test_bodies_nested_past_the_stack_are_data_errors() -> None:
    deep_xml = "<a>" * 50_000 + "x" + "</a>" * 50_000
    with pytest.raises(DataError, match="body is nested too deeply"):
        fields(XML, deep_xml)
    with pytest.raises(DataError, match="nested too deeply"):
        edit(XML, deep_xml, [("a", "1")], [])
    assert fields(JSON, '{"a":' * 400 + "1" + "}" * 400) == {".".join(["a"] * 400): "1"}


def test_rules_nested_past_the_stack_are_rule_errors() -> None:
    rule: dict[str, Any] = {"lhv": "type", "op": "is equal to", "rhv": "source"}
    for _ in range(5000):
        rule = {"op": "and", "rules": [rule]}
    with pytest.raises(RuleError, match="nested too deeply"):
        evaluate_all([rule], {"type": "source"})


def test_times_without_a_zone_are_utc_and_impossible_ones_unknown() -> None:
    assert parse_expiry("2026-02-19T23:00:00") == datetime(2026, 2, 19, 23, tzinfo=UTC)
    assert parse_expiry("2026-02-19T23:00:00+02:00") == datetime(2026, 2, 19, 21, tzinfo=UTC)
    assert parse_expiry("9999-12-31T23:59:59-05:00") is None
    assert parse_expiry("0001-01-01T00:00:00+05:00") is None
    assert claimed_at({"claimed_at": "2026-02-19T23:00:00"}) == datetime(2026, 2, 19, 23, tzinfo=UTC)


@pytest.mark.parametrize("seconds", ["nan", "inf", "-1", "abc", [1], {"a": 1}, 1e400])
def test_a_claim_whose_time_in_flight_cannot_be_read_is_taken_as_in_flight(seconds: object) -> None:
    claim = {"claimed_at": "2000-01-01T00:00:00", "in_flight_seconds": seconds}
    assert in_flight_seconds(claim) is None
    assert StoredClaim(1, claim, None).in_flight(datetime.now(UTC)), "assume the worst: never sent twice"
    naive = StoredClaim(1, {"claimed_at": "2000-01-01T00:00:00", "in_flight_seconds": 60}, None)
    assert not naive.in_flight(datetime.now(UTC))


def test_two_runs_registering_the_same_arguments_at_once_share_one_run(tmp_path: Path) -> None:
    # Issue 11, item 14: the second of two runs starting together found no run row (the first had not committed
    # it yet), inserted one too, and failed with "UNIQUE constraint failed: runs.fingerprint".
    import sqlite3
    import threading

    from firehose.state import StateDB

    path = tmp_path / "state.sqlite"
    with StateDB(path) as second:
        first = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        first.execute("BEGIN IMMEDIATE")  # the first run has inserted its row and not yet committed
        first.execute("INSERT INTO runs (fingerprint, arguments, started_at) VALUES ('f', '{}', 'now')")
        committing = threading.Timer(0.3, lambda: first.execute("COMMIT"))
        committing.start()
        run_id = second.run("f", {})
        committing.join()
        first.close()
    with StateDB(path) as third:
        assert third.run("f", {}) == run_id


@pytest.mark.parametrize("key", ["../x", "/etc/passwd", "a/../../x", "a\x00b", "x" * 300 + ".json", "loop/x.json"])
def test_a_directory_store_refuses_or_fails_a_bad_key_as_an_archive_error(tmp_path: Path, key: str) -> None:
    # Issue 11, item 15: refused keys are archive errors (exit 5); an OSError that escaped (a loop, a name too
    # long) reached the CLI as "cannot write ...", exit 3, and a NUL was a ValueError.
    from firehose.archive.local import LocalStore
    from firehose.errors import ArchiveError

    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    store = LocalStore(tmp_path)
    for operation in (store.read, lambda k: store.write(k, b"{}")):
        with pytest.raises(ArchiveError):
            operation(key)
    with contextlib.suppress(ArchiveError):  # unreachable through a loop: not there, or an error
        assert store.head(key) is None
