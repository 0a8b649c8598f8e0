"""Inventories as a listing source: an S3 Inventory manifest or an Azure Blob Inventory run, read instead of
listing a bucket or container.

Two documented shapes are read, tolerantly (unknown fields are ignored, columns are found by name):

- **S3 Inventory**: ``manifest.json`` with ``sourceBucket``, ``destinationBucket`` (an ARN), ``fileFormat``
  (``CSV``, ``Parquet``; ``ORC`` is refused), ``fileSchema`` (the CSV columns, comma-separated), ``files``
  (``key``, ``size``, ``MD5checksum``) and ``creationTimestamp`` (milliseconds, when the scan began). CSV files
  are gzip, without a header row, keys URL-encoded; Parquet columns are ``key``, ``size``,
  ``last_modified_date``, ``e_tag``, ....
- **Azure Blob Inventory**: a run's ``<rule>-manifest.json`` with ``files`` (``blob``, ``size``),
  ``inventoryStartTime``, and ``ruleDefinition`` (``format`` csv or parquet, ``schemaFields``, ``filters`` with
  ``prefixMatch``). CSV files have a header row (``Name,Creation-Time,Last-Modified,Content-Length,...``); a
  ``Name`` is ``<container>/<blob name>``.

An inventory's files come in no promised order, while a reconcile consumes a listing in lead-time order. So the
rows of the range asked for are sorted by ``sorting.external_sort``: chunks sorted in memory and spilled to
temporary files, merged; memory holds one chunk and one inventory file's bytes, however many rows there are.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from firehose.archive.base import ObjectInfo, Store
from firehose.archive.layout import KEY_PATTERN, folder
from firehose.archive.sorting import external_sort
from firehose.codec import decode
from firehose.errors import DataError, UsageError

EPOCH = datetime.fromtimestamp(0, tz=UTC)
Row = tuple[str, int, str, "float | str"]
"""(key, size, etag, last modified: seconds, or the text a CSV file holds) of one inventory row."""
StoreOpener = Callable[[str], Store]
"""Opens a store URL (``s3://bucket``) with the credentials the run uses."""


@dataclass(frozen=True)
class InventoryFile:
    key: str
    size: int | None
    md5: str | None


@dataclass(frozen=True)
class Inventory:
    """One inventory, as its manifest describes it. ``url`` is the manifest's, for messages."""

    url: str
    vendor: str
    """``s3`` or ``az``: whose documented layout it has."""
    source: str | None
    """The bucket an S3 inventory lists (None for Azure, whose rows each name their container)."""
    prefixes: tuple[str, ...]
    """Azure: the rule's ``prefixMatch`` filters (``container/prefix``); empty when it lists every container."""
    file_format: str
    columns: tuple[str, ...]
    """S3 CSV: the columns of ``fileSchema`` (Azure CSV files name theirs in a header row)."""
    files: tuple[InventoryFile, ...]
    taken_at: int
    """When the scan began (seconds): objects written later may be absent from it."""
    store: Store
    """Where its files are."""

    def serves(self, scheme: str, bucket: str) -> bool:
        """Whether this inventory lists the bucket or container of a destination."""
        return self._inside(scheme, bucket) is not None

    def _inside(self, scheme: str, bucket: str) -> tuple[str, str] | None:
        """``(bucket or container, the folder inside it)`` of a destination this inventory lists, else None. A
        ``file`` store is a copy on disk: the bucket is the nearest folder of its path the inventory lists, and
        the rest of the path is a folder inside it (``file:///copy/lc-archive/events`` is ``events/`` of
        ``lc-archive``)."""
        if scheme == self.vendor:
            return (bucket, "") if self._lists(bucket) else None
        if scheme != "file":
            return None
        parts = bucket.strip("/").split("/")
        for at in range(len(parts) - 1, -1, -1):
            if self._lists(parts[at]):
                return parts[at], "".join(part + "/" for part in parts[at + 1 :])
        return None

    def _lists(self, name: str) -> bool:
        if self.vendor == "s3":
            return name == self.source
        return not self.prefixes or any((name + "/").startswith(p) or p.startswith(name + "/") for p in self.prefixes)

    def describe(self) -> str:
        if self.vendor == "s3":
            return f"an S3 inventory of bucket {self.source!r}"
        return "an Azure inventory of " + (", ".join(repr(p) for p in self.prefixes) or "every container")

    def objects(
        self, scheme: str, bucket: str, prefix: str, start_seconds: int, end_seconds: int
    ) -> Iterator[ObjectInfo]:
        """The objects of the leads made in ``[start_seconds, end_seconds]`` right under ``prefix``, in lead-time
        order (key order within a second), as a listing of the window yields them."""
        inside = self._inside(scheme, bucket)
        assert inside is not None, "objects are asked only of a destination the inventory serves"
        name, within = inside
        base = within + folder(prefix)
        container = name + "/" if self.vendor == "az" else ""

        skip, at, search = len(container), len(base), KEY_PATTERN.search  # once, not for each of a million rows
        since = max(0, at - 1)  # the pattern from the folder's own /

        def selected() -> Iterator[tuple[int, str, int, str, float | str]]:
            for key, size, etag, modified in self._rows():
                if skip:
                    if not key.startswith(container):  # Azure: each Name starts with its container
                        continue
                    key = key[skip:]
                if not key.startswith(base):
                    continue
                match = search(key, since)
                if match is None or match.start(1) != at:
                    continue
                made = int(match.group(1)[:8], 16)
                if start_seconds <= made <= end_seconds:
                    yield made, key, size, etag, modified

        cut = len(within)
        for _, key, size, etag, modified in external_sort(selected()):
            # Keys as the destination's store names them: a copy on disk is rooted where its folder is.
            yield ObjectInfo(key[cut:], size, etag, _moment(modified))

    def _rows(self) -> Iterator[Row]:
        for file in self.files:
            where = f"{self.url}: inventory file {file.key}"
            data = self.store.read(file.key)
            if file.size is not None and len(data) != file.size:
                raise DataError(f"{where} is {len(data)} bytes, the manifest says {file.size}: cut short or replaced")
            if file.md5 and hashlib.md5(data, usedforsecurity=False).hexdigest() != file.md5.lower():
                raise DataError(f"{where} does not match the manifest's MD5 checksum: damaged or replaced")
            if self.file_format == "parquet":
                from firehose.archive.inventory_parquet import parquet_rows

                names, rows = parquet_rows(data, where)
            else:
                names, rows = self._csv(data, where)
            yield from _objects(names, rows, encoded=self.vendor == "s3" and self.file_format == "csv", where=where)

    def _csv(self, data: bytes, where: str) -> tuple[Sequence[str], Iterator[Sequence[Any]]]:
        """Rows streamed from the file's bytes: decompressed and decoded a buffer at a time, never whole."""
        raw = io.BytesIO(data)
        # S3's are gzip; an Azure run's are plain, unless someone packed them.
        packed = gzip.GzipFile(fileobj=raw) if data[:2] == b"\x1f\x8b" else None
        reader = csv.reader(io.TextIOWrapper(packed or raw, encoding="utf-8-sig", newline=""))
        names = self.columns or _guarded(lambda: next(reader, None), where) or []
        return names, _checked(reader, len(names), where)


FAULTS = (OSError, EOFError, zlib.error, UnicodeDecodeError, csv.Error)
"""What a damaged CSV inventory file raises as it is read: gzip cut short or corrupt, bytes that are not UTF-8."""


def _guarded(read: Callable[[], list[str] | None], where: str) -> list[str] | None:
    try:
        return read()
    except FAULTS as exc:
        raise DataError(f"{where}: not a whole CSV inventory file ({exc or type(exc).__name__})") from None


def _checked(reader: Iterator[list[str]], width: int, where: str) -> Iterator[Sequence[Any]]:
    """CSV rows, each with the schema's number of columns: a row cut short is a file cut short. One ``try`` for
    the whole file (a function and a ``try`` for each row cost a tenth of the rows' reading)."""
    try:
        for number, row in enumerate(reader, 1):
            if not row:
                continue  # a blank line
            if len(row) != width:
                raise DataError(f"{where}: row {number} has {len(row)} columns, the schema {width}: cut short?")
            yield row
    except FAULTS as exc:
        raise DataError(f"{where}: not a whole CSV inventory file ({exc or type(exc).__name__})") from None


def _name(column: str) -> str:
    """A column's name compared across vendors and formats: ``LastModifiedDate``, ``last_modified_date`` and
    ``Last-Modified`` alike."""
    return column.strip().lower().replace("_", "").replace("-", "").replace(" ", "")


KEY_COLUMNS = ("key", "name")
SIZE_COLUMNS = ("size", "contentlength")
ETAG_COLUMNS = ("etag",)
TIME_COLUMNS = ("lastmodifieddate", "lastmodified")
CURRENT = {"islatest": True, "iscurrentversion": True, "isdeletemarker": False, "deleted": False, "hdiisfolder": False}
"""Columns that, when present, say a row is not the object a listing shows (an old version, a delete marker, a
soft-deleted blob, a folder), with the value a listed object has."""


def _objects(names: Sequence[str], rows: Iterable[Sequence[Any]], *, encoded: bool, where: str) -> Iterator[Row]:
    index = {_name(n): i for i, n in enumerate(names)}
    key_at = next((index[c] for c in KEY_COLUMNS if c in index), None)
    if key_at is None:
        raise DataError(f"{where}: no Key or Name column in {list(names)}")
    size_at = next((index[c] for c in SIZE_COLUMNS if c in index), None)
    etag_at = next((index[c] for c in ETAG_COLUMNS if c in index), None)
    time_at = next((index[c] for c in TIME_COLUMNS if c in index), None)
    checks = [(index[c], wanted) for c, wanted in CURRENT.items() if c in index]
    snapshot_at = index.get("snapshot")
    for row in rows:
        if checks and any(_flag(row[at]) is not wanted for at, wanted in checks if row[at] not in ("", None)):
            continue
        if snapshot_at is not None and row[snapshot_at] not in ("", None):
            continue
        key = row[key_at]
        if encoded and ("%" in key or "+" in key):  # most keys need no decoding: skip the call (1 µs a row)
            key = unquote_plus(key)
        size = _size(row[size_at], where) if size_at is not None else 0
        etag = str(row[etag_at] or "").strip('"') if etag_at is not None else ""
        modified = row[time_at] if time_at is not None else 0.0
        # A time is parsed only for the rows a run keeps (_moment); Parquet's are datetimes already.
        if isinstance(modified, datetime):
            modified = (modified if modified.tzinfo else modified.replace(tzinfo=UTC)).timestamp()
        elif isinstance(modified, int):  # Parquet's TIMESTAMP_MILLIS read as a number
            modified = modified / 1000
        yield str(key), size, etag, modified


def _flag(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() == "true"


def _size(value: Any, where: str) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        raise DataError(f"{where}: size {str(value)[:40]!r} is not a number") from None


def _moment(value: float | str) -> datetime:
    """A row's last-modified time, in UTC; the epoch when it has none that can be read (it decides nothing here)."""
    if isinstance(value, float):
        return datetime.fromtimestamp(value, tz=UTC) if value else EPOCH
    try:
        moment = datetime.fromisoformat(str(value).strip())
    except ValueError:
        return EPOCH
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def read_manifest(url: str, opener: StoreOpener) -> Inventory:
    """The inventory whose manifest is at ``url`` (``s3://``, ``az://`` or ``file:///.../manifest.json``)."""
    from firehose.archive import StoreUrl

    where = StoreUrl.parse(url, "--inventory")
    if where.scheme == "file":  # the manifest's folder; its files are found from the root of the copy
        path = where.bucket
        root, key = path.rsplit("/", 1)
        store = opener(f"file://{root}")
    else:
        store, key = opener(f"{where.scheme}://{where.bucket}"), where.prefix
    manifest = decode(store.read(key), where=f"--inventory {url}")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
        raise DataError(f"--inventory {url}: not an S3 or Azure inventory manifest (no list of files)")
    inventory = _s3(url, manifest, store) if "sourceBucket" in manifest else _azure(url, manifest, store)
    if where.scheme == "file":
        inventory = _rooted(inventory, path, opener)
    elif inventory.vendor == "s3":
        bucket = str(manifest.get("destinationBucket") or "").rsplit(":", 1)[-1]
        if bucket and bucket != where.bucket:  # the files are where the manifest says, not where it was found
            inventory = _with_store(inventory, opener(f"s3://{bucket}"))
    return inventory


def _s3(url: str, manifest: dict[str, Any], store: Store) -> Inventory:
    fmt = str(manifest.get("fileFormat", "")).lower()
    if fmt not in ("csv", "parquet"):
        raise UsageError(f"--inventory {url}: fileFormat {manifest.get('fileFormat')!r} is not read: "
                         "configure the inventory as CSV or Parquet")  # fmt: skip
    columns = tuple(c.strip() for c in str(manifest.get("fileSchema", "")).split(",")) if fmt == "csv" else ()
    listed = _file_list(url, manifest, "key")
    files = tuple(InventoryFile(str(f["key"]), _int(f.get("size")), f.get("MD5checksum")) for f in listed)
    taken = _int(manifest.get("creationTimestamp"))
    return Inventory(url, "s3", str(manifest["sourceBucket"]), (), fmt, columns, files,
                     taken // 1000 if taken else 2**31, store)  # fmt: skip


def _azure(url: str, manifest: dict[str, Any], store: Store) -> Inventory:
    rule: dict[str, Any] = manifest.get("ruleDefinition") or {}
    if not isinstance(rule, dict):
        raise DataError(f"--inventory {url}: its ruleDefinition is not an object")
    fmt = str(rule.get("format", "csv")).lower()
    if fmt not in ("csv", "parquet"):
        raise UsageError(f"--inventory {url}: format {rule.get('format')!r} is not read: use CSV or Parquet")
    if str(rule.get("objectType", "blob")).lower() != "blob":
        raise UsageError(f"--inventory {url}: an inventory of containers, not of blobs")
    filters = rule.get("filters") or {}
    filters = filters if isinstance(filters, dict) else {}
    prefixes = tuple(str(p) for p in filters.get("prefixMatch") or ())
    files = tuple(InventoryFile(str(f["blob"]), _int(f.get("size")), None) for f in _file_list(url, manifest, "blob"))
    try:
        taken = int(datetime.fromisoformat(str(manifest["inventoryStartTime"])).timestamp())
    except (KeyError, ValueError):
        taken = 2**31
    return Inventory(url, "az", None, prefixes, fmt, (), files, taken, store)


def _file_list(url: str, manifest: dict[str, Any], field: str) -> list[dict[str, Any]]:
    files = [f for f in manifest["files"] if isinstance(f, dict)]
    if len(files) != len(manifest["files"]) or not all(isinstance(f.get(field), str) for f in files):
        raise DataError(f"--inventory {url}: a file of the manifest has no {field!r}")
    return files


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _with_store(inventory: Inventory, store: Store) -> Inventory:
    from dataclasses import replace

    inventory.store.close()
    return replace(inventory, store=store)


def _rooted(inventory: Inventory, path: str, opener: StoreOpener) -> Inventory:
    """A copy on disk: its files' keys are relative to the copied bucket's or container's root, which is the
    nearest folder above the manifest that holds the first of them."""
    from pathlib import Path

    first = inventory.files[0].key if inventory.files else ""
    for parent in Path(path).parents:
        if str(parent) != "/" and (parent / first).is_file():
            return _with_store(inventory, opener(parent.as_uri()))
    if not inventory.files:
        return inventory
    raise DataError(f"--inventory {inventory.url}: its file {first} is in no folder above the manifest")
