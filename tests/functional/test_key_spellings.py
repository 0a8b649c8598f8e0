"""One event is one object, whatever its key's spelling (issue 11, item 11).

The layout tolerates a key without ``.json``, a gzip-compressed ``.json.gz`` and upper-case ids (facts.md §1.2
leaves the spelling open). On S3, Azure and disk, such objects are found by reconcile (never counted missing,
never written a second time by ``--repair``), by ``archive cat`` and by ``locate``, and reconcile's counts
always equal the findings it lists.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from firehose.archive import Store, StoreUrl, open_store
from firehose.cli import cli
from firehose.errors import ExitCode
from firehose.event import EventView
from firehose.reconciliation.run import KEPT
from tests.conftest import (
    AZURE_CONNECTION_STRING,
    AZURE_CREDENTIAL,
    S3_CREDENTIAL,
    UNTIL,
    RunningSandbox,
    stack_env,
    stack_sandbox,
)

pytestmark = pytest.mark.usefixtures("stack")
WINDOW = ["--start", (UNTIL.replace(day=UNTIL.day - 4)).strftime("%Y-%m-%d"), "--end", UNTIL.isoformat()]


@pytest.fixture()
def box() -> Iterator[RunningSandbox]:
    with stack_sandbox(seed=5, leads=30, days=4, drop_rate=0.05) as running:
        yield running


def invoke(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def expected_keys(box: RunningSandbox, scheme: str) -> set[tuple[str, str]]:
    """(destination URL, key) of every object the ``scheme`` destinations should hold, by the layout."""
    keys = set()
    for event in box.sandbox_events():
        view = EventView(event)
        for destination in view.destinations():
            if destination.scheme == scheme:
                keys.add((destination.url(), destination.key(view.lead_id, view.id)))  # type: ignore[arg-type]
    return keys


def respell(store: Store, present: list[str]) -> dict[str, str]:
    """Store three events under other spellings: gzip ``.json.gz``, upper-case ids (original removed), and a
    second gzip copy beside the original. Returns what each one is now, by kind."""
    gz, upper, twin = present[:3]
    gz_key = gz + ".gz"
    folder, lead, name = upper.rsplit("/", 2) if upper.count("/") >= 2 else ("", *upper.split("/"))
    upper_key = (folder + "/" if folder else "") + lead.upper() + "/" + name.removesuffix(".json").upper() + ".json"
    for old, new in ((gz, gz_key), (twin, twin + ".gz")):
        assert store.write(new, gzip.compress(store.read(old)), if_absent=True)
    assert store.write(upper_key, store.read(upper), if_absent=True)
    remove(store, gz)
    remove(store, upper)
    return {"gz": gz_key, "upper": upper_key, "twin": twin}


def remove(store: Store, key: str) -> None:
    """Delete one object with the vendor's own client (the Store contract never deletes)."""
    scheme = store.url.split(":", 1)[0]
    if scheme == "s3":
        import boto3

        s3 = boto3.client(
            "s3",
            endpoint_url=S3_CREDENTIAL.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        s3.delete_object(Bucket=store.url.removeprefix("s3://"), Key=key)
    elif scheme == "az":
        from azure.storage.blob import BlobServiceClient

        service = BlobServiceClient.from_connection_string(AZURE_CONNECTION_STRING)
        service.get_blob_client(store.url.removeprefix("az://"), key).delete_blob()
    else:
        (Path(store.url.removeprefix("file://")) / key).unlink()


def findings_agree_with_counts(report: dict[str, Any]) -> None:
    """The invariant: each class a report lists item by item has as many items as its count says, and no event
    is listed twice for one destination."""
    listed = Counter(row["verdict"] for row in report["findings"])
    for verdict in KEPT:
        assert listed.get(verdict.value, 0) == report["counts"].get(verdict.value, 0), verdict
    pairs = [(row["event_id"], row["destination"]) for row in report["findings"]]
    assert len(pairs) == len(set(pairs))


@pytest.mark.parametrize("scheme", ["s3", "az", "file"])
def test_every_spelling_is_the_one_event_it_names(box: RunningSandbox, tmp_path: Path, scheme: str) -> None:
    env = stack_env(box, tmp_path)
    extra: list[str] = []
    if scheme == "file":  # every event the firehose sent, in a directory (a few left out), checked with --archive
        root = tmp_path / "archive"
        url = f"file://{root}"
        store = open_store(url)
        expected = set()
        for number, event in enumerate(e for e in box.sandbox_events() if EventView(e).destinations()):
            key = f"{EventView(event).lead_id}/{event['id']}.json"
            expected.add((url, key))
            if number % 40 != 7:
                store.write(key, json.dumps(event).encode(), if_absent=True)
        extra = ["--archive", url]
    else:
        store = open_store(StoreUrl(scheme, box.bucket, ""), s3=S3_CREDENTIAL, azure=AZURE_CREDENTIAL)
        expected = expected_keys(box, scheme)
    listed = {info.key for info in store.list()}
    dropped = {(url, key) for url, key in expected if key not in listed}
    assert dropped, "some objects are missing, to tell them from the respelt ones"
    spelt = respell(store, sorted(key for _, key in expected if key in listed))
    before = {info.key for info in store.list()}

    def missing(report: dict[str, Any]) -> set[tuple[str, str]]:
        return {
            (row["destination"].removesuffix("/"), row["key"])
            for row in report["findings"]
            if row["verdict"] == "missing" and row["destination"].startswith(scheme)
        }

    found = invoke(env, "reconcile", *WINDOW, *extra, "--report", str(tmp_path / "r.json"))
    report = json.loads((tmp_path / "r.json").read_text())
    findings_agree_with_counts(report)
    assert missing(report) == {(url.removesuffix("/"), key) for url, key in dropped}, found.stderr
    assert report["counts"].get("archive_only", 0) == 0, report["findings"]

    repair = ["--repair", "--full", "--report", str(tmp_path / "f.json")]
    repaired = invoke(env, "reconcile", *WINDOW, *extra, *repair)
    assert repaired.exit_code == ExitCode.OK, (repaired.stderr, (tmp_path / "f.json").read_text()[-1500:])
    findings_agree_with_counts(json.loads((tmp_path / "f.json").read_text()))
    written = {info.key for info in store.list()} - before
    assert written == {key for _, key in dropped}, "each missing event written once, no second copies"

    checked = ["--verify", "content", "--full", "--report", str(tmp_path / "c.json")]
    content = invoke(env, "reconcile", *WINDOW, *extra, *checked)
    findings_agree_with_counts(json.loads((tmp_path / "c.json").read_text()))
    assert content.exit_code == ExitCode.OK, content.stderr  # gzip and upper-case objects read and equal

    upper_event = spelt["upper"].rsplit("/", 1)[1].removesuffix(".json")
    folder = spelt["upper"].rsplit("/", 2)[0] if spelt["upper"].count("/") >= 2 else ""
    where = extra[1] if extra else f"{scheme}://{box.bucket}/{folder}"
    cat = invoke(env, "archive", "cat", where, upper_event)
    assert cat.exit_code == ExitCode.OK, cat.stderr
    assert json.loads(cat.stdout)["id"] == upper_event.lower()
    located = invoke(env, "locate", upper_event.lower(), *extra, "--format", "json")
    rows = json.loads(located.stdout)["destinations"]
    assert [row["status"] for row in rows if row["key"] == spelt["upper"]] == ["present"], located.output


def test_two_spellings_of_an_archive_only_event_are_one_finding() -> None:
    from datetime import UTC, datetime

    from firehose.archive import ObjectInfo
    from firehose.reconciliation.classify import archive_only

    lead, event = "6ae18ae9a55055783f30ae4b", "6ae18ae9a55055783f30ae4c"
    now = datetime(2026, 10, 28, 12, tzinfo=UTC)
    listed = [
        ObjectInfo(f"events/{lead}/{event}.json", 1, "e", now),
        ObjectInfo(f"events/{lead}/{event}.json.gz", 1, "e", now),
        ObjectInfo(f"events/{lead.upper()}/{event.upper()}", 1, "e", now),
    ]
    found = list(
        archive_only(listed, set(), destination="s3://b/events", start=now.replace(hour=0), end=now.replace(hour=23))
    )
    assert [(f.event_id, f.key) for f in found] == [(event, f"events/{lead.upper()}/{event.upper()}")]
    assert list(archive_only(listed, {event}, destination="s3://b/events", start=now.replace(hour=0), end=now)) == []
