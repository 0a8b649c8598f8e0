"""Inventories written in the documented shapes, for tests and benches.

- S3 Inventory: ``<prefix>/<source bucket>/<config>/<YYYY-MM-DDTHH-MMZ>/manifest.json`` with ``sourceBucket``,
  ``destinationBucket`` (an ARN), ``version``, ``creationTimestamp`` (ms), ``fileFormat``, ``fileSchema`` and
  ``files`` (``key``, ``size``, ``MD5checksum``); the files under ``<prefix>/<source bucket>/<config>/data/``,
  CSV gzip-compressed with no header row and URL-encoded keys, or Parquet with snake-case columns.
- Azure Blob Inventory: ``<YYYY>/<MM>/<DD>/<HH-MM-SS>/<rule>/<rule>-manifest.json`` with ``destinationContainer``,
  ``endpoint``, ``files`` (``blob``, ``size``), ``inventoryStartTime``, ``inventoryCompletionTime``,
  ``ruleDefinition`` (``filters``, ``format``, ``objectType``, ``schedule``, ``schemaFields``), ``ruleName``,
  ``status``, ``summary`` and ``version``; the files beside it, CSV with a header row, or Parquet, each ``Name``
  being ``<container>/<blob>``.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import random
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from urllib.parse import quote_plus

from firehose.archive import ObjectInfo, Store

S3_SCHEMA = ("Bucket", "Key", "Size", "LastModifiedDate", "ETag", "StorageClass", "IsMultipartUploaded")
AZURE_SCHEMA = ("Name", "Creation-Time", "Last-Modified", "Content-Length", "Content-MD5", "BlobType", "AccessTier")
TAKEN = datetime(2026, 11, 21, 1, 0, tzinfo=UTC)
"""When the inventories here were taken: after the seeded data (which ends 2026-11-20)."""


def _chunks(rows: list[ObjectInfo], files: int, seed: int) -> list[list[ObjectInfo]]:
    """The rows shuffled over ``files`` files: an inventory's files come in no promised order."""
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    return [rows[i::files] for i in range(files)]


def s3_inventory(
    store: Store,
    source: str,
    objects: Iterable[ObjectInfo],
    *,
    fmt: str = "CSV",
    files: int = 2,
    prefix: str = "inventories",
    taken: datetime = TAKEN,
    seed: int = 1,
) -> str:
    """An S3 inventory of bucket ``source`` listing ``objects``, written into ``store``; the manifest's key."""
    base = f"{prefix}/{source}/firehose-daily"
    entries = []
    for number, rows in enumerate(_chunks(list(objects), files, seed)):
        if fmt == "CSV":
            body = _s3_csv(source, rows)
            key = f"{base}/data/{number:04d}-3f0a1b2c.csv.gz"
        else:
            body = _s3_parquet(source, rows)
            key = f"{base}/data/{number:04d}-3f0a1b2c.parquet"
        store.write(key, body, if_absent=False, content_type="application/octet-stream")
        entries.append({"key": key, "size": len(body), "MD5checksum": hashlib.md5(body).hexdigest()})
    schema = ", ".join(S3_SCHEMA) if fmt == "CSV" else _PARQUET_MESSAGE
    manifest = {
        "sourceBucket": source,
        "destinationBucket": f"arn:aws:s3:::{store.url.split('://', 1)[1].rstrip('/').rsplit('/', 1)[-1]}",
        "version": "2016-11-30",
        "creationTimestamp": str(int(taken.timestamp() * 1000)),
        "fileFormat": fmt,
        "fileSchema": schema,
        "files": entries,
    }
    key = f"{base}/{taken:%Y-%m-%dT%H-%MZ}/manifest.json"
    store.write(key, json.dumps(manifest, indent=2).encode(), if_absent=False)
    return key


_PARQUET_MESSAGE = (
    "message s3.inventory { required binary bucket (STRING); required binary key (STRING); optional int64 size; "
    "optional int64 last_modified_date (TIMESTAMP(MILLIS,true)); optional binary e_tag (STRING); "
    "optional binary storage_class (STRING);}"
)


def _s3_csv(source: str, rows: Sequence[ObjectInfo]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\n")
    for info in rows:
        modified = info.last_modified.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        writer.writerow([source, quote_plus(info.key, safe="/"), info.size, modified, info.etag.strip('"'),
                         "STANDARD", "false"])  # fmt: skip
    return gzip.compress(text.getvalue().encode())


def _s3_parquet(source: str, rows: Sequence[ObjectInfo]) -> bytes:
    import pyarrow
    import pyarrow.parquet

    table = pyarrow.table(
        {
            "bucket": [source] * len(rows),
            "key": [info.key for info in rows],
            "size": pyarrow.array([info.size for info in rows], pyarrow.int64()),
            "last_modified_date": pyarrow.array([info.last_modified for info in rows], pyarrow.timestamp("ms", "UTC")),
            "e_tag": [info.etag.strip('"') for info in rows],
            "storage_class": ["STANDARD"] * len(rows),
        }
    )
    out = io.BytesIO()
    pyarrow.parquet.write_table(table, out)
    return out.getvalue()


def azure_inventory(
    store: Store,
    container: str,
    objects: Iterable[ObjectInfo],
    *,
    fmt: str = "csv",
    files: int = 2,
    rule: str = "firehose",
    taken: datetime = TAKEN,
    seed: int = 1,
) -> str:
    """An Azure Blob Inventory run listing ``objects`` of ``container``, written into ``store``; the manifest's
    blob name."""
    base = f"{taken:%Y/%m/%d/%H-%M-%S}/{rule}"
    entries = []
    for number, rows in enumerate(_chunks(list(objects), files, seed)):
        body = _azure_csv(container, rows) if fmt == "csv" else _azure_parquet(container, rows)
        blob = f"{base}/{rule}_1000000_{number}.{fmt}"
        store.write(blob, body, if_absent=False, content_type="application/octet-stream")
        entries.append({"blob": blob, "size": len(body)})
    manifest = {
        "destinationContainer": "inventory",
        "endpoint": "https://lcarchive.blob.core.windows.net",
        "files": entries,
        "inventoryCompletionTime": f"{taken:%Y-%m-%dT%H}:10:56Z",
        "inventoryStartTime": f"{taken:%Y-%m-%dT%H:%M:%S}Z",
        "ruleDefinition": {
            "filters": {
                "blobTypes": ["blockBlob"],
                "includeBlobVersions": False,
                "includeSnapshots": False,
                "prefixMatch": [f"{container}/"],
            },
            "format": fmt,
            "objectType": "blob",
            "schedule": "daily",
            "schemaFields": list(AZURE_SCHEMA),
        },
        "ruleName": rule,
        "status": "Succeeded",
        "summary": {"objectCount": sum(1 for _ in entries), "totalObjectSize": 0},
        "version": "1.0",
    }
    key = f"{base}/{rule}-manifest.json"
    store.write(key, json.dumps(manifest, indent=2).encode(), if_absent=False)
    return key


def _azure_values(container: str, info: ObjectInfo) -> list[object]:
    modified = info.last_modified.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
    return [f"{container}/{info.key}", modified, modified, info.size, "", "BlockBlob", "Hot"]


def _azure_csv(container: str, rows: Sequence[ObjectInfo]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(AZURE_SCHEMA)
    writer.writerows(_azure_values(container, info) for info in rows)
    return text.getvalue().encode()


def _azure_parquet(container: str, rows: Sequence[ObjectInfo]) -> bytes:
    import pyarrow
    import pyarrow.parquet

    values = [_azure_values(container, info) for info in rows]
    columns = {name: [row[i] for row in values] for i, name in enumerate(AZURE_SCHEMA)}
    columns["Content-Length"] = pyarrow.array(columns["Content-Length"], pyarrow.int64())  # type: ignore[assignment]
    out = io.BytesIO()
    pyarrow.parquet.write_table(pyarrow.table(columns), out)
    return out.getvalue()
