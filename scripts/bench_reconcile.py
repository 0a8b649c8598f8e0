"""How `firehose reconcile` compares with the least work that could do its job, and with a naive one.

Starts a sandbox (a separate process) seeded with about --events events over 30 days whose firehose writes to
SeaweedFS and Azurite with 1% of writes dropped, waits until every write has landed, then times whole
processes, interleaved, medians of --rounds:

- `firehose reconcile --verify presence` against the bare minimum for the same window: paging /events for the
  same fields (`firehose events --include ...`) plus listing the same keys with `rclone lsf -R` per destination;
- the same against a naive reconcile that HEADs every event's key (scripts/naive_reconcile.py);
- `--verify content` in events per second, against `aws s3 cp --recursive` of the same S3 objects;
- peak RSS of reconcile at about a tenth of the events and at all of them, for each depth, with each of
  --workers requests in flight (default 32, firehose's own);
- how long `firehose audit` takes for the 30 days, and how large its pack is.

usage: scripts/bench reconcile [--events N] [--rounds R] [--presence-only | --reads] [--workers 8,32,128]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench_support import SANDBOX_KEY as KEY
from bench_support import (
    ensure_tools,
    peak_rss_mib,
    rclone_env,
    servers_cpu,
    stack_config,
    stack_env,
    start_sandbox,
)

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
UNTIL = datetime(2026, 11, 20, tzinfo=UTC)
FIELDS = ("id", "type", "vars.lead.id", "firehose", "expires_at")
TARGETS = {"content": 3 * 433, "audit pack": 60.0, "audit verify": 60.0}
"""Issue 13's targets: content at 3x the 433 events/s first measured; the pack and its verify within 60 s."""
CPU: dict[str, list[dict[str, float]]] = {}
"""Per label: the CPU seconds of each timed run, by process (the command, each stack server, the sandbox)."""
SANDBOX: dict[str, int] = {}


def timed(command: list[str], env: dict[str, str], label: str = "") -> float:
    """Wall seconds of one command; with a ``label``, its CPU and that of the servers it used go to ``CPU``."""
    before, children = servers_cpu(**SANDBOX), resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - started
    if result.returncode not in (0, 1):
        raise SystemExit(f"bench: {' '.join(command[:3])} failed ({result.returncode}): {result.stderr[-500:]}")
    after, done = servers_cpu(**SANDBOX), resource.getrusage(resource.RUSAGE_CHILDREN)
    if label:
        own = (done.ru_utime - children.ru_utime) + (done.ru_stime - children.ru_stime)
        CPU.setdefault(label, []).append({"command": own, **{k: after[k] - before.get(k, 0.0) for k in after}})
    return seconds


def cpu_floor(label: str, wall: float, events: int) -> str:
    """Where one job's CPU went, per event, and the shortest wall time this machine's cores allow for it: every
    process's CPU spread over the cores, but never less than the busiest single-threaded server (Azurite is one
    Node.js thread) or the command itself would need."""
    runs = CPU.get(label, [])
    if not runs:
        return ""
    names = runs[0].keys()
    use = {name: statistics.median(run[name] for run in runs) for name in names}
    cores = os.cpu_count() or 1
    floor = max(sum(use.values()) / cores, use.get("azurite", 0.0))
    others = max(sum(v for k, v in use.items() if k != "command") / cores, use.get("azurite", 0.0))
    parts = ", ".join(f"{name} {seconds / events * 1000:.3f}" for name, seconds in use.items())
    return (
        f"    CPU ms/event: {parts}; on {cores} cores the floor is {floor:.0f} s with firehose's own CPU "
        f"and {others:.0f} s with none (wall {wall:.0f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--presence-only",
        action="store_true",
        help="Time only presence against the bare minimum (more rounds in less time); no naive, content, memory.",
    )
    parser.add_argument(
        "--reads",
        action="store_true",
        help="Time only what reads objects: --verify content against aws s3 cp, the audit pack and audit verify.",
    )
    parser.add_argument(
        "--workers",
        default="32",
        help="Requests in flight (reconcile --workers) to measure peak RSS with, comma-separated (default 32).",
    )
    args = parser.parse_args()
    in_flight = [int(number) for number in args.workers.split(",")]
    ensure_tools()
    env = stack_env()
    bucket = f"bench-rec-{int(time.time())}"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sandbox, url = start_sandbox(
            env,
            work,
            "--leads",
            str(args.events * 10 // 47),
            "--days",
            "30",
            "--until",
            UNTIL.strftime("%Y-%m-%d"),
            "--bucket",
            bucket,
            "--drop-rate",
            "0.01",
            "--s3-endpoint",
            env["FIREHOSE_TEST_S3_ENDPOINT"],
            "--create-buckets",
            wait_for_firehose=True,
        )
        SANDBOX["sandbox"] = sandbox.pid
        try:
            config = stack_config(env, work / "firehose.toml")
            run_env = {
                **env,
                "LEADCONDUIT_API_KEY": KEY,
                "LEADCONDUIT_URL": url,
                "FIREHOSE_CONFIG": str(config),
                **rclone_env(env),
            }
            start, end = (UNTIL - timedelta(days=31)).isoformat(), UNTIL.isoformat()
            window = ["--start", start, "--end", end]

            def reconcile(*extra: str, state: str = "x", span: list[str] = window) -> list[str]:
                return [
                    str(BIN / "firehose"),
                    "reconcile",
                    *span,
                    "--format",
                    "csv",
                    "--full",
                    "--state",
                    str(work / f"{state}.sqlite"),
                    *extra,
                ]

            events = [str(BIN / "firehose"), "events", *window, *(f"--include={f}" for f in FIELDS)]
            listings = [
                ["rclone", "lsf", "-R", "--files-only", "--fast-list", f"sw:{bucket}"],
                ["rclone", "lsf", "-R", "--files-only", f"az:{bucket}"],
            ]
            naive = [str(BIN / "python"), str(ROOT / "scripts" / "naive_reconcile.py"), *window]
            s3_copy = [
                "aws",
                "s3",
                "cp",
                "--recursive",
                "--quiet",
                f"s3://{bucket}",
                str(work / "copy"),
                "--endpoint-url",
                env["FIREHOSE_TEST_S3_ENDPOINT"],
            ]

            total = sum(
                1
                for _ in subprocess.run(
                    events, env=run_env, capture_output=True, text=True, check=True
                ).stdout.splitlines()
            )
            times: dict[str, list[float]] = {k: [] for k in ("presence", "minimum", "naive", "content", "aws cp")}
            timed(reconcile(), run_env)  # warm-up
            if args.presence_only:
                for _ in range(args.rounds):
                    times["presence"].append(timed(reconcile(), run_env))
                    times["minimum"].append(timed(events, run_env) + sum(timed(c, run_env) for c in listings))
                presence, minimum = (statistics.median(times[k]) for k in ("presence", "minimum"))
                print(
                    f"{total:,} events; median of {args.rounds} interleaved rounds: presence {presence:.2f} s "
                    f"({', '.join(f'{t:.1f}' for t in times['presence'])}), bare minimum {minimum:.2f} s "
                    f"({', '.join(f'{t:.1f}' for t in times['minimum'])}): {presence / minimum:.2f}x "
                    "(target at most 1.5x)"
                )
                return
            for _ in range(args.rounds):
                if not args.reads:
                    times["presence"].append(timed(reconcile(), run_env))
                    times["minimum"].append(timed(events, run_env) + sum(timed(c, run_env) for c in listings))
                    times["naive"].append(timed(naive, run_env))
                times["content"].append(timed(reconcile("--verify", "content"), run_env, "content"))
                shutil.rmtree(work / "copy", ignore_errors=True)
                times["aws cp"].append(timed(s3_copy, run_env, "aws cp"))
            med = {name: statistics.median(values) for name, values in times.items() if values}
            print(
                f"{total:,} events over 30 days, S3 (SeaweedFS) and Azure (Azurite) destinations, 1% dropped; "
                f"median of {args.rounds} interleaved runs, whole processes:"
            )
            for name, seconds in med.items():
                print(f"  {name:<10} {seconds:7.2f} s  {total / seconds:9,.0f} events/s")
            if not args.reads:
                print(
                    f"  presence vs the bare minimum (events --include + rclone lsf -R): "
                    f"{med['presence'] / med['minimum']:.2f}x the time (target at most 1.5x)"
                )
                print(
                    f"  presence vs a naive HEAD per event: {med['naive'] / med['presence']:.1f}x faster (target 10x)"
                )
            print(
                f"  content: {total / med['content']:,.0f} events/s (target {TARGETS['content']:,}); aws s3 cp "
                f"--recursive of the S3 objects {med['aws cp']:.2f} s: {med['aws cp'] / med['content']:.2f}x "
                "(target at least 2x)"
            )
            print(cpu_floor("content", med["content"], total))
            tenth = ["--start", (UNTIL - timedelta(days=3)).isoformat(), "--end", end]
            for depth in ("content",) if args.reads else ("presence", "content"):
                for workers in in_flight:
                    flight = ("--workers", str(workers))
                    small = reconcile("--verify", depth, *flight, state=f"m1{depth}{workers}", span=tenth)
                    big = reconcile("--verify", depth, *flight, state=f"m2{depth}{workers}")
                    low, high = peak_rss_mib(small, run_env), peak_rss_mib(big, run_env)
                    print(
                        f"  peak RSS, {depth}, {workers} in flight: {low:.0f} MiB for ~{total // 10:,} events "
                        f"(3 days), {high:.0f} MiB for {total:,} ({(high / low - 1) * 100:+.0f}%)"
                    )
            # The same archive, audited: an evidence pack for the 30 days (coverage, every object hashed).
            pack = work / "evidence"
            started = time.perf_counter()
            timed(
                [str(BIN / "firehose"), "audit", "pack", *window, "--out", str(pack), "--require-retention", "7y",
                 "--state", str(work / "audit.sqlite")],
                run_env,
                "audit pack",
            )  # fmt: skip
            seconds = time.perf_counter() - started
            size = sum(path.stat().st_size for path in pack.iterdir())
            objects = sum(1 for _ in (pack / "manifest.ndjson").open())
            print(
                f"  audit pack for the 30 days: {seconds:.0f} s (target at most {TARGETS['audit pack']:.0f} s), "
                f"{size / 2**20:.1f} MiB on disk, {objects:,} objects hashed"
            )
            print(cpu_floor("audit pack", seconds, total))
            verify = timed([str(BIN / "firehose"), "audit", "verify", str(pack)], run_env, "audit verify")
            print(
                f"  audit verify of that pack (every object read and hashed again): {verify:.0f} s (target at most "
                f"{TARGETS['audit verify']:.0f} s)"
            )
            print(cpu_floor("audit verify", verify, total))
        finally:
            sandbox.terminate()
            sandbox.wait(60)


if __name__ == "__main__":
    main()
