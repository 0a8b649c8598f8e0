"""``firehose sandbox``: a LeadConduit-compatible service on loopback."""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

import click

from firehose.cli.app import cli
from firehose.cli.options import (
    FiniteFloat,
    WritableFile,
    parse_time,
)
from firehose.cli.output import counted
from firehose.errors import UsageError

log = logging.getLogger("firehose")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (loopback).")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8700,
    show_default=True,
    help="Port to listen on (0 picks a free one).",
)
@click.option(
    "--api-key-env",
    default="LEADCONDUIT_API_KEY",
    show_default=True,
    help="Environment variable holding the API key the sandbox accepts.",
)
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the generated data.")
@click.option(
    "--bucket",
    default="lc-archive",
    show_default=True,
    help="Bucket and container name in the flows' firehose settings.",
)
@click.option(
    "--leads", type=click.IntRange(0, 1_000_000), default=200, show_default=True, help="Leads to generate at start-up."
)
@click.option(
    "--days",
    type=FiniteFloat(0.001, 36_500),
    default=30.0,
    show_default=True,
    help="Days the generated leads spread over, ending at --until.",
)
@click.option("--until", help="End of the generated data (default: start of today, UTC).")
@click.option("--s3-endpoint", help="S3 endpoint the firehose writes aws destinations to (keys: AWS_* env).")
@click.option("--s3-region", default="us-east-1", show_default=True, help="Region for --s3-endpoint.")
@click.option(
    "--azure-connection-string-env",
    default="AZURE_STORAGE_CONNECTION_STRING",
    show_default=True,
    help="Environment variable with the connection string for azure destinations.",
)
@click.option(
    "--firehose-dir",
    type=click.Path(file_okay=False),
    help="Write every destination under this directory instead (<dir>/<service>/<bucket>/<key>).",
)
@click.option("--create-buckets", is_flag=True, help="Create missing buckets and containers at start.")
@click.option(
    "--drop-rate",
    type=FiniteFloat(0, 1),
    default=0.0,
    show_default=True,
    help="Share of firehose writes lost on purpose, so reconcile has gaps to find.",
)
@click.option(
    "--rate-429",
    type=FiniteFloat(0, 1),
    default=0.0,
    show_default=True,
    help="Share of API answers that are 429 with Retry-After.",
)
@click.option(
    "--rate-5xx",
    type=FiniteFloat(0, 1),
    default=0.0,
    show_default=True,
    help="Share of API answers that are 500/502/503/504.",
)
@click.option(
    "--latency-ms",
    type=FiniteFloat(0, 600_000),
    default=0.0,
    show_default=True,
    help="Delay added to every API answer.",
)
@click.option(
    "--events-per-second",
    type=FiniteFloat(0, 100_000),
    default=0.0,
    show_default=True,
    help="Make new leads all the time, about this many events a second (for firehose watch).",
)
@click.option(
    "--destinations",
    type=click.IntRange(1, 5),
    default=5,
    show_default=True,
    help="Write only the first N of the flows' 5 destinations (3: Auto's S3, Home's S3 and Azure); flows with "
    "none of them are left out.",
)
@click.option("--port-file", type=WritableFile(), help="Write the listening port here once ready.")
def sandbox(
    host: str,
    port: int,
    api_key_env: str,
    seed: int,
    bucket: str,
    leads: int,
    days: float,
    until: str | None,
    s3_endpoint: str | None,
    s3_region: str,
    azure_connection_string_env: str,
    firehose_dir: str | None,
    create_buckets: bool,
    drop_rate: float,
    rate_429: float,
    rate_5xx: float,
    latency_ms: float,
    events_per_second: float,
    destinations: int,
    port_file: str | None,
) -> None:
    """Run a LeadConduit-compatible service on loopback, seeded with generated leads.

    Serves GET /events, GET /events/{id} and POST /flows/{flow}/sources/{source}/submit, and writes every
    event through a firehose to S3, Azure Blob or a directory. GET /_sandbox/status shows its flows and
    what the firehose wrote; PUT /_sandbox/faults changes fault rates, stops, resumes or delays a
    destination's writes and sets the live rate while it runs. Stop with Ctrl-C.

    \b
    Example:
      export LEADCONDUIT_API_KEY=sandbox-key AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
      firehose sandbox --leads 500 --s3-endpoint http://127.0.0.1:8333 --create-buckets --drop-rate 0.02
      firehose sandbox --leads 0 --events-per-second 50 --s3-endpoint http://127.0.0.1:8333 --create-buckets
      firehose sandbox --leads 0 --events-per-second 50 --destinations 3 --s3-endpoint http://127.0.0.1:8333
    """
    from firehose.archive import AzureCredential, S3Credential
    from firehose.sandbox import Faults, FirehoseStream, Sandbox, Targets, default_until, make_server
    from firehose.secret import Secret

    key = os.environ.get(api_key_env)
    if not key:
        raise UsageError(f"set {api_key_env} to the API key the sandbox should accept")
    connection_string = os.environ.get(azure_connection_string_env)
    targets = Targets(
        s3=S3Credential(endpoint_url=s3_endpoint, region=s3_region) if s3_endpoint else None,
        azure=AzureCredential(connection_string=Secret(connection_string)) if connection_string else None,
        directory=Path(firehose_dir).resolve() if firehose_dir else None,
        create_buckets=create_buckets,
    )
    stream = FirehoseStream(targets, drop_rate=drop_rate, seed=seed)
    box = Sandbox(
        api_key=key,
        stream=stream,
        seed=seed,
        bucket=bucket,
        faults=Faults(rate_429=rate_429, rate_5xx=rate_5xx, latency_ms=latency_ms),
        destinations=destinations,
    )
    end = parse_time(until, "--until") if until else default_until()
    try:
        server = make_server(box, host, port)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    bound_port = server.server_address[1]
    count = box.seed_data(leads=leads, days=days, until=end)
    click.echo(
        f"sandbox: {counted(leads, 'lead')}, {counted(count, 'event')} (seed {seed}, until {end:%Y-%m-%dT%H:%M:%SZ}); "
        f"listening on http://{host}:{bound_port}",
        err=True,
    )
    if port_file:
        Path(port_file).write_text(f"{bound_port}\n")
    box.live.set_rate(events_per_second)
    # What a client needs, ready to paste (the key's value is never printed: it is already in this shell).
    click.echo(f"sandbox: point firehose at it with:\n  export LEADCONDUIT_URL=http://{host}:{bound_port}", err=True)
    if api_key_env != "LEADCONDUIT_API_KEY":
        click.echo(f'  export LEADCONDUIT_API_KEY="${api_key_env}"', err=True)

    def stop(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        box.live.close()
        stream.close()
        _stopped(stream.status())


def _stopped(status: dict[str, Any]) -> None:
    """The last line: what the firehose did."""
    click.echo(
        f"sandbox: stopped; the firehose wrote {status['written']}, dropped {status['dropped']} on purpose, "
        f"failed {status['failed']}" + (f" (last error: {status['last_errors'][-1]})" if status["last_errors"] else ""),
        err=True,
    )
