"""How a sliced reconcile and a sliced audit pack scale: one process against every slice on local worker processes
and on a Dask LocalCluster of 2 worker processes, and what each slice costs on top of the work it does.

Starts a sandbox seeded with about --events events over 30 days whose firehose writes to SeaweedFS and Azurite
(1% of writes dropped), waits until every write has landed, then times whole processes, interleaved, medians
of --rounds, for `reconcile --verify presence`, `reconcile --verify content` and `audit pack` (presence coverage,
every archived object read and hashed):

- the job as one process (the baseline);
- the job with `--shards S --executor local:2`, and `--executor dask://...` on a 2-worker LocalCluster;
- the job with `--shards S --executor local:1`: the same work in slices, one at a time; its time over the
  baseline's, divided by S, is the overhead of a slice (spawning a worker, its own state database, the checkpoint
  write and read), shown as a share of a slice's time.

Every run starts from an empty run state and state databases (`--full`; an audit is always full), so each does the
whole window. The merged reports are checked to hold the same counts as the baseline's, and the merged packs the
same coverage and manifest files, byte for byte.

usage: scripts/bench scale [--events N] [--rounds R] [--shards S]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench_support import SANDBOX_KEY as KEY
from bench_support import stack_config, stack_env, start_sandbox

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
UNTIL = datetime(2026, 11, 20, tzinfo=UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shards", type=int, default=64)
    args = parser.parse_args()
    from distributed import LocalCluster

    env = stack_env()
    bucket = f"bench-scale-{int(time.time())}"
    # ":0": the scheduler's HTTP server (there even without a dashboard) on a free port, not 8787, which another
    # cluster on the machine may hold.
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")  # type: ignore[no-untyped-call]
    with tempfile.TemporaryDirectory() as tmp, cluster:
        work = Path(tmp)
        sandbox, url = start_sandbox(
            env, work, "--leads", str(args.events * 10 // 47), "--days", "30", "--until", UNTIL.strftime("%Y-%m-%d"),
            "--bucket", bucket, "--drop-rate", "0.01", "--s3-endpoint", env["FIREHOSE_TEST_S3_ENDPOINT"],
            "--create-buckets", wait_for_firehose=True,
        )  # fmt: skip
        try:
            config = stack_config(env, work / "firehose.toml")
            run_env = {**env, "LEADCONDUIT_API_KEY": KEY, "LEADCONDUIT_URL": url, "FIREHOSE_CONFIG": str(config)}
            window = ["--start", (UNTIL - timedelta(days=31)).isoformat(), "--end", UNTIL.isoformat()]
            dask = cluster.scheduler_address.replace("tcp://", "dask://")
            ways = {
                "one process": [],
                "local:2": ["--shards", str(args.shards), "--executor", "local:2"],
                "dask, 2 workers": ["--shards", str(args.shards), "--executor", dask],
                "local:1 (slices, one at a time)": ["--shards", str(args.shards), "--executor", "local:1"],
            }
            for job in ("presence", "content", "audit"):
                times: dict[str, list[float]] = {name: [] for name in ways}
                loads: dict[str, list[float]] = {name: [] for name in ways}
                counts: dict[str, object] = {}
                for round_number in range(args.rounds):
                    for name, extra in ways.items():
                        folder = work / f"{job}-{round_number}-{len(times[name])}-{name.split()[0]}"
                        folder.mkdir()
                        sliced = ["--run-state", (folder / "run").as_uri()] if extra else []
                        command = [str(BIN / "firehose"), *_job(job, folder), *window, "--state",
                                   str(folder / "state.sqlite"), *extra, *sliced]  # fmt: skip
                        started = time.perf_counter()
                        result = subprocess.run(command, env=run_env, stdout=subprocess.DEVNULL,
                                                stderr=subprocess.PIPE, text=True)  # fmt: skip
                        times[name].append(time.perf_counter() - started)
                        loads[name].append(os.getloadavg()[0])  # the machine is shared: say how busy it was
                        if result.returncode not in (0, 1):
                            raise SystemExit(
                                f"bench: {job}, {name} failed ({result.returncode}): {result.stderr[-800:]}"
                            )
                        counts[name] = _outcome(job, folder)
                _print(job, times, loads, counts, args)
        finally:
            sandbox.terminate()


def _job(job: str, folder: Path) -> list[str]:
    """The command's words before the window: a reconcile at its depth with its report, or an audit pack."""
    if job == "audit":
        return ["audit", "pack", "--out", str(folder / "pack")]
    return ["reconcile", "--verify", job, "--format", "csv", "--full", "--report", str(folder / "report.json")]


def _outcome(job: str, folder: Path) -> object:
    """What must be the same however the job ran: a report's counts, or a pack's coverage and manifest bytes."""
    if job == "audit":
        return [(folder / "pack" / name).read_bytes() for name in ("coverage.json", "manifest.ndjson")]
    return json.loads((folder / "report.json").read_text())["counts"]


def _print(
    job: str,
    times: dict[str, list[float]],
    loads: dict[str, list[float]],
    counts: dict[str, object],
    args: argparse.Namespace,
) -> None:
    base = statistics.median(times["one process"])
    same = all(c == counts["one process"] for c in counts.values())
    what = "audit pack" if job == "audit" else f"reconcile --verify {job}"
    compared = "coverage and manifest" if job == "audit" else "counts"
    print(f"\n{what}, about {args.events:,} events, {args.shards} slices, medians of {args.rounds} "
          f"(merged {compared} equal to one process's: {same})")  # fmt: skip
    for name, values in times.items():
        median = statistics.median(values)
        load = ", ".join(f"{value:.1f}" for value in loads[name])
        print(f"  {name:34} {median:8.1f} s   {base / median:5.2f}x one process   (load average after: {load})")
    sliced = statistics.median(times["local:1 (slices, one at a time)"])
    per_slice = (sliced - base) / args.shards
    print(f"  overhead of a slice: {per_slice * 1000:.0f} ms, {per_slice / (base / args.shards):.1%} of a slice's time")


if __name__ == "__main__":
    main()
