"""One contract, three stores: S3 (SeaweedFS), Azure Blob (Azurite) and a directory, all real."""

from __future__ import annotations

import gzip
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from firehose.archive import AzureCredential, S3Credential, Store, StoreUrl, open_store
from firehose.archive.listing import list_range
from firehose.errors import ArchiveAccessDenied, ArchiveError, ArchiveNotFound, UsageError
from firehose.secret import Secret
from tests.conftest import AZURE_CONNECTION_STRING, AZURE_CREDENTIAL, S3_CREDENTIAL, S3_ENDPOINT

SCHEMES = ["s3", "az", "file"]


def make_store(
    scheme: str, tmp_path: Path, *, page_size: int | None = None, create: bool = True, sdk_reads: bool = False
) -> Store:
    name = f"contract-{uuid.uuid4().hex[:12]}"
    where = StoreUrl(scheme, str(tmp_path / name) if scheme == "file" else name, "")
    store = open_store(where, s3=S3_CREDENTIAL, azure=AZURE_CREDENTIAL, page_size=page_size, sdk_reads=sdk_reads)
    if create:
        store.create()
    return store


def sas_store(page_size: int) -> Store:
    """An Azurite container reached with a container SAS token (read, write, list), as a user may map it."""
    from datetime import UTC, datetime, timedelta

    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    name = f"contract-{uuid.uuid4().hex[:12]}"
    open_store(StoreUrl("az", name, ""), azure=AZURE_CREDENTIAL).create()
    fields = dict(part.split("=", 1) for part in AZURE_CONNECTION_STRING.split(";") if part)
    token = generate_container_sas(
        fields["AccountName"],
        name,
        account_key=fields["AccountKey"],
        permission=ContainerSasPermissions(read=True, write=True, list=True, create=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    credential = AzureCredential(account_url=fields["BlobEndpoint"], sas_token=Secret(token))
    return open_store(StoreUrl("az", name, ""), azure=credential, page_size=page_size)


# Every read path: the lean one (S3 signed here, Azure by account key or SAS) and the SDKs' (-sdk).
READ_PATHS = ["s3", "s3-sdk", "az", "az-sas", "az-sdk", "file"]


@pytest.fixture(params=READ_PATHS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param != "file":
        request.getfixturevalue("stack")
    if request.param == "az-sas":
        made = sas_store(page_size=7)
    else:
        scheme, _, path = request.param.partition("-")
        made = make_store(scheme, tmp_path, page_size=7, sdk_reads=path == "sdk")
    yield made
    made.close()


# No file shares a name with a folder plus a character below "/" ("a.json" beside "a/"): SeaweedFS lists a
# folder as if its name had no slash, unlike S3's byte order. The firehose layout never mixes them
# (<prefix>/<lead id>/<event id>.json), so the contract asks only what firehose relies on.
KEYS = ["a/1.json", "a/2.json", "a/b/3.json", "b/4.json", "b/5.json", "c.txt", "a/10.json", "a0.json"] + [
    f"p/{i:03d}.json" for i in range(20)
]


def fill(store: Store) -> None:
    for key in KEYS:
        assert store.write(key, f'{{"key":"{key}"}}'.encode())


def test_lists_in_byte_order_across_pages(store: Store) -> None:
    fill(store)
    assert [info.key for info in store.list()] == sorted(KEYS)  # 28 keys in pages of 7


def test_lists_under_a_prefix_after_a_key_up_to_a_key(store: Store) -> None:
    fill(store)
    assert [i.key for i in store.list("a/")] == sorted(k for k in KEYS if k.startswith("a/"))
    assert [i.key for i in store.list("p/", start_after="p/004.json")] == [f"p/{i:03d}.json" for i in range(5, 20)]
    assert [i.key for i in store.list("p/", start_after="p/004.json", end_at="p/012.json")] == [
        f"p/{i:03d}.json" for i in range(5, 13)
    ]
    assert [i.key for i in store.list("p/", end_at="p/001.json")] == ["p/000.json", "p/001.json"]


def test_listing_reports_size_etag_and_time(store: Store) -> None:
    store.write("x/one.json", b'{"a":1}')
    (info,) = store.list("x/")
    assert info.size == 7 and info.etag and info.last_modified.tzinfo is not None
    assert store.head("x/one.json") == info


def test_read_returns_stored_bytes_unchanged_even_gzip(store: Store) -> None:
    packed = gzip.compress(b'{"id":"x"}')
    store.write("g/event.json.gz", packed, content_type="application/gzip")
    assert store.read("g/event.json.gz") == packed


ODD_KEYS = [
    "odd/a b.json",
    "odd/plus+sign.json",
    "odd/per%25cent.json",
    "odd/q?x=1#frag.json",
    "odd/ünï€ødé.json",
    "odd/semi;colon&amp=.json",
    "odd/tilde~star*.json",
]


def test_keys_with_any_characters_read_back_on_every_read_path(store: Store) -> None:
    for key in ODD_KEYS:
        assert store.write(key, key.encode())
    assert sorted(info.key for info in store.list("odd/")) == sorted(ODD_KEYS)
    for key in ODD_KEYS:
        assert store.read(key) == key.encode(), key
        assert store.fetch(key)[0] == key.encode(), key


def test_head_of_a_missing_key_is_none_and_read_names_it(store: Store) -> None:
    assert store.head("nope/missing.json") is None
    with pytest.raises(ArchiveNotFound, match=r"nope/missing\.json: no such"):
        store.read("nope/missing.json")


def test_write_if_absent_never_overwrites(store: Store) -> None:
    assert store.write("w/e.json", b"first") is True
    assert store.write("w/e.json", b"second") is False
    assert store.read("w/e.json") == b"first"
    assert store.write("w/e.json", b"third", if_absent=False) is True
    assert store.read("w/e.json") == b"third"


def test_fetch_returns_the_bytes_with_what_the_read_told(store: Store) -> None:
    store.write("f/e.json", b'{"id":"f"}')
    body, info = store.fetch("f/e.json")
    assert body == b'{"id":"f"}' and info.key == "f/e.json" and info.size == len(body) and info.last_modified
    with pytest.raises(ArchiveNotFound, match=r"f/none\.json: no such"):
        store.fetch("f/none.json")


def test_retention_reports_what_the_store_tells_and_notes_the_rest(store: Store) -> None:
    settings = store.retention()
    noted = dict(settings.notes)
    if settings.kind == "s3":  # a plain bucket: no versioning, no lock, no lifecycle
        assert (settings.versioning, settings.lock_enabled, settings.lifecycle) == ("Disabled", False, ())
    elif settings.kind == "az" and settings.lock_enabled is None:  # a container SAS may not read its properties
        assert "not readable with these credentials" in noted["immutability"]
    elif settings.kind == "az":  # Azurite: no immutability; versioning and lifecycle are account settings
        assert settings.lock_enabled is False and settings.legal_hold is False
        assert "not reported by this endpoint" in noted["versioning"] and "lifecycle" in noted
    else:
        assert settings.lock_enabled is None and "directory" in noted["lifecycle"]


def test_parallel_range_listing_equals_a_plain_listing(store: Store) -> None:
    fill(store)
    assert [i.key for i in list_range(store, "", workers=4)] == [i.key for i in store.list()]
    assert [i.key for i in list_range(store, "p/", start_after="p/003.json", workers=4)] == [
        f"p/{i:03d}.json" for i in range(4, 20)
    ]


@pytest.mark.parametrize("scheme", ["s3", "az"])
def test_missing_bucket_is_named(scheme: str, tmp_path: Path, stack: None) -> None:
    store = make_store(scheme, tmp_path, create=False)
    name = store.url.split("://")[1]
    with pytest.raises(ArchiveNotFound, match=f"{name} does not exist"):
        list(store.list())
    with pytest.raises(ArchiveNotFound):
        store.read("k.json")
    with pytest.raises(ArchiveNotFound):
        store.write("k.json", b"{}")


def test_missing_directory_is_named(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}/absent")
    with pytest.raises(ArchiveNotFound, match="directory does not exist"):
        list(store.list())


@pytest.mark.parametrize("scheme", ["s3", "az"])
def test_wrong_keys_are_access_denied_naming_the_bucket(scheme: str, tmp_path: Path, stack: None) -> None:
    good = make_store(scheme, tmp_path)
    name = good.bucket if scheme == "s3" else good.container  # type: ignore[attr-defined]
    bad = open_store(
        StoreUrl(scheme, name, ""),
        s3=S3Credential(
            endpoint_url=S3_ENDPOINT, region="us-east-1", access_key_id="test", secret_access_key=Secret("wrong-secret")
        ),
        azure=AzureCredential(connection_string=Secret(AZURE_CONNECTION_STRING.replace("Eby8", "AAAA"))),
    )
    with pytest.raises(ArchiveAccessDenied, match=f"{name}.*access denied"):
        list(bad.list())
    with pytest.raises(ArchiveAccessDenied, match=f"{name}/k.json: access denied"):
        bad.read("k.json")
    assert "wrong-secret" not in repr(bad)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_endpoints_are_named() -> None:
    port = _free_port()
    s3 = open_store(
        "s3://somewhere",
        s3=S3Credential(
            endpoint_url=f"http://127.0.0.1:{port}",
            region="us-east-1",
            access_key_id="a",
            secret_access_key=Secret("b"),
        ),
    )
    with pytest.raises(ArchiveError, match=f"s3://somewhere: cannot reach the S3 endpoint http://127.0.0.1:{port}"):
        list(s3.list())
    connection = AZURE_CONNECTION_STRING.replace(f"127.0.0.1:{AZURE_CONNECTION_STRING.split(':')[-1]}", "")
    azure = open_store(
        "az://somewhere",
        azure=AzureCredential(
            connection_string=Secret(
                connection.split("BlobEndpoint=")[0] + f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
            )
        ),
    )
    # The listing goes the lean path (an account key): its words, as for a read, with why and how often it tried.
    with pytest.raises(ArchiveError, match="az://somewhere: cannot reach the store: connection refused"):
        list(azure.list())


def test_unknown_scheme_lists_the_supported_ones() -> None:
    with pytest.raises(UsageError, match=r"use one of s3://, az://, file://"):
        StoreUrl.parse("gs://bucket/prefix")


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("s3://b/events/auto", ("s3", "b", "events/auto")),
        ("az://c", ("az", "c", "")),
        ("s3://b/p/", ("s3", "b", "p/")),
        ("file:///tmp/x/", ("file", "/tmp/x", "")),
    ],
)
def test_store_urls(url: str, parsed: tuple[str, str, str]) -> None:
    where = StoreUrl.parse(url)
    assert (where.scheme, where.bucket, where.prefix) == parsed


def test_a_window_lists_the_lead_whose_id_is_its_first_seconds_smallest(store: Store) -> None:
    """SeaweedFS takes a StartAfter that names a folder as "after all of it": a window starting at the very
    second of a lead whose id is that second's smallest (random part all zero) once lost that lead."""
    from firehose.archive.listing import list_window
    from firehose.ids import lowest_id_at, make_id

    second = 1_790_000_000
    keys = [
        f"e/{lowest_id_at(second)}/{make_id(second, 0, 1)}.json",
        f"e/{make_id(second, 5, 5)}/{make_id(second + 1, 5, 5)}.json",
        f"e/{make_id(second - 1, 9, 9)}/{make_id(second, 9, 9)}.json",  # the lead is older: not in the window
    ]
    for key in keys:
        store.write(key, b"{}")
    for workers in (1, 8):
        listed = [
            i.key for i in list_window(store, "e", start_seconds=second, end_seconds=second + 10, workers=workers)
        ]
        assert listed == keys[:2]


def test_upper_case_leads_either_side_of_a_hex_letter_are_listed_in_time_order(store: Store) -> None:
    """A window whose upper-case range is cut per letter (``6A...`` and ``6B...``: its ends share only ``6``)
    still lists every upper-case lead in it, merged in time order with the lower-case ones."""
    from firehose.archive.listing import list_window
    from firehose.ids import make_id

    edge = 0x6B000000
    times = [edge - 3000, edge - 2, edge, edge + 1, edge + 4000]
    keys = []
    for n, second in enumerate(times):
        lead = make_id(second, n, n)
        keys.append(f"e/{lead.upper() if n % 2 == 0 else lead}/{make_id(second + 1, n, n)}.json")
    outside = [f"e/{make_id(edge + shift, 7, 7).upper()}/x.json" for shift in (-0x200000, 0x200000)]
    for key in keys + outside:
        store.write(key, b"{}")
    listed = [i.key for i in list_window(store, "e", start_seconds=edge - 0x100000, end_seconds=edge + 0x100000)]
    assert listed == keys


def _window_keys(base: int, count: int, step: int) -> list[str]:
    from firehose.ids import make_id

    return [f"e/{make_id(base + n * step, n, n)}/{make_id(base + n * step + 1, n, n)}.json" for n in range(count)]


def test_a_window_that_fits_one_page_costs_one_request_and_its_upper_case_range(store: Store) -> None:
    """A window whose objects fit the probe page is listed in that one request (plus the range of upper-case
    lead ids), not as a plan of hex-prefix slices: on Azurite each listing request scans the whole container,
    and a day of a reconcile made 25 of them for a few hundred blobs."""
    from firehose.archive.listing import list_window

    base = 0x6A0FFF00  # the window's leads cross the 9->a and f->0 hex boundaries
    keys = _window_keys(base, store.page_size, 97)  # exactly one page
    for key in keys:
        store.write(key, b"{}")
    before = store.requests.snapshot()["list"]
    listed = [i.key for i in list_window(store, "e", start_seconds=base - 50, end_seconds=base + 7 * 97, workers=8)]
    assert listed == keys
    if not store.url.startswith("file://"):  # a directory is walked, not paged: it has no request to save
        assert store.requests.snapshot()["list"] - before == 2


@pytest.mark.parametrize("workers", [1, 8])
def test_a_window_past_its_probe_page_lists_every_key_once_in_key_order(store: Store, workers: int) -> None:
    """Past the probe page, the rest of a window is listed as hex-prefix slices narrowed to what sorts after the
    probe's last key: nothing twice, nothing lost, whichever slice the probe ended in."""
    from firehose.archive.listing import list_window
    from firehose.ids import make_id

    base = 0x6A0FFF00
    keys = _window_keys(base, 40, 37)  # 40 leads over 1,443 s, pages of 7: the probe ends mid-window
    outside = [f"e/{make_id(base - 500, 1, 1)}/{make_id(base, 1, 1)}.json", f"e/{make_id(base + 5000, 2, 2)}/x.json"]
    for key in keys + outside:
        store.write(key, b"{}")
    listed = [
        i.key for i in list_window(store, "e", start_seconds=base - 10, end_seconds=base + 40 * 37, workers=workers)
    ]
    assert listed == keys
