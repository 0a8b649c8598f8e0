"""What the local stack's servers spend of this machine's CPU per request firehose makes of them.

Seeds --events events (1-3 KB each, the layout of `scripts/bench reads`) into SeaweedFS (S3) and Azurite (Azure
Blob), then reads every object --rounds times through firehose's lean read path (--workers threads), lists the
whole prefix and lists each day's window as reconcile does (the leads of the day and the hour before it), and
prints the servers' CPU (user + system, from /proc) per GET, per listed key and per day's window.
The servers share the 2 cores with firehose, so their CPU per object is part of every read bench's floor; this is
the figure to compare when a server setting changes (run it before and after, on the same machine).

usage: scripts/bench servers [--events N] [--rounds R] [--workers W]
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from bench_archive import PREFIX, UNTIL, seed
from bench_support import servers_cpu, stack_env, stack_stores

from firehose.archive import Store
from firehose.archive.listing import list_window

BUCKET = "bench-servers"
DAYS = 30
"""The days the seeded events span (bench_archive's generator), each listed as one reconcile window."""


def cpu_of(name: str) -> float:
    """CPU seconds so far of the stack server ``name`` (``seaweedfs`` or ``azurite``)."""
    return servers_cpu().get(name, 0.0)


def measure(label: str, server: str, store: Store, rounds: int, workers: int) -> None:
    """Prints the server's CPU per GET, per listed key and per day's window, each the median of ``rounds`` passes."""
    keys = [info.key for info in store.list(f"{PREFIX}/")]
    get_costs, list_costs, walls, window_costs = [], [], [], []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in range(rounds):
            before, started = cpu_of(server), time.perf_counter()
            read = sum(len(body) for body in pool.map(store.read, keys))
            walls.append(time.perf_counter() - started)
            get_costs.append((cpu_of(server) - before) / len(keys))
            before = cpu_of(server)
            listed = sum(1 for _ in store.list(f"{PREFIX}/"))
            list_costs.append((cpu_of(server) - before) / listed)
            before = cpu_of(server)
            for day in range(DAYS):
                end = int((UNTIL - timedelta(days=day)).timestamp()) - 1
                start = end + 1 - 86_400 - 3_600
                sum(1 for _ in list_window(store, PREFIX, start_seconds=start, end_seconds=end, workers=workers))
            window_costs.append((cpu_of(server) - before) / DAYS)
    for costs in (get_costs, list_costs, walls, window_costs):
        costs.sort()
    print(
        f"{label:<22} {server} CPU per GET {get_costs[rounds // 2] * 1000:.3f} ms (all rounds: "
        f"{', '.join(f'{c * 1000:.3f}' for c in get_costs)}), per listed key {list_costs[rounds // 2] * 1e6:.1f} us, "
        f"per day's window {window_costs[rounds // 2] * 1000:.1f} ms; "
        f"{len(keys) / walls[rounds // 2]:,.0f} GETs/s ({len(keys):,} objects, {read:,} bytes a round)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=3_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args()
    s3, azure = stack_stores(stack_env(), BUCKET)
    try:
        seed([s3, azure], args.events)
        measure("S3 (SeaweedFS)", "seaweedfs", s3, args.rounds, args.workers)
        measure("Azure (Azurite)", "azurite", azure, args.rounds, args.workers)
    finally:
        s3.close()
        azure.close()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
