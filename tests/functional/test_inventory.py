"""`reconcile --inventory`: S3 and Azure inventories (CSV and Parquet, their documented layouts) on SeaweedFS,
Azurite and disk give the report a listing gives; what an inventory lacks is confirmed live; a damaged one stops
the run with one line."""

from __future__ import annotations

import gzip
import json
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from firehose.archive import ObjectInfo, Store, StoreUrl, open_store
from firehose.archive.inventory import read_manifest
from firehose.archive.sorting import external_sort
from firehose.cli import cli
from firehose.errors import ExitCode
from tests.conftest import AZURE_CREDENTIAL, S3_CREDENTIAL, UNTIL, RunningSandbox, stack_env, stack_sandbox
from tests.functional.inventories import azure_inventory, s3_inventory

pytestmark = pytest.mark.usefixtures("stack")
WINDOW = ["--start", UNTIL.replace(day=UNTIL.day - 3).strftime("%Y-%m-%d"), "--end", UNTIL.isoformat()]


@pytest.fixture(scope="module")
def box() -> Iterator[RunningSandbox]:
    with stack_sandbox(seed=57, leads=40, days=3, drop_rate=0.05) as running:
        yield running


@pytest.fixture()
def env(tmp_path: Path, box: RunningSandbox) -> dict[str, str]:
    return stack_env(box, tmp_path)


def store_of(scheme: str, bucket: str) -> Store:
    return open_store(StoreUrl(scheme, bucket, ""), s3=S3_CREDENTIAL, azure=AZURE_CREDENTIAL)


def new_store(scheme: str) -> Store:
    store = store_of(scheme, f"inv-{uuid.uuid4().hex[:10]}")
    store.create()
    return store


def reconcile(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(cli, ["reconcile", *WINDOW, "--format", "ndjson", *args], env=env, catch_exceptions=False)


def report(env: dict[str, str], tmp_path: Path, name: str, *args: str) -> dict[str, Any]:
    path = tmp_path / f"{name}.json"
    state = {**env, "FIREHOSE_STATE": str(tmp_path / f"{name}.sqlite")}
    result = reconcile(state, "--report", str(path), *args)
    assert result.exit_code in (ExitCode.OK, ExitCode.DIFFERENCES), result.stderr
    return json.loads(path.read_text())


def same(document: dict[str, Any]) -> dict[str, Any]:
    """What a listing and an inventory must agree on: everything but the requests made."""
    return {name: value for name, value in document.items() if name != "requests"}


def inventories(box: RunningSandbox, fmt: str, s3_objects: list[ObjectInfo] | None = None) -> list[str]:
    """An S3 inventory of the sandbox's bucket in a bucket of its own, an Azure one of its container in a
    container of its own: the ``--inventory`` arguments for both."""
    s3, az = store_of("s3", box.bucket), store_of("az", box.bucket)
    s3_inv, az_inv = new_store("s3"), new_store("az")
    listed = list(s3.list()) if s3_objects is None else s3_objects
    s3_key = s3_inventory(s3_inv, box.bucket, listed, fmt="CSV" if fmt == "csv" else "Parquet")
    az_key = azure_inventory(az_inv, box.bucket, list(az.list()), fmt=fmt)
    return ["--inventory", f"{s3_inv.url}/{s3_key}", "--inventory", f"{az_inv.url}/{az_key}"]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_an_inventory_run_reports_what_a_listing_run_reports(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path, fmt: str
) -> None:
    listed = report(env, tmp_path, "listed")
    assert listed["counts"]["missing"] > 0, "a 5% drop rate leaves gaps to confirm"
    inventoried = report(env, tmp_path, "inventoried", *inventories(box, fmt))
    assert same(inventoried) == same(listed)


def test_slices_with_inventories_merge_into_the_listing_run_s_report(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path
) -> None:
    listed = report(env, tmp_path, "listed")
    given = inventories(box, "csv")
    run_state = (tmp_path / "run").as_uri()
    for index in range(3):
        sliced = reconcile({**env, "FIREHOSE_STATE": str(tmp_path / f"s{index}.sqlite")}, *given, "--shards", "3",
                           "--shard", str(index), "--run-state", run_state)  # fmt: skip
        assert sliced.exit_code in (ExitCode.OK, ExitCode.DIFFERENCES), sliced.stderr
    merged = reconcile(env, "--shards", "3", "--merge", "--run-state", run_state, "--report", str(tmp_path / "m.json"))
    assert merged.exit_code == ExitCode.DIFFERENCES, merged.stderr
    document = json.loads((tmp_path / "m.json").read_text())
    assert document["counts"] == listed["counts"] and document["findings"] == listed["findings"]


def test_a_stale_inventory_is_confirmed_live(box: RunningSandbox, env: dict[str, str], tmp_path: Path) -> None:
    """Written since the inventory: confirmation finds it, a match. Deleted since: a content check's read finds
    it gone, missing (presence alone takes the inventory's word for what it lists: README, "Inventories")."""
    s3 = store_of("s3", box.bucket)
    objects = list(s3.list("events/auto/"))
    written_since, deleted_since = objects[3], objects[-4]
    listed = [info for info in s3.list() if info.key != written_since.key]
    given = inventories(box, "csv", s3_objects=listed)
    data = s3.read(deleted_since.key)
    _delete(box.bucket, deleted_since.key)
    try:
        baseline = report(env, tmp_path, "listed", "--verify", "content")
        content = report(env, tmp_path, "content", "--verify", "content", *given)
        presence = report(env, tmp_path, "presence", *given)
    finally:
        s3.write(deleted_since.key, data)  # the module's box stays as it was
    gone = [f for f in content["findings"] if f["key"] == deleted_since.key]
    assert [f["verdict"] for f in gone] == ["missing"] and "deleted since the inventory" in gone[0]["reason"]
    gone[0]["reason"] = None  # a listing finds no object, and says nothing more
    assert same(content) == same(baseline)
    assert not [f for f in presence["findings"] if f["key"] == written_since.key], "confirmed: it is there"
    assert presence["counts"]["missing"] == baseline["counts"]["missing"] - 1


def _delete(bucket: str, key: str) -> None:
    import boto3

    boto3.client("s3", endpoint_url=S3_CREDENTIAL.endpoint_url, region_name="us-east-1", aws_access_key_id="test",
                 aws_secret_access_key="test").delete_object(Bucket=bucket, Key=key)  # fmt: skip


@pytest.mark.parametrize(("vendor", "fmt"), [("s3", "CSV"), ("az", "parquet")])
def test_a_copy_on_disk_with_its_inventory_on_disk(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path, vendor: str, fmt: str
) -> None:
    """``--archive file:///copy/<bucket>`` and an inventory copied to disk: the folder's name is the bucket's."""
    s3 = store_of("s3", box.bucket)
    copy = tmp_path / "copy" / box.bucket
    for info in s3.list():
        (copy / info.key).parent.mkdir(parents=True, exist_ok=True)
        (copy / info.key).write_bytes(s3.read(info.key))
    disk = open_store(StoreUrl("file", str(copy), ""))
    objects = list(disk.list())
    inventory_root = tmp_path / "inventory-bucket"
    inventory_root.mkdir()
    inventory_store = open_store(StoreUrl("file", str(inventory_root), ""))
    if vendor == "s3":
        key = s3_inventory(inventory_store, box.bucket, objects, fmt=fmt)
    else:
        key = azure_inventory(inventory_store, box.bucket, objects, fmt=fmt)
    archive = ["--archive", f"{copy.as_uri()}/events/auto"]
    listed = report(env, tmp_path, "listed", *archive)
    inventoried = report(env, tmp_path, "inventoried", *archive, "--inventory", (inventory_root / key).as_uri())
    assert same(inventoried) == same(listed) and listed["counts"].get("match", 0) > 0


def _written(tmp_path: Path, box: RunningSandbox, fmt: str, vendor: str) -> tuple[Path, str, Path]:
    """An inventory of the S3 bucket on disk: (its root, the manifest's key, its first data file)."""
    root = tmp_path / "inv"
    root.mkdir(exist_ok=True)
    store = open_store(StoreUrl("file", str(root), ""))
    objects = list(store_of("s3", box.bucket).list())
    key = (s3_inventory if vendor == "s3" else azure_inventory)(store, box.bucket, objects, fmt=fmt)
    manifest = json.loads((root / key).read_text())
    first = manifest["files"][0]["key" if vendor == "s3" else "blob"]
    return root, key, root / first


@pytest.mark.parametrize(
    ("vendor", "fmt", "damage", "says"),
    [
        ("s3", "CSV", "cut", "the manifest says"),
        ("s3", "Parquet", "flip", "MD5 checksum"),
        ("az", "csv", "cut mid-row", "columns"),
        ("az", "parquet", "cut, its size matching", "not a whole Parquet file"),
        ("s3", "CSV", "not gzip", "not a whole CSV inventory file"),
    ],
)
def test_a_damaged_inventory_file_stops_the_run_with_one_line_naming_it(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path, vendor: str, fmt: str, damage: str, says: str
) -> None:
    root, key, file = _written(tmp_path, box, fmt, vendor)
    data = file.read_bytes()
    manifest_path = root / key
    if damage == "cut":
        file.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        file.write_bytes(data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
    elif damage == "not gzip":  # cut short, and the manifest rewritten to match: gzip itself finds it
        file.write_bytes(data[: len(data) - 20])
        manifest = json.loads(manifest_path.read_text())
        manifest["files"][0].update(size=len(data) - 20, MD5checksum=None)
        manifest_path.write_text(json.dumps(manifest))
    else:  # an Azure file cut (a CSV in the middle of a row), its size in the manifest matching (Azure has no MD5)
        cut = data[: data.rindex(b",", 0, len(data) - 5)] if fmt == "csv" else data[: len(data) // 2]
        file.write_bytes(cut)
        manifest = json.loads(manifest_path.read_text())
        manifest["files"][0]["size"] = len(cut)
        manifest_path.write_text(json.dumps(manifest))
    archive = ["--archive", f"{'s3' if vendor == 's3' else 'az'}://{box.bucket}/events/auto"]
    result = reconcile(env, *archive, "--inventory", manifest_path.as_uri())
    assert result.exit_code == ExitCode.ARCHIVE, result.stderr
    assert result.stdout == "", "nothing half-written"
    lines = result.stderr.strip().splitlines()
    error = [line for line in lines if line.startswith("firehose: error:")]
    assert len(error) == 1 and says in error[0] and file.relative_to(root).as_posix() in error[0], lines


def test_refused_with_one_line_orc_another_bucket_and_no_pyarrow(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path
) -> None:
    root, key, _ = _written(tmp_path, box, "CSV", "s3")
    manifest_path = root / key
    archive = ["--archive", f"s3://{box.bucket}/events/auto"]
    other = reconcile(env, "--archive", "s3://another-bucket/events", "--inventory", manifest_path.as_uri())
    assert other.exit_code == ExitCode.USAGE
    assert f"an S3 inventory of bucket '{box.bucket}'" in other.stderr and "s3://another-bucket" in other.stderr
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "fileFormat": "ORC"}))
    orc = reconcile(env, *archive, "--inventory", manifest_path.as_uri())
    assert orc.exit_code == ExitCode.USAGE and "'ORC' is not read" in orc.stderr and orc.stdout == ""
    manifest_path.write_text("{not json")
    broken = reconcile(env, *archive, "--inventory", manifest_path.as_uri())
    assert broken.exit_code == ExitCode.ARCHIVE and "not valid JSON" in broken.stderr


def test_keys_with_spaces_plus_signs_and_non_ascii_are_read_as_stored(tmp_path: Path) -> None:
    """S3 writes CSV keys URL-encoded (a space as ``+``, a ``+`` as ``%2B``); Parquet and Azure keys as they are.
    Rows come out in lead-time order whatever order the files hold them in."""
    lead, later = "6920f1a0aaaaaaaaaaaaaaaa", "6920f1b0aaaaaaaaaaaaaaaa"
    prefix = "ev ents+ü/día"
    keys = [f"{prefix}/{lead}/6920f1a1bbbbbbbbbbbbbbb{n}.json" for n in range(5)]
    keys += [f"{prefix}/{later}/6920f1b1bbbbbbbbbbbbbbbb.json", "elsewhere/x.json", f"{prefix}/notes.txt"]
    when = datetime(2025, 11, 22, tzinfo=UTC)
    objects = [ObjectInfo(key, 10 + n, f"etag{n}", when) for n, key in enumerate(reversed(keys))]
    for vendor, fmt in (("s3", "CSV"), ("s3", "Parquet"), ("az", "csv"), ("az", "parquet")):
        root = tmp_path / vendor / fmt / "inventory-bucket"
        root.mkdir(parents=True)
        store = open_store(StoreUrl("file", str(root), ""))
        key = (s3_inventory if vendor == "s3" else azure_inventory)(store, "lc-archive", objects, fmt=fmt, files=3)
        inventory = read_manifest((root / key).as_uri(), lambda url: open_store(url))
        found = list(inventory.objects("s3" if vendor == "s3" else "az", "lc-archive", prefix, 0, 2**31))
        assert [info.key for info in found] == sorted(keys[:6]), (vendor, fmt)
        assert {info.key: info.size for info in found}[keys[0]] == 10 + len(keys) - 1
        assert {info.last_modified for info in found} == {when}, (vendor, fmt)
        inventory.store.close()


def test_an_external_sort_spills_and_merges_in_order() -> None:
    import random

    rows = [(random.Random(n).randrange(10**6), f"k{n}") for n in range(10_000)]
    assert list(external_sort(rows, chunk=999)) == sorted(rows)
    assert list(external_sort(rows[:10], chunk=10)) == sorted(rows[:10])
    assert list(external_sort([], chunk=10)) == []


def test_a_gzip_csv_inventory_is_read_a_buffer_at_a_time(tmp_path: Path) -> None:
    """The helper writes what S3 writes: no header row, every value quoted, keys URL-encoded."""
    root = tmp_path / "inventory-bucket"
    root.mkdir()
    store = open_store(StoreUrl("file", str(root), ""))
    info = ObjectInfo("a b+c/6920f1a0aaaaaaaaaaaaaaaa/6920f1a1bbbbbbbbbbbbbbbb.json", 3, "e", datetime.now(UTC))
    key = s3_inventory(store, "lc-archive", [info], files=1)
    data_key = json.loads((root / key).read_text())["files"][0]["key"]
    line = gzip.decompress((root / data_key).read_bytes()).decode().splitlines()[0]
    assert line.startswith('"lc-archive","a+b%2Bc/6920f1a0')
    shutil.rmtree(root)
