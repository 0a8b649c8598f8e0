"""How fast `firehose archive ls` lists a firehose archive, against the tools people would use instead.

Seeds 50,000 events over 30 days (the sandbox's generator, its layout <prefix>/<lead id>/<event id>.json) into
SeaweedFS (S3) and Azurite (Azure Blob) from the local stack, then times whole processes, start-up included,
interleaved, and prints medians and ratios:

- S3, one day: `firehose archive ls --start D --end D` against `aws s3 ls --recursive` of the whole prefix
  (filtered to that day afterwards, not timed: the walk is the cost);
- S3, everything: `firehose archive ls` against `aws s3 ls --recursive` and `rclone lsf -R` (with and without
  --fast-list; the faster one counts);
- Azure, one day and everything: `firehose archive ls` against a sequential `list_blobs` walk with the SDK and
  `rclone lsf -R`.

Every run's output is counted, so a faster tool that lists fewer keys would show. Needs awscli and rclone
(Debian packages; installed if missing, as root).

usage: scripts/bench archive [--events N] [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench_support import ensure_tools, rclone_env, stack_env, stack_stores

from firehose.archive import Store
from firehose.archive.layout import parse_key
from firehose.codec import encode
from firehose.event import object_key
from firehose.ids import seconds_of
from firehose.sandbox.generator import generate

ROOT = Path(__file__).resolve().parent.parent
FIREHOSE = str(ROOT / ".venv" / "bin" / "firehose")
PYTHON = str(ROOT / ".venv" / "bin" / "python")
BUCKET = "bench-archive"
PREFIX = "events"
UNTIL = datetime(2026, 11, 20, tzinfo=UTC)
DAY = UNTIL - timedelta(days=10)


def seed(stores: list[Store], events: int) -> int:
    """Write ``events`` events to every store (once: a marker object remembers the count)."""
    marker = f"bench-seeded-{events}.txt"
    if all(store.head(marker) is not None for store in stores):
        return events
    for store in stores:
        store.create()
    started = time.monotonic()
    written = 0

    def put(key: str, body: bytes) -> None:
        for store in stores:
            store.write(key, body, if_absent=False)

    with ThreadPoolExecutor(max_workers=32) as pool:
        futures = []
        # About 4.7 events a lead: enough leads to spread the events over all 30 days.
        for event in generate(99, leads=events * 10 // 45, days=30, until=UNTIL):
            key = object_key(PREFIX, event["vars"]["lead"]["id"], event["id"])
            futures.append(pool.submit(put, key, encode(event)))
            written += 1
            if written >= events:
                break
        for future in futures:
            future.result()
    for store in stores:
        store.write(marker, str(events).encode(), if_absent=False)
    print(f"seeded {written:,} events into {len(stores)} stores in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return written


def run(command: list[str], env: dict[str, str]) -> tuple[float, list[str]]:
    started = time.perf_counter()
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    return time.perf_counter() - started, out.splitlines()


def last_field(line: str) -> str:
    """The key of an output line: aws prints date, time, size, key; CSV ends with the key; rclone prints it."""
    return line.rsplit(",", 1)[-1].split()[-1] if line.strip() else ""


def in_day(key: str) -> bool:
    ids = parse_key(key)
    return ids is not None and DAY <= datetime.fromtimestamp(seconds_of(ids[0]), UTC) < DAY + timedelta(days=1)


def compare(
    title: str, commands: dict[str, list[str]], env: dict[str, str], rounds: int, keep: dict[str, bool] | None = None
) -> dict[str, float]:
    """Median seconds of each command over interleaved rounds; prints keys/s and the key count each listed."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    counts: dict[str, int] = {}
    for command in commands.values():  # one unmeasured warm-up each
        run(command, env)
    for _ in range(rounds):
        for name, command in commands.items():
            seconds, lines = run(command, env)
            times[name].append(seconds)
            counts[name] = (
                sum(1 for line in lines if in_day(line))
                if keep and keep.get(name)
                else len([line for line in lines if parse_key(line.split()[-1] if line.strip() else "")])
            )
    medians = {name: statistics.median(values) for name, values in times.items()}
    print(f"\n{title} (median of {rounds} interleaved runs, whole process):")
    for name, seconds in medians.items():
        print(f"  {name:<44} {seconds:6.2f} s  {counts[name] / seconds:9,.0f} keys/s  ({counts[name]:,} keys)")
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", choices=["s3", "azure"], help="Run only one service's comparisons.")
    args = parser.parse_args()
    ensure_tools()
    env = stack_env()
    s3_endpoint = env["FIREHOSE_TEST_S3_ENDPOINT"]
    azure_cs = env["AZURE_STORAGE_CONNECTION_STRING"]
    s3, azure = stack_stores(env, BUCKET)
    total = seed([s3, azure], args.events)
    env.update(
        {
            "FIREHOSE_S3_ENDPOINT_URL": s3_endpoint,
            "FIREHOSE_AZURE_CONNECTION_STRING": azure_cs,
            **rclone_env(env),
        }
    )
    day = DAY.strftime("%Y-%m-%d")
    sdk_walk = [
        PYTHON,
        "-c",
        (
            "import os, sys; from azure.storage.blob import ContainerClient; "
            "c = ContainerClient.from_connection_string(os.environ['AZURE_STORAGE_CONNECTION_STRING'], sys.argv[1]); "
            "sys.stdout.writelines(b.name + '\\n' for b in c.list_blobs(name_starts_with=sys.argv[2]))"
        ),
        BUCKET,
        PREFIX + "/",
    ]
    aws_walk = ["aws", "s3", "ls", "--recursive", f"s3://{BUCKET}/{PREFIX}/", "--endpoint-url", s3_endpoint]
    print(
        f"{total:,} events over 30 days in s3://{BUCKET}/{PREFIX} (SeaweedFS) and az://{BUCKET}/{PREFIX} "
        f"(Azurite); one day = {day}; {os.cpu_count()} cores; "
        f"{subprocess.run(['aws', '--version'], capture_output=True, text=True).stdout.split()[0]}, "
        f"{subprocess.run(['rclone', 'version'], capture_output=True, text=True).stdout.split()[1]}"
    )

    def ours(scheme: str, *window: str) -> list[str]:
        return [FIREHOSE, "archive", "ls", f"{scheme}://{BUCKET}/{PREFIX}", *window, "--format", "csv"]

    def rclone(remote: str, *flags: str) -> list[str]:
        return ["rclone", "lsf", "-R", "--files-only", *flags, f"{remote}:{BUCKET}/{PREFIX}"]

    window = ("--start", day, "--end", day)
    mine, mine_day = "firehose archive ls", "firehose archive ls --start D --end D"
    ratios: list[tuple[str, float]] = []
    if args.only in (None, "s3"):
        walk = "aws s3 ls --recursive (whole prefix)"
        one_day = compare(
            "S3, one day", {mine_day: ours("s3", *window), walk: aws_walk}, env, args.rounds, keep={walk: True}
        )
        full = compare(
            "S3, everything",
            {
                mine: ours("s3"),
                "aws s3 ls --recursive": aws_walk,
                "rclone lsf -R": rclone("sw"),
                "rclone lsf -R --fast-list": rclone("sw", "--fast-list"),
            },
            env,
            args.rounds,
        )
        best_rclone = min(full["rclone lsf -R"], full["rclone lsf -R --fast-list"])
        ratios += [
            ("S3 one day vs aws s3 ls --recursive", one_day[walk] / one_day[mine_day]),
            ("S3 everything vs aws s3 ls --recursive", full["aws s3 ls --recursive"] / full[mine]),
            ("S3 everything vs rclone lsf -R (its best)", best_rclone / full[mine]),
        ]
    if args.only in (None, "azure"):
        walk = "SDK list_blobs walk (whole prefix)"
        az_day = compare(
            "Azure, one day", {mine_day: ours("az", *window), walk: sdk_walk}, env, args.rounds, keep={walk: True}
        )
        az_full = compare(
            "Azure, everything",
            {
                mine: ours("az"),
                "SDK list_blobs walk": sdk_walk,
                "rclone lsf -R": rclone("az"),
                "rclone lsf -R --fast-list": rclone("az", "--fast-list"),
            },
            env,
            args.rounds,
        )
        best_rclone = min(az_full["rclone lsf -R"], az_full["rclone lsf -R --fast-list"])
        ratios += [
            ("Azure one day vs SDK list_blobs walk", az_day[walk] / az_day[mine_day]),
            ("Azure everything vs SDK list_blobs walk", az_full["SDK list_blobs walk"] / az_full[mine]),
            ("Azure everything vs rclone lsf -R (its best)", best_rclone / az_full[mine]),
        ]
    print("\nratios (how many times faster firehose archive ls is; above 1 is faster):")
    for name, ratio in ratios:
        print(f"  {name:<46} {ratio:5.2f}x")


if __name__ == "__main__":
    main()
