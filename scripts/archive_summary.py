"""For the demo: compare the events LeadConduit holds (an NDJSON file from `firehose events`) with what the
firehose wrote to the local S3 and Azure servers, per destination. `firehose reconcile` will do this for real.

usage: python scripts/archive_summary.py EVENTS.ndjson   (credentials from `localstack/stack env`)
"""

from __future__ import annotations

import os
import sys
from collections import defaultdict

from firehose.archive import AzureCredential, S3Credential, StoreUrl, open_store
from firehose.codec import decode
from firehose.event import EventView
from firehose.secret import Secret


def main(path: str) -> None:
    expected: dict[tuple[str, str], set[str]] = defaultdict(set)
    with open(path, "rb") as lines:
        for line in lines:
            view = EventView(decode(line))
            for destination in view.destinations():
                if view.lead_id:
                    expected[(destination.scheme, destination.bucket)].add(destination.key(view.lead_id, view.id))
    s3 = S3Credential(endpoint_url=os.environ["FIREHOSE_TEST_S3_ENDPOINT"], region="us-east-1")
    azure = AzureCredential(connection_string=Secret(os.environ["AZURE_STORAGE_CONNECTION_STRING"]))
    print(f"{'destination':<24} {'prefix':<14} {'expected':>9} {'archived':>9} {'missing':>8}  example key")
    for (scheme, bucket), keys in sorted(expected.items()):
        store = open_store(StoreUrl(scheme, bucket, ""), s3=s3, azure=azure)
        stored = {info.key for info in store.list()}
        store.close()
        by_prefix: dict[str, list[str]] = defaultdict(list)
        for key in keys:
            by_prefix[key.rsplit("/", 2)[0] if key.count("/") > 1 else "(none)"].append(key)
        for prefix, wanted in sorted(by_prefix.items()):
            present = [k for k in wanted if k in stored]
            example = min(present) if present else "-"
            print(
                f"{scheme}://{bucket:<19} {prefix:<14} {len(wanted):>9} {len(present):>9} "
                f"{len(wanted) - len(present):>8}  {example}"
            )


if __name__ == "__main__":
    main(sys.argv[1])
