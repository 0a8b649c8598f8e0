from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firehose.archive.base import request_prefix
from firehose.archive.layout import KEY_END, is_verification, lead_bounds, parse_key
from firehose.archive.listing import Slice, _adjacent, _slices, prefix_length
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
    assert start_after == "events/" + lowest_id_at(1000)[:-1], "not an id: SeaweedFS skips a folder named so"
    assert end_at is not None and end_at.endswith("/" + KEY_END)
    smallest = f"events/{lowest_id_at(1000)}/{EVENT}.json"  # the second's smallest id is in the window
    assert start_after < smallest <= end_at
    inside = f"events/{1000:08x}{'0' * 15}1/{EVENT}.json"
    last = f"events/{2000:08x}{'f' * 16}/{'f' * 24}.json"
    before = f"events/{999:08x}{'f' * 16}/{EVENT}.json"
    after = f"events/{2001:08x}{'0' * 16}/{EVENT}.json"
    assert start_after < inside <= end_at and start_after < last <= end_at
    assert not start_after < before and not after <= end_at
    assert lead_bounds("", None, None) == (None, None)


def test_slices_are_exact_hex_prefixes_with_gaps_checked_and_a_tail() -> None:
    first = f"p/{0x6AD80000:08x}{'a' * 16}/{EVENT}.json"
    last = f"p/{0x6AD80000 + 40_000:08x}{'a' * 16}/{EVENT}.json"  # one page spans ~11 h: 4-digit prefixes
    t_end = 0x6ADC0000
    slices = _slices("p/", last, first, None, t_end)
    assert prefix_length(40_000) == 4
    assert slices[0] == Slice("p/6ad8", last, None)
    main = [s.prefix for s in slices[1:-1] if not s.gap]
    assert main == ["p/6ad9", "p/6ada", "p/6adb"]
    gaps = [s for s in slices if s.gap]
    assert [(g.start_after, g.below) for g in gaps] == [("p/6ad9" + KEY_END, "p/6ada")]  # 9 -> a jumps
    assert slices[-1] == Slice("p/", "p/6adb" + KEY_END, None)


def test_slices_stop_at_the_window_end() -> None:
    first = f"p/{0x6AD80000:08x}{'a' * 16}/{EVENT}.json"
    last = f"p/{0x6AD80000 + 40_000:08x}{'a' * 16}/{EVENT}.json"
    end_at = f"p/{0x6AD9FFFF:08x}{'f' * 16}/{KEY_END}"
    slices = _slices("p/", last, first, end_at, 0x6AE00000)
    assert [s.prefix for s in slices if not s.gap] == ["p/6ad8", "p/6ad9", "p/"]
    assert all(s.end_at == end_at for s in slices)


@pytest.mark.parametrize(
    ("low", "high", "adjacent"), [("6ad8", "6ad9", True), ("6ad9", "6ada", False), ("6adf", "6ae0", False)]
)
def test_gaps_only_where_the_alphabet_jumps(low: str, high: str, adjacent: bool) -> None:
    assert _adjacent(low, high) is adjacent


def test_slices_of_foreign_keys_fall_back_to_one_range() -> None:
    assert _slices("", "zzz", "aaa", "zzzz", 10**9) == [Slice("", "zzz", "zzzz")]


def test_s3_and_azure_listing_parsers_read_escaped_names_and_tokens() -> None:
    from firehose.archive.azure import parse_listing as parse_azure
    from firehose.archive.s3 import parse_listing as parse_s3

    s3_page = (
        b"<ListBucketResult><IsTruncated>true</IsTruncated><Contents><Key>a&amp;b/1.json</Key>"
        b"<LastModified>2026-11-01T00:00:03.000Z</LastModified><ETag>&quot;abc&quot;</ETag><Size>12</Size>"
        b"</Contents><NextContinuationToken>tok&amp;en</NextContinuationToken></ListBucketResult>"
    )
    items, token = parse_s3(s3_page)
    assert [(i.key, i.etag, i.size) for i in items] == [("a&b/1.json", "abc", 12)] and token == "tok&en"
    assert items[0].last_modified.isoformat() == "2026-11-01T00:00:03+00:00"
    azure_page = (
        b"<EnumerationResults><Blobs><Blob><Name>x&lt;y.json</Name><Properties>"
        b"<Last-Modified>Fri, 27 Nov 2026 11:31:50 GMT</Last-Modified><Etag>0x8DB</Etag>"
        b"<Content-Length>7</Content-Length></Properties></Blob></Blobs><NextMarker /></EnumerationResults>"
    )
    items, marker = parse_azure(azure_page)
    assert [(i.key, i.etag, i.size) for i in items] == [("x<y.json", "0x8DB", 7)] and marker is None
    assert items[0].last_modified.isoformat() == "2026-11-27T11:31:50+00:00"


def test_a_listing_page_that_runs_past_its_range_is_read_up_to_the_first_key_past_it() -> None:
    from firehose.archive.azure import parse_listing as parse_azure
    from firehose.archive.s3 import parse_listing as parse_s3

    names = [f"f/{n:04d}.json" for n in range(6)]
    s3_page = (
        b"<ListBucketResult><IsTruncated>true</IsTruncated>"
        + b"".join(
            f"<Contents><Key>{name}</Key><LastModified>2026-11-01T00:00:03.000Z</LastModified><ETag>e</ETag>"
            f"<Size>1</Size></Contents>".encode()
            for name in names
        )
        + b"<NextContinuationToken>more</NextContinuationToken></ListBucketResult>"
    )
    azure_page = (
        b"<EnumerationResults><Blobs>"
        + b"".join(
            f"<Blob><Name>{name}</Name><Properties><Last-Modified>Fri, 27 Nov 2026 11:31:50 GMT</Last-Modified>"
            f"<Etag>e</Etag><Content-Length>1</Content-Length></Properties></Blob>".encode()
            for name in names
        )
        + b"</Blobs><NextMarker>more</NextMarker></EnumerationResults>"
    )
    for parse in (parse_s3, parse_azure):
        items, token = parse(s3_page if parse is parse_s3 else azure_page, "f/0002.json")
        assert [i.key for i in items] == names[:4] and token is None, parse  # 0003 tells the range is over
        items, token = parse(s3_page if parse is parse_s3 else azure_page, "f/0009.json")
        assert [i.key for i in items] == names and token == "more", parse
        items, token = parse(s3_page if parse is parse_s3 else azure_page)
        assert len(items) == 6 and token == "more", parse


def test_azure_default_credential_without_azure_identity_says_what_to_install() -> None:
    from firehose.archive import AzureCredential, open_store
    from firehose.errors import ConfigError

    # Configuration (exit 3), not a store that failed; a SAS in the account URL is not shown.
    with pytest.raises(ConfigError, match="needs azure-identity") as raised:
        open_store("az://c", azure=AzureCredential(account_url="https://acct.blob.core.windows.net/?sig=s3cr3t"))
    assert "s3cr3t" not in str(raised.value)


@pytest.mark.parametrize("prefix", ["events", "ev#1", "a%20b", "p?x", "deep/er/"])
def test_a_destination_read_back_from_its_url_is_itself(prefix: str) -> None:
    from firehose.event import Destination

    for service in ("aws", "azure"):
        destination = Destination(service, "bucket", prefix.rstrip("/"), "cred")
        assert Destination.from_url(destination.url(), "cred") == destination


KEY_CHARACTERS = "6aAdD/~e\U0010ffff"


@given(
    st.text(alphabet=KEY_CHARACTERS, max_size=4),
    st.lists(st.text(alphabet=KEY_CHARACTERS, max_size=6), min_size=3, max_size=30, unique=True),
    st.integers(0, 4),
)
def test_a_listing_request_prefix_keeps_every_key_of_its_range(stem: str, tails: list[str], cut: int) -> None:
    """The prefix a listing request sends (longer where its bounds share more) holds every key of the range
    under the given prefix: none lost, whichever bounds (upper case, KEY_END, one a prefix of the other)."""
    keys = sorted(stem + tail for tail in tails)
    prefix = stem[:cut]
    start_after, end_at = keys[0], keys[-1]
    sent = request_prefix(prefix, start_after, end_at)
    assert sent.startswith(prefix)
    in_range = [key for key in keys if key.startswith(prefix) and start_after < key <= end_at]
    assert all(key.startswith(sent) for key in in_range)


def test_a_day_window_and_its_upper_case_range_send_their_shared_hex_digits() -> None:
    """A day's window sends the hex digits its bounds share: its upper-case range no longer asks for the
    lower-case keys that sort right after it, and an unbounded range sends the prefix as it is."""
    from firehose.archive.layout import lead_bounds_upper

    start, end = 0x6AD7F27F, 0x6AD951FF
    assert request_prefix("events/", *lead_bounds("events", start, end)) == "events/6ad"
    assert request_prefix("events/", *lead_bounds_upper("events", start, end)) == "events/6AD"
    assert request_prefix("events/", "events/6ad", None) == "events/"
    assert request_prefix("events/", "a", "b") == "events/"


def _in(key: str, start_after: str | None, end_at: str | None) -> bool:
    return (start_after is None or key > start_after) and (end_at is None or key <= end_at)


def test_a_window_whose_upper_case_range_shares_only_digits_asks_per_letter() -> None:
    """The reads bench's window (2026-10-01 to 2026-11-30: ``6ABDA28...`` to ``6B2B...``) shares only ``6``;
    with ``Prefix=events/6`` Azurite went through every lower-case key under it for an empty answer."""
    from firehose.archive.layout import upper_case_ranges

    start, end = 0x6ABDA280, 0x6B2BA9FF
    ranges = upper_case_ranges("events", start, end)
    assert [request_prefix("events/", *bounds) for bounds in ranges] == ["events/6A", "events/6B"]
    # a range that already shares a letter stays one request
    assert len(upper_case_ranges("events", 0x6AD7F27F, 0x6AD951FF)) == 1
    assert upper_case_ranges("events", None, end)[0][0] is None


@given(
    start=st.integers(0x59000000, 0x71000000),
    length=st.integers(0, 0x03000000),
    times=st.lists(st.integers(0x58000000, 0x75000000), max_size=40),
)
def test_upper_case_ranges_hold_exactly_the_upper_case_range(start: int, length: int, times: list[int]) -> None:
    """Cut or not, the ranges hold every upper-case key the one range held and nothing else, in key order, one
    range after the other; each request's prefix holds a letter unless the cut is between two digits."""
    from firehose.archive.layout import lead_bounds_upper, upper_case_ranges
    from firehose.ids import make_id

    end = start + length
    keys = [f"e/{make_id(t, n, n).upper()}/{make_id(t, n, n + 1).upper()}.json" for n, t in enumerate(times)]
    keys += [f"e/{make_id(start, 1, 1).upper()}/x.json", f"e/{make_id(end, 2, 2).upper()}/y.json"]
    whole = lead_bounds_upper("e", start, end)
    ranges = upper_case_ranges("e", start, end)
    expected = sorted(key for key in keys if _in(key, *whole))
    found = [key for bounds in ranges for key in sorted(keys) if _in(key, *bounds)]
    assert found == expected
    for (_, end_at), (start_after, _) in pairwise(ranges):
        assert end_at is not None and start_after is not None and end_at <= start_after
    for bounds in ranges:
        sent = request_prefix("e/", *bounds)
        assert all(key.startswith(sent) for key in keys if _in(key, *bounds))
