"""How fast `firehose replay` sends, against what the target allows, in one run:

1. a sink that answers like a real flow after 100 ms (scripts/replay_sink.py), at --concurrency 16: the
   throughput as a share of the ideal 16 / 0.1 s = 160 leads/s;
2. a fast sink (nginx from Debian answering 201 with a fixed body): firehose's throughput next to the sink's
   own ceiling measured by wrk posting the same body at the same concurrency, and firehose's CPU time (user +
   system, the whole process: startup, reading the archive, the ledger) per replayed lead;
3. the 100 ms sink with --rate 50/s: the achieved rate, and the most requests that arrived in any one second.

The events are 5,000 source events archived by a sandbox firehose to a directory (file://), read back by
replay with --from; each run has a fresh ledger.

usage: scripts/bench replay [--events N]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from bench_support import BIN, ROOT, SANDBOX_KEY, ensure_tools, start_sandbox

NGINX_CONF = """
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_buffer_size 64k;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            default_type application/json;
            return 201 '{{"outcome":"success","reason":null,"lead":{{"id":"6b0000000000000000000001"}},"price":0}}';
        }}
    }}
}}
"""


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_sink(work: Path, delay_ms: float) -> tuple[subprocess.Popen[bytes], str]:
    port_file = work / f"sink-{delay_ms}.port"
    process = subprocess.Popen(
        [str(BIN / "python"), str(ROOT / "scripts" / "replay_sink.py"), "--port-file", str(port_file),
         "--delay-ms", str(delay_ms)]
    )  # fmt: skip
    while not (port_file.exists() and port_file.read_text()):
        time.sleep(0.05)
    return process, f"http://127.0.0.1:{port_file.read_text()}"


def replay(work: Path, sources: list[str], target: str, name: str, *extra: str) -> tuple[dict[str, Any], float, float]:
    """One `firehose replay` process: its report, wall seconds, and CPU seconds (user + system)."""
    report = work / f"{name}.json"
    command = [str(BIN / "firehose"), "replay", *(f"--from={s}" for s in sources), "--target", target, "--yes",
               "--state", str(work / f"{name}.sqlite"), "--report", str(report), "--concurrency", "16",
               "--format", "csv", *extra]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"bench: replay {name} failed ({result.returncode}): {result.stderr[-800:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return json.loads(report.read_text()), wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5000)
    args = parser.parse_args()
    ensure_tools({"wrk": "wrk", "nginx": "nginx-light"})
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        archive = work / "archive"
        # One source event per lead; the disabled flow's (about a fifth) are not archived.
        sandbox, url = start_sandbox(
            dict(os.environ), work, "--leads", str(args.events * 13 // 10), "--days", "30",
            "--firehose-dir", str(archive), "--create-buckets", wait_for_firehose=True,
        )  # fmt: skip
        try:
            httpx.get(f"{url}/_sandbox/status", auth=("API", SANDBOX_KEY), timeout=30).raise_for_status()
        finally:
            sandbox.terminate()
            sandbox.wait(60)
        # <dir>/<service>/<bucket>: each a store; a flow writing to both services is read twice, sent once.
        sources = [f"file://{bucket}" for service in sorted(archive.iterdir()) for bucket in sorted(service.iterdir())]
        limit = ["--max", str(args.events)]

        slow, slow_url = start_sink(work, 100)
        fast_conf = work / "nginx.conf"
        port = free_port()
        fast_conf.write_text(NGINX_CONF.format(dir=work, port=port))
        nginx = subprocess.Popen(["nginx", "-p", str(work), "-c", str(fast_conf), "-g", "daemon off;"])
        fast_url = f"http://127.0.0.1:{port}"
        try:
            time.sleep(0.5)
            report, wall, cpu = replay(work, sources, slow_url, "slow", *limit)
            sent = report["counts"].get("sent", 0)
            sending = report["seconds"]["sending"]
            httpx.get(f"{slow_url}/_arrivals", timeout=30)
            print(f"{sent:,} archived source events replayed with --concurrency 16")
            print(
                f"  100 ms sink: {sent / sending:.1f} leads/s while sending = {sent / sending / 160:.0%} of the ideal "
                f"160/s (target at least 90%); whole process {sent / wall:.1f}/s including "
                f"{report['seconds']['selecting']:.1f} s reading the archive"
            )

            body = work / "body.json"
            body.write_text('{"first_name":"Ada","email":"ada@example.com","state":"TX","postal_code":"78701"}')
            lua = work / "post.lua"
            lua.write_text(
                'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                f'wrk.body = io.open("{body}"):read("*a")\n'
            )
            out = subprocess.run(
                ["wrk", "-t2", "-c16", "-d10s", "-s", str(lua), fast_url], capture_output=True, text=True, check=True
            ).stdout
            ceiling = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
            report, wall, cpu = replay(work, sources, fast_url, "fast", *limit)
            sent = report["counts"].get("sent", 0)
            sending = report["seconds"]["sending"]
            sending_cpu = report["seconds"]["sending_cpu"]
            print(
                f"  fast sink (nginx): {sent / sending:,.0f} leads/s while sending, against the sink's ceiling of "
                f"{ceiling:,.0f} requests/s by wrk -c16 ({sent / sending / ceiling:.0%}); whole process "
                f"{wall:.1f} s"
            )
            print(
                f"  CPU per replayed lead while sending (request, answer, ledger, report row): "
                f"{sending_cpu / sent * 1000:.2f} ms (target at most 1 ms); whole process {cpu / sent * 1000:.2f} ms, "
                f"which includes startup and reading {report['seconds']['selecting']:.1f} s of archive "
                "(every event type, to find the source events)"
            )

            report, wall, cpu = replay(work, sources, slow_url, "rate", *limit, "--rate", "50/s")
            arrivals = httpx.get(f"{slow_url}/_arrivals", timeout=30).json()
            arrivals.sort()
            achieved = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
            most, low = 0, 0
            for high, moment in enumerate(arrivals):
                while arrivals[low] <= moment - 1.0:
                    low += 1
                most = max(most, high - low + 1)
            print(
                f"  --rate 50/s: achieved {achieved:.2f}/s ({(achieved / 50 - 1):+.1%}; target within 5%), "
                f"at most {most} requests in any one second (target at most 50)"
            )
        finally:
            slow.terminate()
            nginx.terminate()
            slow.wait(10)
            nginx.wait(10)


if __name__ == "__main__":
    main()
