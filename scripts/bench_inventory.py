"""Presence from an inventory against presence from a listing, at --keys keys (default 100,000 and 1,000,000).

Writes --live tiny objects (default 100,000) into a SeaweedFS bucket under ``events/auto/<lead>/<event>.json``,
leads spread over 30 days, and an S3 Inventory of it (gzip CSV, the documented manifest) into a bucket of its
own: at N keys the inventory holds the live objects plus N - live synthetic rows (leads that were never written),
in 4 files, rows shuffled, and lacks --missing events that the "API" expects, each of which the inventory run
confirms live with a listing of its lead's folder (as ``reconcile --inventory`` does).

Each way is a whole process (imports, opening the store, the work), interleaved, medians of --rounds:

- listing: the window listed as reconcile lists it (``list_window``), every key counted;
- inventory: the window's rows read from the inventory (``reconcile.inventories``: the manifest, every file,
  the external sort) and every missing event confirmed by a lead listing.

Where N is more than the live objects (the million), the listing is timed on the live objects and scaled by
N / live (its work is a request per 1,000 keys, linear in keys), and the output says so. The inventory process's
peak RSS is printed too: it must stay flat as N grows.

usage: scripts/bench inventory [--keys N ...] [--live L] [--missing M] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from bench_support import stack_env, stack_stores

from firehose.archive import ObjectInfo, S3Credential, Store, StoreUrl, open_store
from firehose.ids import make_id
from firehose.secret import Secret

ROOT = Path(__file__).resolve().parent.parent
START = 1_790_000_000  # 2026-09-21: leads over the 30 days after
DAYS = 30
PREFIX = "events/auto"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--live", type=int, default=100_000)
    parser.add_argument("--missing", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return _worker(*args.worker)
    env = stack_env()
    bucket = f"bench-inv-{int(time.time())}"
    s3, _ = stack_stores(env, bucket)
    s3.create()
    inventories, _ = stack_stores(env, bucket + "-inventory")
    inventories.create()
    rng = random.Random(7)
    live = sorted(_key(rng) for _ in range(args.live))
    print(f"bench: writing {len(live):,} objects into s3://{bucket}", file=sys.stderr)
    with ThreadPoolExecutor(64) as pool:
        list(pool.map(lambda key: s3.write(key, b"{}", if_absent=False), live))
    missing = [_key(rng) for _ in range(args.missing)]  # expected by the "API", in neither store nor inventory
    (ROOT / ".cache").mkdir(exist_ok=True)
    (ROOT / ".cache" / "bench-inventory-missing.json").write_text(json.dumps(missing))
    for keys in args.keys:
        manifest = _inventory(inventories, bucket, live, keys, rng)
        times: dict[str, list[float]] = {"listing": [], "inventory": []}
        rows: dict[str, int] = {}
        rss = 0.0
        for _ in range(args.rounds):
            for way in times:
                target = manifest if way == "inventory" else bucket
                started = time.perf_counter()
                out = subprocess.run([sys.executable, __file__, "--worker", way, bucket, target], env=env,
                                     capture_output=True, text=True, check=True)  # fmt: skip
                times[way].append(time.perf_counter() - started)
                result = json.loads(out.stdout)
                rows[way] = result["rows"]
                if way == "inventory":
                    rss = max(rss, result["peak_rss_mib"])
        listing = statistics.median(times["listing"]) * keys / len(live)
        inventory = statistics.median(times["inventory"])
        scaled = f" (timed on {len(live):,} live objects, scaled by {keys / len(live):g})" if keys > len(live) else ""
        print(f"\n{keys:,} keys, medians of {args.rounds} whole processes, {args.missing} missing confirmed live")
        print(f"  listing    {listing:8.1f} s  {rows['listing']:,} keys listed{scaled}")
        print(f"  inventory  {inventory:8.1f} s  {rows['inventory']:,} rows read, peak RSS {rss:.0f} MiB")
        print(f"  inventory is {listing / inventory:.1f}x faster than listing")


def _key(rng: random.Random) -> str:
    second = START + rng.randrange(DAYS * 86_400)
    lead = make_id(second, rng.randrange(2**40), rng.randrange(2**24))
    return f"{PREFIX}/{lead}/{make_id(second + rng.randrange(60), rng.randrange(2**40), rng.randrange(2**24))}.json"


def _inventory(store: Store, bucket: str, live: list[str], keys: int, rng: random.Random) -> str:
    """An S3 inventory of ``keys`` rows (the live keys and synthetic ones), 4 files; the manifest's URL."""
    sys.path.insert(0, str(ROOT))  # the documented shapes, as the tests write them
    from tests.functional.inventories import s3_inventory

    when = datetime.fromtimestamp(START + DAYS * 86_400, tz=UTC)
    rows = [ObjectInfo(key, 2, "99914b932bd37a50b983c5e7c90ae93b", when) for key in live]
    rows += [ObjectInfo(_key(rng), 2, "99914b932bd37a50b983c5e7c90ae93b", when) for _ in range(keys - len(live))]
    key = s3_inventory(store, bucket, rows, files=4, prefix=f"inv-{keys}")
    return f"s3://{bucket}-inventory/{key}"


def _worker(way: str, bucket: str, target: str) -> None:
    """One timed process: list the window, or read it from the inventory and confirm what it lacks."""
    import os
    import resource

    from firehose.archive.listing import lead_objects, list_window, ordered_map
    from firehose.event import Destination
    from firehose.reconciliation.inventories import Inventories

    credential = S3Credential(
        endpoint_url=os.environ["FIREHOSE_TEST_S3_ENDPOINT"], region="us-east-1",
        access_key_id=os.environ["AWS_ACCESS_KEY_ID"], secret_access_key=Secret(os.environ["AWS_SECRET_ACCESS_KEY"]),
    )  # fmt: skip
    store = open_store(StoreUrl("s3", bucket, ""), s3=credential)
    end = START + DAYS * 86_400
    if way == "listing":
        rows = sum(1 for _ in list_window(store, PREFIX, start_seconds=START, end_seconds=end))
    else:
        inventories = Inventories((target,), lambda url: open_store(url, s3=credential))
        destination = Destination.from_url(f"s3://{bucket}/{PREFIX}", name="bench")
        rows = sum(1 for _ in inventories.stream(store, destination, START, end, workers=32, ahead=64))
        missing = json.loads((ROOT / ".cache" / "bench-inventory-missing.json").read_text())
        leads = sorted({key.split("/")[-2] for key in missing})
        found = list(ordered_map(lambda lead: lead_objects(store, PREFIX, lead), leads, workers=32, ahead=128))
        assert not any(found), "the missing events are nowhere"
        inventories.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rows": rows, "peak_rss_mib": peak}))


if __name__ == "__main__":
    main()
