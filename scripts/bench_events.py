"""How fast `firehose events` streams from the sandbox, and whether its memory stays flat.

Starts a sandbox (no firehose writes) seeded with --leads leads, then runs, interleaved, --rounds times each:
`firehose events > /dev/null` and the baseline `scripts/naive_pager.py > /dev/null`, as whole processes
(start-up included). Prints median events/s of each and their ratio; then the peak RSS of `firehose events`
for a quarter of the events and for all of them (flat memory: a ratio near 1).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
from bench_support import SANDBOX_KEY as KEY
from bench_support import peak_rss_mib, start_sandbox

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv" / "bin"


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sandbox, url = start_sandbox(
            dict(os.environ), Path(tmp), "--leads", str(args.leads), "--days", "30", "--until", "2026-11-20"
        )
        try:
            env = {**os.environ, "LEADCONDUIT_API_KEY": KEY, "LEADCONDUIT_URL": url}
            total = int(httpx.get(f"{url}/_sandbox/status", auth=("API", KEY)).json()["events"])
            ours = [str(VENV / "firehose"), "events"]
            naive = [str(VENV / "python"), str(ROOT / "scripts" / "naive_pager.py")]
            timed(ours, env)  # warm the sandbox and the file cache once, unmeasured
            times: dict[str, list[float]] = {"firehose events": [], "naive pager": []}
            for _ in range(args.rounds):
                times["firehose events"].append(timed(ours, env))
                times["naive pager"].append(timed(naive, env))
            print(
                f"{total} events from the sandbox ({args.leads} leads), median of {args.rounds} interleaved runs,"
                " whole process:"
            )
            medians = {name: statistics.median(values) for name, values in times.items()}
            for name, seconds in medians.items():
                print(f"  {name:<16} {seconds:6.2f} s   {total / seconds:10,.0f} events/s")
            print(
                f"  ratio: firehose events is {medians['naive pager'] / medians['firehose events']:.2f}x "
                "the naive pager's speed"
            )
            quarter = peak_rss_mib([*ours, "--max", str(total // 4)], env)
            whole = peak_rss_mib(ours, env)
            print(
                f"peak RSS of firehose events: {quarter:.0f} MiB for {total // 4} events, {whole:.0f} MiB for "
                f"{total} events (ratio {whole / quarter:.2f}; flat memory is about 1)"
            )
        finally:
            sandbox.terminate()
            sandbox.wait(30)


if __name__ == "__main__":
    main()
