"""How a sliced reconcile and a sliced audit pack scale: one process against every slice on local worker processes
and on a Dask LocalCluster of 2 worker processes, and what each slice costs on top of the work it does.

Starts a sandbox seeded with about --events events over 30 days whose firehose writes to SeaweedFS and Azurite
(1% of writes dropped), waits until every write has landed, then times whole processes, interleaved, medians
of --rounds, for `reconcile --verify presence`, `reconcile --verify content` and `audit pack` (presence coverage,
every archived object read and hashed):

- the job as one process (the baseline);
- the job with `--shards S --executor local:2`, and `--executor dask://...` on a 2-worker LocalCluster;
- the job with `--shards S --executor local:1`: the same work in slices, one at a time in one worker process;
- the S slices one after the other in one process, through the command line's own code (`--shard I` each, then
  the merge), the worker's connections kept as an executor's are: no process to start, no executor.

The overhead of a slice, for the two "one at a time" ways: (T_sliced - T_one) / S, where T is the way's whole
time (wall clock; also CPU: firehose's own, and firehose's plus the servers' (SeaweedFS, Azurite, the sandbox's
API)), shown as a share of a slice's time, T_one / S (so the share is (T_sliced - T_one) / T_one). For reconcile
the extra LIST requests a slice makes are also shown, from the reports' request counts. Firehose's CPU is that
of the processes it waits for (its local workers included; a Dask cluster's workers are not its children, so
the Dask row's CPU is the driver's alone).

Every run starts from an empty run state and state databases (`--full`; an audit is always full), so each does the
whole window. The merged reports are checked to hold the same counts as the baseline's, and the merged packs the
same coverage and manifest files, byte for byte.

usage: scripts/bench scale [--events N] [--rounds R] [--shards S] [--jobs presence,content,audit]
                           [--ways one,local2,dask,local1,inline]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench_support import SANDBOX_KEY as KEY
from bench_support import servers_cpu, stack_config, stack_env, start_sandbox

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
UNTIL = datetime(2026, 11, 20, tzinfo=UTC)


WAYS = {
    "one": "one process",
    "local2": "local:2",
    "dask": "dask, 2 workers",
    "local1": "local:1 (slices, one at a time)",
    "inline": "in one process (slices, one at a time)",
}
ONE_AT_A_TIME = ("local1", "inline")
INLINE = """
import json, sys
from firehose.cli import cli
from firehose.connections import keep_connections

keep_connections()  # as an executor's worker does: one API client and store per process, kept from slice to slice
for args in json.loads(sys.argv[1]):
    code = cli.main(args=args, prog_name="firehose", standalone_mode=False)
    if code not in (0, 1, None):
        sys.exit(f"firehose {' '.join(args)}: exit {code}")
"""
"""The slices one after the other in one process: each is the command line's own code, as a spawned process
would run it, without the process."""


@dataclass
class Runs:
    """One way's runs of one job: wall and CPU seconds, load averages, LIST requests (reconcile)."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    servers: list[float] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)
    lists: list[int] = field(default_factory=list)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shards", type=int, default=64)
    parser.add_argument("--jobs", default="presence,content,audit")
    parser.add_argument("--ways", default=",".join(WAYS), help=f"some of {', '.join(WAYS)} (one is always run)")
    args = parser.parse_args()
    ways = ["one", *(way for way in args.ways.split(",") if way != "one")]
    if unknown := set(ways) - set(WAYS):
        parser.error(f"--ways: unknown {sorted(unknown)}")
    env = stack_env()
    bucket = f"bench-scale-{int(time.time())}"
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        work = Path(tmp)
        dask = ""
        if "dask" in ways:
            from distributed import LocalCluster

            # ":0": the scheduler's HTTP server (there even without a dashboard) on a free port, not 8787, which
            # another cluster on the machine may hold.
            cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")  # type: ignore[no-untyped-call]
            stack.enter_context(cluster)
            dask = cluster.scheduler_address.replace("tcp://", "dask://")
        sandbox, url = start_sandbox(
            env, work, "--leads", str(args.events * 10 // 47), "--days", "30", "--until", UNTIL.strftime("%Y-%m-%d"),
            "--bucket", bucket, "--drop-rate", "0.01", "--s3-endpoint", env["FIREHOSE_TEST_S3_ENDPOINT"],
            "--create-buckets", wait_for_firehose=True,
        )  # fmt: skip
        try:
            config = stack_config(env, work / "firehose.toml")
            run_env = {**env, "LEADCONDUIT_API_KEY": KEY, "LEADCONDUIT_URL": url, "FIREHOSE_CONFIG": str(config)}
            window = ["--start", (UNTIL - timedelta(days=31)).isoformat(), "--end", UNTIL.isoformat()]
            sliced = {
                "local2": ["--shards", str(args.shards), "--executor", "local:2"],
                "dask": ["--shards", str(args.shards), "--executor", dask],
                "local1": ["--shards", str(args.shards), "--executor", "local:1"],
            }
            for job in args.jobs.split(","):
                runs = {way: Runs() for way in ways}
                outcomes: dict[str, object] = {}
                for round_number in range(args.rounds):
                    for way in ways:
                        folder = work / f"{job}-{round_number}-{way}"
                        folder.mkdir()
                        base = [*_job(job, folder), *window, "--state", str(folder / "state.sqlite")]
                        run_state = ["--run-state", (folder / "run").as_uri()]
                        if way == "one":
                            command = [str(BIN / "firehose"), *base]
                        elif way == "inline":
                            command = _inline(job, folder, base, run_state, args.shards)
                        else:
                            command = [str(BIN / "firehose"), *base, *sliced[way], *run_state]
                        _timed(command, run_env, sandbox.pid, runs[way], f"{job}, {WAYS[way]}")
                        outcomes[way] = _outcome(job, folder)
                        if job != "audit":
                            runs[way].lists.append(_lists(folder))
                _print(job, runs, outcomes, args)
        finally:
            sandbox.terminate()


def _timed(command: list[str], env: dict[str, str], sandbox: int, runs: Runs, what: str) -> None:
    """Run ``command``, adding its wall time, its CPU (and its children's) and the servers' CPU to ``runs``."""
    servers, children = sum(servers_cpu(sandbox=sandbox).values()), resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    runs.wall.append(time.perf_counter() - started)
    done = resource.getrusage(resource.RUSAGE_CHILDREN)
    runs.cpu.append(done.ru_utime + done.ru_stime - children.ru_utime - children.ru_stime)
    runs.servers.append(sum(servers_cpu(sandbox=sandbox).values()) - servers)
    runs.loads.append(os.getloadavg()[0])  # the machine is shared: say how busy it was
    if result.returncode not in (0, 1):
        raise SystemExit(f"bench: {what} failed ({result.returncode}): {result.stderr[-800:]}")


def _inline(job: str, folder: Path, base: list[str], run_state: list[str], shards: int) -> list[str]:
    """The command that runs every slice of ``job`` one after the other in one process, then merges them."""
    # Each slice with a state database of its own, as an executor's worker gives it.
    slices = [[*base, "--shards", str(shards), "--shard", str(index), *run_state, "--state",
               str(folder / f"state.slice-{index}.sqlite")] for index in range(shards)]  # fmt: skip
    if job == "audit":  # a slice has no pack of its own: the merge makes it
        slices = [[word for word in words if word not in ("--out", str(folder / "pack"))] for words in slices]
        merge = ["audit", "merge", *run_state, "--out", str(folder / "pack")]
    else:
        merge = ["reconcile", "merge", *run_state, "--format", "csv", "--report", str(folder / "report.json")]
    return [sys.executable, "-c", INLINE, json.dumps([*slices, merge])]


def _lists(folder: Path) -> int:
    """LIST requests the run made, every destination's, from its report."""
    report = json.loads((folder / "report.json").read_text())
    return sum(kinds.get("list", 0) for kinds in report["requests"].values())


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


def _print(job: str, runs: dict[str, Runs], outcomes: dict[str, object], args: argparse.Namespace) -> None:
    one = runs["one"]
    base, base_cpu = statistics.median(one.wall), statistics.median(one.cpu)
    base_total = statistics.median(c + s for c, s in zip(one.cpu, one.servers, strict=True))
    same = all(outcome == outcomes["one"] for outcome in outcomes.values())
    what = "audit pack" if job == "audit" else f"reconcile --verify {job}"
    compared = "coverage and manifest" if job == "audit" else "counts"
    print(f"\n{what}, about {args.events:,} events, {args.shards} slices, medians of {args.rounds} "
          f"(merged {compared} equal to one process's: {same})")  # fmt: skip
    print(f"  {'':40} {'wall':>8}   {'vs one':>6}   {'firehose CPU':>12}   {'+ servers CPU':>13}   LIST   load after")
    for way, measured in runs.items():
        wall, cpu = statistics.median(measured.wall), statistics.median(measured.cpu)
        total = statistics.median(c + s for c, s in zip(measured.cpu, measured.servers, strict=True))
        lists = f"{statistics.median(measured.lists):6.0f}" if measured.lists else "     -"
        load = ", ".join(f"{value:.1f}" for value in measured.loads)
        print(f"  {WAYS[way]:40} {wall:7.1f} s   {base / wall:5.2f}x   {cpu:10.1f} s   {total:11.1f} s   "
              f"{lists}   {load}")  # fmt: skip
    for way in ONE_AT_A_TIME:
        if way not in runs:
            continue
        measured = runs[way]
        print(f"  overhead of a slice, {WAYS[way]}: (T_sliced - T_one) / {args.shards}, and as a share of a slice's "
              f"time (T_one / {args.shards})")  # fmt: skip
        total = statistics.median(c + s for c, s in zip(measured.cpu, measured.servers, strict=True))
        for name, sliced, unsliced in (
            ("wall", statistics.median(measured.wall), base),
            ("firehose CPU", statistics.median(measured.cpu), base_cpu),
            ("firehose + servers CPU", total, base_total),
        ):
            per_slice = (sliced - unsliced) / args.shards
            print(f"    {name:24} {per_slice * 1000:8.0f} ms a slice, {per_slice / (unsliced / args.shards):7.1%}")
        if measured.lists:
            extra = (statistics.median(measured.lists) - statistics.median(one.lists)) / args.shards
            print(f"    {'LIST requests':24} {extra:8.1f} more a slice")


if __name__ == "__main__":
    main()
