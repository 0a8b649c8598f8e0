"""The pure rules of reconciliation: every (event, destination) in exactly one class."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firehose.archive.base import ObjectInfo
from firehose.codec import canonical
from firehose.event import Destination
from firehose.findings import Verdict
from firehose.reconciliation.classify import (
    archive_only,
    classify_content,
    classify_presence,
    differing_fields,
    expected_objects,
    sampled,
)
from firehose.reconciliation.expiry import at_risk, by_expiry

LEAD = "6ae18ae9a55055783f30ae4b"
NOW = datetime(2026, 11, 27, tzinfo=UTC)


def event(event_id: str, *, firehose: dict | None = None, expires: str = "2027-01-26T05:40:57.503Z") -> dict:
    return {
        "id": event_id,
        "type": "recipient",
        "outcome": "success",
        "vars": {"lead": {"id": LEAD}},
        "firehose": firehose
        if firehose is not None
        else {
            "enabled": True,
            "services": {
                "aws": {"enabled": True, "bucket": "b", "prefix": "events", "credential_id": "c1"},
                "azure": {"enabled": True, "bucket": "c", "prefix": "", "credential_id": "c2"},
            },
        },
        "expires_at": expires,
    }


def info(key: str) -> ObjectInfo:
    return ObjectInfo(key=key, size=10, etag="e", last_modified=NOW)


def test_one_expected_object_per_enabled_destination() -> None:
    items = expected_objects(event("6ae18ae9a55055783f30ae4c"))
    assert [(i.destination.service, i.key) for i in items] == [
        ("aws", f"events/{LEAD}/6ae18ae9a55055783f30ae4c.json"),
        ("azure", f"{LEAD}/6ae18ae9a55055783f30ae4c.json"),
    ]
    assert items[0].expires_at == datetime(2027, 1, 26, 5, 40, 57, 503000, tzinfo=UTC)
    assert expected_objects(event("6ae18ae9a55055783f30ae4c", firehose={"enabled": False, "bucket": "b"})) == []


def test_presence_is_match_or_missing_and_tolerates_a_missing_json() -> None:
    items = [*expected_objects(event("6ae18ae9a55055783f30ae4c")), *expected_objects(event("6ae18ae9a55055783f30ae4d"))]
    keys = [f"events/{LEAD}/6ae18ae9a55055783f30ae4c.json", f"{LEAD}/6ae18ae9a55055783f30ae4d"]
    listed = {key: info(key) for key in keys}
    verdicts = [(f.destination, f.verdict, f.key) for f in classify_presence(items, listed)]
    assert verdicts == [
        ("s3://b/events", Verdict.MATCH, f"events/{LEAD}/6ae18ae9a55055783f30ae4c.json"),
        ("az://c", Verdict.MISSING, f"{LEAD}/6ae18ae9a55055783f30ae4c.json"),
        ("s3://b/events", Verdict.MISSING, f"events/{LEAD}/6ae18ae9a55055783f30ae4d.json"),
        ("az://c", Verdict.MATCH, f"{LEAD}/6ae18ae9a55055783f30ae4d"),
    ]


def test_archive_only_is_inside_the_window_and_not_expected() -> None:
    start, end = datetime(2026, 10, 28, tzinfo=UTC), datetime(2026, 10, 29, tzinfo=UTC)
    inside, before = "6ae18ae9a55055783f30ae4c", "6ae00000a55055783f30ae4c"
    listed = [
        info(f"events/{LEAD}/{inside}.json"),
        info(f"events/{LEAD}/{before}.json"),
        info("events/readme.txt"),
        info(f"events/{LEAD}/6ae18aeaa55055783f30ae4e.json"),
    ]
    expected = {"6ae18aeaa55055783f30ae4e"}
    found = list(archive_only(listed, expected, destination="s3://b/events", start=start, end=end))
    assert [(f.verdict, f.event_id) for f in found] == [(Verdict.ARCHIVE_ONLY, inside)]


def test_content_compares_canonical_json_and_names_the_fields() -> None:
    api = event("6ae18ae9a55055783f30ae4c")
    item = expected_objects(api)[0]
    reordered = dict(reversed(list(api.items())))
    assert classify_content(item, api, [reordered]).verdict == Verdict.MATCH
    changed = {**api, "outcome": "failure", "vars": {"lead": {"id": LEAD, "email": "x@example.com"}}}
    finding = classify_content(item, api, [changed])
    assert finding.verdict == Verdict.DIFFER and finding.fields == ("outcome", "vars")
    assert classify_content(item, api, [{"id": "other"}]).verdict == Verdict.ERROR
    assert differing_fields({"a": {"x": 1, "y": 2}}, {"a": {"y": 2, "x": 1}, "b": None}) == ()


def test_sampling_is_deterministic_and_about_the_asked_share() -> None:
    ids = [f"{n:024x}" for n in range(10_000)]
    chosen = [i for i in ids if sampled(i, 5)]
    assert chosen == [i for i in ids if sampled(i, 5)]
    assert 400 < len(chosen) < 600
    assert all(sampled(i, 100) for i in ids[:10])


def test_gaps_are_ranked_by_expiry_and_at_risk_within_the_margin() -> None:
    soon = expected_objects(event("6ae18ae9a55055783f30ae4c", expires="2026-11-30T00:00:00Z"))[0]
    later = expected_objects(event("6ae18ae9a55055783f30ae4d", expires="2027-01-20T00:00:00Z"))[0]
    unknown = expected_objects(event("6ae18ae9a55055783f30ae4e", expires="soon"))[0]
    findings = list(classify_presence([later, soon, unknown], {}))
    ranked = by_expiry(findings)
    assert [f.event_id for f in ranked] == [unknown.event_id, soon.event_id, later.event_id]
    risky = [f.event_id for f in findings if at_risk(f, now=NOW, within=timedelta(days=7))]
    assert sorted(risky) == sorted([soon.event_id, unknown.event_id])


def test_windows_are_cut_at_midnights_so_runs_share_them() -> None:
    from firehose.reconciliation.run import ReconcileOptions

    start, end = datetime(2026, 11, 1, 10, tzinfo=UTC), datetime(2026, 11, 3, 5, tzinfo=UTC)
    options = ReconcileOptions(start=start, end=end)
    assert list(options.windows()) == [
        (start, datetime(2026, 11, 2, tzinfo=UTC)),
        (datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 3, tzinfo=UTC)),
        (datetime(2026, 11, 3, tzinfo=UTC), end),
    ]
    later = ReconcileOptions(start=start + timedelta(days=1), end=end + timedelta(days=1))
    assert later.fingerprint() == options.fingerprint()
    assert ReconcileOptions(start=start, end=end, verify="content").fingerprint() != options.fingerprint()


def test_a_listing_cursor_hands_each_window_its_leads_and_a_failure_sticks() -> None:
    import pytest

    from firehose.errors import ArchiveError
    from firehose.reconciliation.run import ListingCursor

    def key(lead_seconds: int, n: int) -> str:
        return f"p/{lead_seconds:08x}{'a' * 16}/{lead_seconds:08x}{n:016x}.json"

    keys = [key(100, 1), key(150, 2), "p/readme.txt", key(200, 3), key(300, 4)]
    cursor = ListingCursor(iter([info(k) for k in keys]))
    first = cursor.advance(until_seconds=160, keep_from_seconds=90, window_seconds=150)
    assert set(first) == {key(100, 1), key(150, 2)}
    second = cursor.advance(until_seconds=260, keep_from_seconds=140, window_seconds=200)
    assert set(second) == {key(150, 2), key(200, 3)}
    assert set(cursor.advance(until_seconds=400, keep_from_seconds=290, window_seconds=350)) == {key(300, 4)}

    # A cursor met first in a later window keeps the feedback it reads on leads older than that window.
    late = ListingCursor(iter([info(key(100, 1)), info(f"p/{100:08x}{'b' * 16}/{350:08x}{5:016x}.json")]))
    assert set(late.advance(until_seconds=400, keep_from_seconds=290, window_seconds=350)) == {
        f"p/{100:08x}{'b' * 16}/{350:08x}{5:016x}.json"
    }
    # Feedback on an old lead (event made in a later window) stays for that window's archive-only check.
    feedback = f"p/{100:08x}{'b' * 16}/{350:08x}{5:016x}.json"
    cursor = ListingCursor(iter([info(key(100, 1)), info(feedback), info(key(300, 4))]))
    assert set(cursor.advance(until_seconds=160, keep_from_seconds=90, window_seconds=100)) == {key(100, 1), feedback}
    assert set(cursor.advance(until_seconds=400, keep_from_seconds=290, window_seconds=350)) == {feedback, key(300, 4)}

    def broken() -> Iterator[ObjectInfo]:
        yield info(key(100, 1))
        raise ArchiveError("s3://b: access denied")

    failing = ListingCursor(broken())
    for _ in range(2):
        with pytest.raises(ArchiveError, match="access denied"):
            failing.advance(until_seconds=500, keep_from_seconds=0, window_seconds=0)


def test_an_archive_override_expects_only_the_events_the_firehose_sent() -> None:
    override = [Destination("file", "/restored", "", None)]
    sent = expected_objects(event("6ae18ae9a55055783f30ae4c"), destinations=override)
    assert [(item.destination, item.key) for item in sent] == [(override[0], f"{LEAD}/6ae18ae9a55055783f30ae4c.json")]
    disabled = {"enabled": False, "services": {"aws": {"enabled": True, "bucket": "b", "prefix": "events"}}}
    assert expected_objects(event("6ae18ae9a55055783f30ae4d", firehose=disabled), destinations=override) == []
    every_service_off = {"services": {"aws": {"enabled": False, "bucket": "b"}}}
    assert expected_objects(event("6ae18ae9a55055783f30ae4e", firehose=every_service_off), destinations=override) == []
    assert expected_objects(event("6ae18ae9a55055783f30ae4f", firehose={}), destinations=override) == []


@pytest.mark.parametrize("count", [1, 2, 7, 64, 1000])
def test_the_slices_of_a_window_cover_it_once(count: int) -> None:
    from datetime import UTC, datetime, timedelta

    from firehose.reconciliation.run import ReconcileOptions

    start = datetime(2026, 11, 1, 0, 0, 0, 250_000, tzinfo=UTC)
    options = ReconcileOptions(start=start, end=start + timedelta(days=3, seconds=17))
    slices = [options.sharded(index, count) for index in range(count)]
    assert slices[0].start == options.start and slices[-1].end == options.end
    for before, after in itertools.pairwise(slices):
        assert int(after.start.timestamp()) == int(before.end.timestamp()) + 1, "no second in two slices, none lost"
    assert all(s.start < s.end and s.shard == (i, count) for i, s in enumerate(slices))
    assert {s.fingerprint() for s in slices} == {options.fingerprint()}, "slices share the window's settled state"
    assert [s.start for s in slices] == [options.sharded(i, count).start for i in range(count)], "deterministic"


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from([1.0, 0.5, -0.0]) | st.text("ab", max_size=2),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text("xy", max_size=2), inner, max_size=3),
    max_leaves=8,
)
_EVENTS = st.dictionaries(st.sampled_from(["id", "type", "vars", "request", "x"]), _JSON, max_size=5)


@given(_EVENTS, _EVENTS)
def test_differing_fields_are_each_fields_canonical_comparison(api: dict[str, Any], archived: dict[str, Any]) -> None:
    """The whole-document shortcut never changes the answer: a field differs exactly when its canonical JSON
    does (1 against 1.0 or true differs; an absent field and a null one do not; key order never counts)."""
    expected = tuple(
        name for name in sorted(set(api) | set(archived)) if canonical(api.get(name)) != canonical(archived.get(name))
    )
    assert differing_fields(api, archived) == expected
    assert differing_fields(api, dict(reversed(list(api.items())))) == ()
