"""What `firehose watch` costs and whether it keeps up, as whole processes: a `firehose sandbox` making leads live
(its firehose writing to SeaweedFS and Azurite) and a `firehose watch` CLI process following it, its alerts read
from its stdout and its own metrics scraped from --metrics-port.

- requests: at each of --rates events/s (sandbox's --events-per-second), for --polls polls of --interval each, the
  store requests per destination (the watch's own counter) per poll and per 1,000 (event, destination) pairs
  watched: one listing per destination per poll, so per poll they stay flat as the rate grows and per 1,000
  events they fall;
- keep-up: a fresh sandbox at the highest rate with its firehose off (its one process cannot also write that
  many objects a second here), the watch's cursor age (its gauge, after each poll) and how far behind the sandbox
  it is (sampled each second) as max and p95, against two intervals; the CPU of each process;
- capacity: a burst of --burst events made at once, and a fresh watch timed through them (its own speed, whatever
  rate the sandbox can make events at);
- memory: a fresh watch at --soak-rate for --minutes, its RSS sampled every 5 s (at 1, 10, 30 and 60 minutes,
  the maximum, and the growth over the second half of the run).

Each part has a sandbox (and a bucket) of its own.

`--outage` plays issue 15's outage instead: --rate events/s over --destinations of the sandbox's (3: Auto's S3,
Home's S3 and Azure), every write delayed by --delay (30 s), one destination stopped after --warmup: when the
first `late` alert for its first lost event arrived against its deadline + interval, when `destination_down`
arrived against --down-after (after the stop, and after the last arrival it names as `since`), that no other
destination was reported late or down (no false alarm), then the resume: recovered.

usage: scripts/bench watch [--rates 10,100,1000] [--polls P] [--interval 10s] [--burst N] [--minutes M] [--soak-rate R]
                           [--only rates|keepup|burst|memory ...]
       scripts/bench watch --outage [--rate 50] [--destinations 3] [--delay 30] [--deadline 10min] [--interval 30s]
                           [--down-after 5min]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from bench_support import SANDBOX_KEY as KEY
from bench_support import servers_cpu, stack_config, stack_env, start_sandbox
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"


def seconds(text: str) -> float:
    from firehose.duration import parse_duration

    return parse_duration(text, "duration").total_seconds()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stamp(at: float) -> str:
    return datetime.fromtimestamp(at, tz=UTC).strftime("%H:%M:%S")


@dataclass
class Scrape:
    """The watch's metrics at one moment."""

    at: float
    polls: int
    seen: dict[str, float]
    archived: dict[str, float]
    requests: dict[str, dict[str, float]]
    cursor_age: float | None


class Sandbox:
    """A `firehose sandbox` process and its controls."""

    def __init__(self, env: dict[str, str], work: Path, bucket: str, destinations: int = 5) -> None:
        self.process, self.url = start_sandbox(
            env, work, "--leads", "3", "--days", "1", "--bucket", bucket,
            "--s3-endpoint", env["FIREHOSE_TEST_S3_ENDPOINT"], "--create-buckets",
            "--destinations", str(destinations), wait_for_firehose=True,
        )  # fmt: skip
        self.http = httpx.Client(base_url=self.url, auth=("API", KEY), timeout=60)
        self.bucket = bucket

    def faults(self, **change: Any) -> None:
        self.http.put("/_sandbox/faults", json=change).raise_for_status()

    def status(self) -> dict[str, Any]:
        return dict(self.http.get("/_sandbox/status").json())

    def pairs(self) -> int:
        """(event, destination) pairs sent to the firehose so far, written or not."""
        firehose = self.status()["firehose"]
        return sum(int(firehose[k]) for k in ("written", "failed", "skipped", "dropped", "pending", "held"))

    def destinations(self) -> list[str]:
        """The store URLs of the flows' enabled firehose destinations (as `Destination.url()` spells them)."""
        from firehose.event import destinations

        return sorted({d.url() for flow in self.status()["flows"] for d in destinations(flow["firehose"])})

    def close(self) -> None:
        self.http.close()
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:  # still writing a queue of objects nobody will look at
            self.process.kill()
            self.process.wait(20)


class Watch:
    """A `firehose watch` process: its alerts as they arrive (with the time each was read), its metrics."""

    def __init__(self, env: dict[str, str], work: Path, *options: str) -> None:
        self.port = free_port()
        self.stderr = (work / f"watch-{self.port}.err").open("wb")
        command = [
            str(BIN / "firehose"), "watch", "--metrics-port", str(self.port),
            "--state", str(work / f"watch-{self.port}.sqlite"), *options,
        ]  # fmt: skip
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=self.stderr)
        self.alerts: list[tuple[float, dict[str, Any]]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.http = httpx.Client(timeout=30)
        while self.scrape() is None:
            if self.process.poll() is not None:
                raise SystemExit(f"bench: firehose watch exited {self.process.returncode}; see {self.stderr.name}")
            time.sleep(0.2)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.alerts.append((time.time(), json.loads(line)))

    def scrape(self) -> Scrape | None:
        try:
            text = self.http.get(f"http://127.0.0.1:{self.port}/metrics").text
        except httpx.HTTPError:
            return None
        seen: dict[str, float] = defaultdict(float)
        archived: dict[str, float] = defaultdict(float)
        requests: dict[str, dict[str, float]] = defaultdict(dict)
        polls, age = 0, None
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "firehose_watch_events_total" and sample.labels["outcome"] == "seen":
                    seen[sample.labels["destination"]] = sample.value
                elif sample.name == "firehose_watch_events_total" and sample.labels["outcome"] == "archived":
                    archived[sample.labels["destination"]] = sample.value
                elif sample.name == "firehose_watch_store_requests_total":
                    requests[sample.labels["destination"]][sample.labels["kind"]] = sample.value
                elif sample.name == "firehose_watch_api_polls_total":
                    polls = int(sample.value)
                elif sample.name == "firehose_watch_cursor_age_seconds":
                    age = sample.value
        return Scrape(time.time(), polls, dict(seen), dict(archived), dict(requests), age if polls else None)

    def after_poll(self, timeout: float = 600) -> Scrape:
        """The metrics just after the next poll ends."""
        first = self.scrape()
        polls = first.polls if first else 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(0.2)
            now = self.scrape()
            if now is not None and now.polls > polls:
                return now
        raise SystemExit(f"bench: the watch made no poll in {timeout:.0f} s")

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def close(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(120)
        self._reader.join(10)
        self.http.close()
        self.stderr.close()


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


@dataclass
class Phase:
    """What a watch did while the sandbox made events at one rate."""

    rate: float
    produced: float
    """Events/s the sandbox really made."""
    before: Scrape
    after: Scrape
    ages: list[float]
    """The cursor-age gauge after each poll."""
    behind: list[float]
    """Sampled each second: the sandbox's (event, destination) pairs the watch had not read, in seconds of them."""
    cores: dict[str, float]
    pending: int
    """The sandbox's firehose writes not yet made at the end."""

    @property
    def polls(self) -> int:
        return self.after.polls - self.before.polls

    @property
    def wall(self) -> float:
        return self.after.at - self.before.at


def at_rate(sandbox: Sandbox, watch: Watch, rate: float, polls: int, baseline: int) -> Phase:
    """``polls`` polls of ``watch`` while the sandbox makes ``rate`` events/s (``baseline``: the sandbox's pairs
    made before the watch's --start)."""
    sandbox.faults(events_per_second=rate)
    watch.after_poll()  # the first poll at this rate still checks what the last one left
    before, made = watch.after_poll(), sandbox.status()["live"]["events"]
    cpu = servers_cpu(sandbox=sandbox.process.pid, watch=watch.process.pid)
    ages: list[float] = []
    backlog: list[float] = []
    after = before
    while after.polls - before.polls < polls:
        time.sleep(1)
        sent, now = sandbox.pairs(), watch.scrape()
        if now is None:
            continue
        backlog.append(sent - baseline - sum(now.seen.values()))
        if now.polls > after.polls and now.cursor_age is not None:
            ages.append(now.cursor_age)
        after = now
    wall = after.at - before.at
    status = sandbox.status()
    pair_rate = (sum(after.seen.values()) - sum(before.seen.values())) / wall
    pids = {"sandbox": sandbox.process.pid, "watch": watch.process.pid}
    cores = {k: (v - cpu.get(k, 0.0)) / wall for k, v in servers_cpu(**pids).items()}
    behind = [pairs / pair_rate for pairs in backlog] if pair_rate else [0.0]
    produced = (status["live"]["events"] - made) / wall
    return Phase(rate, produced, before, after, ages, behind, cores, int(status["firehose"]["pending"]))


def requests_table(sandbox: Sandbox, watch: Watch, rates: list[float], polls: int, interval: float) -> None:
    """Store requests per poll and per 1,000 pairs, per destination, at each rate."""
    baseline = sandbox.pairs()  # the watch began at now: none of these are its
    print(f"\nstore requests per destination, {polls} polls of --interval {interval:.0f} s at each rate")
    print("(asked, made: events/s; poll: seconds from one poll's end to the next; behind: the most seconds of the")
    print(" sandbox's events the watch had not read, sampled each second; unwritten: the sandbox's firehose writes")
    print(f" still queued at the end; req: store requests; B: the bucket, {sandbox.bucket})")
    print(
        f"  {'asked':>6} {'made':>6} {'poll':>5} {'behind':>6} {'unwritten':>9}  {'destination':<20} "
        f"{'pairs/poll':>10} {'req/poll':>8} {'req/1,000 pairs':>15}"
    )
    for rate in rates:
        phase = at_rate(sandbox, watch, rate, polls, baseline)
        before, after, done = phase.before, phase.after, phase.polls
        for url in sorted(after.requests):
            pairs = after.seen.get(url, 0) - before.seen.get(url, 0)
            kinds = {k: n - before.requests.get(url, {}).get(k, 0) for k, n in after.requests[url].items()}
            total = sum(kinds.values())
            per_1000 = f"{total / pairs * 1000:15.1f}" if pairs else f"{'-':>15}"
            detail = ", ".join(f"{k} {n / done:.1f}" for k, n in sorted(kinds.items()) if n)
            print(
                f"  {rate:>6.0f} {phase.produced:>6.0f} {phase.wall / done:>5.1f} {max(phase.behind):>6.1f} "
                f"{phase.pending:>9,}  {url.replace(sandbox.bucket, 'B'):<20} {pairs / done:>10,.0f} "
                f"{total / done:>8.1f} {per_1000}   ({detail})",
                flush=True,
            )


def keep_up(sandbox: Sandbox, watch: Watch, rate: float, polls: int, interval: float) -> None:
    """The watch following ``rate`` events/s from the API, the sandbox's firehose off (its writes dropped): the
    sandbox's one process cannot also write that many objects a second on this machine (see `unwritten` above),
    and its writes would take the CPU its API needs. The watch still lists every destination each poll."""
    sandbox.faults(drop_rate=1.0)
    phase = at_rate(sandbox, watch, rate, polls, sandbox.pairs())
    ages, behind = phase.ages, phase.behind
    verdict = "kept up" if max(ages) < 2 * interval and max(behind) < 2 * interval else "FELL BEHIND"
    cores = ", ".join(f"{k} {v:.2f}" for k, v in sorted(phase.cores.items()))
    print(
        f"\nkeep-up at {rate:.0f} events/s asked, {phase.produced:.0f} made by the sandbox (its firehose off), "
        f"--interval {interval:.0f} s, {phase.polls} polls in {phase.wall:.0f} s: cursor age after each poll max "
        f"{max(ages):.1f} s, p95 {p95(ages):.1f} s; behind the sandbox, sampled each second: max {max(behind):.1f} s, "
        f"p95 {p95(behind):.1f} s (two intervals: {2 * interval:.0f} s): {verdict}\n  cores used: {cores}"
    )


def capacity(sandbox: Sandbox, env: dict[str, str], work: Path, events: int) -> None:
    """How fast a watch reads and checks events, whatever the rate the sandbox can make them at: a burst of
    ``events`` made at once (their objects all written), then a fresh watch from before it, timed to the end of
    its first poll (start-up included)."""
    sandbox.faults(events_per_second=0)
    start = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    made, began = 0, time.monotonic()
    while made < events:
        made += len(sandbox.http.post("/_sandbox/leads", json={"count": 1000}).json()["events"])
    making = time.monotonic() - began
    while sandbox.status()["firehose"]["pending"]:
        time.sleep(1)
    writing = time.monotonic() - began
    began = time.monotonic()
    watch = Watch(env, work, "--interval", "1h", "--start", start)
    try:
        cpu = servers_cpu(sandbox=sandbox.process.pid, watch=watch.process.pid)
        first = watch.after_poll()
        wall = time.monotonic() - began
        pids = {"sandbox": sandbox.process.pid, "watch": watch.process.pid}
        used = {k: v - cpu.get(k, 0.0) for k, v in servers_cpu(**pids).items()}
    finally:
        watch.close()
    pairs, archived = sum(first.seen.values()), sum(first.archived.values())
    print(
        f"\ncapacity: the sandbox made {made:,} events in {making:.0f} s ({made / making:.0f} events/s; its firehose "
        f"wrote them all by {writing:.0f} s); a fresh watch read and checked them ({pairs:,.0f} pairs, "
        f"{archived:,.0f} archived) in its first poll: {wall:.1f} s, start-up included: {made / wall:,.0f} events/s"
        f"\n  CPU seconds in that poll: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(used.items()))
    )


def soak(sandbox: Sandbox, env: dict[str, str], work: Path, minutes: float, rate: float, interval: str) -> None:
    """RSS of a fresh watch over ``minutes`` at ``rate`` events/s."""
    now = datetime.now(UTC).isoformat()
    watch = Watch(env, work, "--interval", interval, "--start", now)
    sandbox.faults(events_per_second=rate)
    began = time.monotonic()
    samples: list[tuple[float, float]] = []
    ages: list[float] = []
    polls = 0
    try:
        while (elapsed := time.monotonic() - began) < minutes * 60:
            samples.append((elapsed / 60, watch.rss_mib()))
            if len(samples) % 60 == 1:  # every 5 minutes, so a long run tells as it goes
                print(f"  {elapsed / 60:5.1f} min: RSS {samples[-1][1]:.0f} MiB", flush=True)
            scrape = watch.scrape()
            if scrape is not None and scrape.polls > polls and scrape.cursor_age is not None:
                polls = scrape.polls
                ages.append(scrape.cursor_age)
            time.sleep(5)
        status = sandbox.status()
    finally:
        sandbox.faults(events_per_second=0)
        watch.close()
    late = Counter(a["alert"] for _, a in watch.alerts)

    def at(minute: float) -> str:
        near = min(samples, key=lambda s: abs(s[0] - minute))
        return f"{near[1]:.0f} MiB at {near[0]:.1f} min"

    marks = [m for m in (1, 10, 30, 60) if m <= minutes + 0.1]
    half = [rss for m, rss in samples if m >= minutes / 2]
    print(f"\nmemory: a watch (--interval {interval}) at {rate:.0f} events/s for {minutes:g} min, RSS every 5 s")
    print("  " + "; ".join(at(m) for m in marks) + f"; at the end {samples[-1][1]:.0f} MiB")
    print(
        f"  max {max(s[1] for s in samples):.0f} MiB; second half from {half[0]:.0f} to {half[-1]:.0f} MiB "
        f"(min {min(half):.0f}, max {max(half):.0f}); cursor age max {max(ages, default=0):.1f} s, "
        f"p95 {p95(ages) if ages else 0:.1f} s over {len(ages)} polls; "
        f"sandbox made {status['live']['events']:,} events; alerts: {dict(late) or 'none'}"
    )


def outage(sandbox: Sandbox, env: dict[str, str], work: Path, args: argparse.Namespace) -> None:
    destinations = sandbox.destinations()
    bucket = args.bucket
    stopped = args.stopped or f"s3://{bucket}/events/auto"
    interval, deadline, down_after = seconds(args.interval), seconds(args.deadline), seconds(args.down_after)
    sandbox.faults(destinations={f"s3://{bucket}": {"delay_seconds": args.delay},
                                 f"az://{bucket}": {"delay_seconds": args.delay}})  # fmt: skip
    start = datetime.now(UTC).isoformat()
    watch = Watch(
        env, work, "--interval", args.interval, "--deadline", args.deadline, "--down-after", args.down_after,
        "--start", start,
    )  # fmt: skip
    sandbox.faults(events_per_second=args.rate)
    print(
        f"outage: {args.rate:g} events/s over {len(destinations)} destinations ({', '.join(destinations)}), "
        f"every write {args.delay:g} s after its event; watch --interval {args.interval} --deadline "
        f"{args.deadline} --down-after {args.down_after}",
        flush=True,
    )
    try:
        time.sleep(args.warmup)
        stopped_at = time.time()
        sandbox.faults(destinations={stopped: {"stopped": True, "delay_seconds": args.delay}})
        print(f"  {stamp(stopped_at)} stopped {stopped}", flush=True)
        # Every write due before the stop has landed; the first lost ends `delay` before it, due at its deadline.
        resume_at = stopped_at + deadline + 2 * interval + 10
        while time.time() < resume_at:
            time.sleep(5)
        held = sandbox.status()["firehose"]["held"]
        resumed_at = time.time()
        sandbox.faults(destinations={stopped: {"delay_seconds": args.delay}})
        print(f"  {stamp(resumed_at)} resumed it ({held:,} writes held)", flush=True)
        waited = time.monotonic()
        while time.monotonic() - waited < args.delay + 3 * interval:
            if any(a["alert"] == "destination_up" for _, a in watch.alerts):
                break
            time.sleep(2)
        # Recoveries of everything late: each late pair is looked for again, less often as it ages.
        time.sleep(2 * interval)
        produced = sandbox.status()["live"]["events"]
    finally:
        sandbox.faults(events_per_second=0)
        watch.close()
    alerts = watch.alerts
    late = [(read, a) for read, a in alerts if a["alert"] == "late"]
    mine = [(read, a) for read, a in late if a["destination"] == stopped]
    false = [a for _, a in alerts if a.get("destination", stopped) != stopped or a["alert"].startswith("api_")]
    print(f"  {produced:,} events made; alerts: {dict(Counter(a['alert'] for _, a in alerts))}")
    if mine:
        read, first = min(mine, key=lambda item: (item[1]["event_end"], item[0]))
        due = datetime.fromisoformat(first["deadline"]).timestamp()
        ended = datetime.fromisoformat(first["event_end"]).timestamp()
        print(
            f"  first lost event {first['event_id']} ended {stamp(ended)} ({stopped_at - ended:.0f} s before the "
            f"stop), deadline {stamp(due)}: `late` read {read - due:.1f} s after its deadline "
            f"(target: within the interval, {interval:.0f} s)"
        )
        print(f"  `late` for {stopped}: {len(mine):,} (writes held at the resume: {held:,})")
    else:
        print(f"  NO `late` alert for {stopped}")
    down = [(read, a) for read, a in alerts if a["alert"] == "destination_down" and a["destination"] == stopped]
    if down:
        read, alert = down[0]
        since = datetime.fromisoformat(alert["since"]).timestamp()
        print(
            f"  destination_down read {read - stopped_at:.1f} s after the stop, {read - since:.1f} s after the last "
            f"arrival it names ({stamp(since)}, {stopped_at - since:.1f} s before the stop) "
            f"(target: --down-after, {down_after:.0f} s)"
        )
    else:
        print("  NO destination_down")
    recovered = [a for _, a in alerts if a["alert"] == "recovered" and a["destination"] == stopped]
    up = [read for read, a in alerts if a["alert"] == "destination_up"]
    print(
        f"  after the resume: {len(recovered):,} recovered of {len(mine):,} late; destination_up "
        + (f"read {up[0] - resumed_at:.1f} s after the resume" if up else "NOT seen")
    )
    print(f"  false alarms (late/down for another destination, or api_*): {len(false)}" + (
        f": {false[:3]}" if false else ""))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="10,100,1000", help="events/s, comma separated")
    parser.add_argument("--polls", type=int, default=10, help="polls measured at each rate")
    parser.add_argument("--interval", default="", help="watch --interval (default 10s; 30s with --outage)")
    parser.add_argument("--burst", type=int, default=20_000, help="events made at once for the capacity run (0: none)")
    parser.add_argument("--minutes", type=float, default=2.0, help="length of the memory run")
    parser.add_argument("--soak-rate", type=float, default=50.0, help="events/s during the memory run")
    parser.add_argument("--soak-interval", default="30s", help="watch --interval during the memory run")
    parser.add_argument(
        "--only", choices=("rates", "keepup", "burst", "memory"), action="append", help="only these parts (repeatable)"
    )
    parser.add_argument("--outage", action="store_true", help="issue 15's outage scenario instead")
    parser.add_argument("--rate", type=float, default=50.0, help="--outage: events/s")
    parser.add_argument(
        "--destinations", type=int, default=3, choices=range(1, 6), help="--outage: the sandbox's first N destinations"
    )
    parser.add_argument("--delay", type=float, default=30.0, help="--outage: every write this long after its event")
    parser.add_argument("--deadline", default="10min", help="--outage: watch --deadline")
    parser.add_argument("--down-after", default="5min", help="--outage: watch --down-after")
    parser.add_argument("--warmup", type=float, default=60.0, help="--outage: seconds before the stop")
    parser.add_argument("--stopped", help="--outage: the store URL stopped (default s3://BUCKET/events/auto)")
    args = parser.parse_args()
    args.interval = args.interval or ("30s" if args.outage else "10s")
    env = stack_env()
    with tempfile.TemporaryDirectory() as tmp:

        @contextlib.contextmanager
        def fresh(name: str, destinations: int = 5) -> Iterator[tuple[Sandbox, dict[str, str], Path]]:
            """A sandbox of its own, in a bucket of its own, for one part of the run."""
            work = Path(tmp) / name
            work.mkdir()
            args.bucket = f"bench-watch-{name}-{int(time.time())}"
            sandbox = Sandbox(env, work, args.bucket, destinations)
            config = stack_config(env, work / "firehose.toml")
            run_env = {
                **env,
                "LEADCONDUIT_API_KEY": KEY,
                "LEADCONDUIT_URL": sandbox.url,
                "FIREHOSE_CONFIG": str(config),
            }
            try:
                yield sandbox, run_env, work
            finally:
                sandbox.close()
                # This machine's cores are shared: the figures mean little without what else ran.
                print("  (load average over the last 1, 5, 15 min: {:.1f}, {:.1f}, {:.1f})".format(*os.getloadavg()))

        if args.outage:
            with fresh("outage", args.destinations) as (sandbox, run_env, work):
                outage(sandbox, run_env, work, args)
            return
        rates = [float(rate) for rate in args.rates.split(",")]
        interval = seconds(args.interval)
        start = ("--interval", args.interval, "--start")
        parts = set(args.only or ("rates", "keepup", "burst", "memory"))
        if "rates" in parts:
            with fresh("rates") as (sandbox, run_env, work):
                watch = Watch(run_env, work, *start, datetime.now(UTC).isoformat())
                try:
                    requests_table(sandbox, watch, rates, args.polls, interval)
                finally:
                    watch.close()
        if "keepup" in parts:
            with fresh("keepup") as (sandbox, run_env, work):
                watch = Watch(run_env, work, *start, datetime.now(UTC).isoformat())
                try:
                    keep_up(sandbox, watch, rates[-1], args.polls, interval)
                finally:
                    watch.close()
        if "burst" in parts and args.burst:
            with fresh("burst") as (sandbox, run_env, work):
                capacity(sandbox, run_env, work, args.burst)
        if "memory" in parts and args.minutes > 0:
            with fresh("memory") as (sandbox, run_env, work):
                soak(sandbox, run_env, work, args.minutes, args.soak_rate, args.soak_interval)


if __name__ == "__main__":
    main()
