"""The command line: the only module that imports click, prints, reads flags or exits.

Each command parses its options, builds ``Settings``, makes one library call, renders the result and picks
an exit code from ``errors.ExitCode``. Heavy imports (boto3, azure) happen inside commands that need them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, BinaryIO

import click

from firehose import __version__
from firehose.config import API_USERNAME, Settings, config_path, load_settings
from firehose.errors import ExitCode, FirehoseError, UsageError

log = logging.getLogger("firehose")


class FirehoseGroup(click.Group):
    """Turns every ``FirehoseError`` into one line on stderr and its exit code; Ctrl-C into 130."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FirehoseError as exc:
            click.echo(f"firehose: error: {exc}", err=True)
            ctx.exit(int(exc.exit_code))
        except KeyboardInterrupt:
            click.echo("firehose: interrupted", err=True)
            ctx.exit(int(ExitCode.INTERRUPTED))


def parse_time(value: str, flag: str) -> datetime:
    """An ISO 8601 date or date-time; a naive one is taken as UTC."""
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise UsageError(f"{flag} {value!r} is not an ISO 8601 date or date-time (2026-11-01T00:00:00Z)") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _settings(ctx: click.Context, **overrides: Any) -> Settings:
    root = ctx.find_root()
    path = config_path(root.params.get("config"), os.environ, Path.cwd())
    return load_settings(config_file=path, env=os.environ, overrides=overrides)


@click.group(cls=FirehoseGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="firehose")
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    default=None,
    help="TOML config file (default: $FIREHOSE_CONFIG, else ./firehose.toml if present).",
)
@click.option("-v", "--verbose", count=True, help="More detail on stderr (-vv for HTTP requests).")
def cli(config: str | None, verbose: int) -> None:
    """Read, reconcile and replay LeadConduit firehose archives.

    The API key comes from LEADCONDUIT_API_KEY; the API URL from --url, LEADCONDUIT_URL or the config file.

    \b
    Example:
      export LEADCONDUIT_API_KEY=...
      firehose events --start 2026-11-01 --type source > events.ndjson
    """
    _log_to_stderr(logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG)


def _log_to_stderr(level: int) -> None:
    """Library log records (retries, progress) go to stderr, prefixed; -vv adds httpx's request lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("firehose: %(message)s"))
    for name in ("firehose", "httpx"):
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, "firehose_cli", False)]:
            logger.removeHandler(old)
        handler.firehose_cli = True  # type: ignore[attr-defined]  # marks handlers this function owns
        logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(level if name == "firehose" or level <= logging.DEBUG else logging.WARNING)


@cli.command()
@click.option("--url", help="LeadConduit base URL (default: $LEADCONDUIT_URL, config, https://app.leadconduit.com).")
@click.option("--start", help="Only events created at or after this time (ISO 8601, UTC if no zone).")
@click.option("--end", help="Only events created at or before this time.")
@click.option("--after-id", help="Only events after this event id (exclusive); resumes an earlier run.")
@click.option("--before-id", help="Only events before this event id (exclusive).")
@click.option(
    "--rules",
    "rules_json",
    help='Rules as a JSON array, e.g. \'[{"lhv":"lead.state","op":"is equal to","rhv":"TX"}]\'.',
)
@click.option("--include", multiple=True, help="Only this field (dot path); repeatable. `id` is always kept.")
@click.option("--exclude", multiple=True, help="Drop this field (dot path); repeatable. Not with --include.")
@click.option(
    "--type", "types", multiple=True, help="Only this event type (source, recipient, filter, ...); repeatable."
)
@click.option(
    "--outcome", "outcomes", multiple=True, help="Only this outcome (success, failure, error, ...); repeatable."
)
@click.option("--max", "max_events", type=click.IntRange(min=1), help="Stop after this many events.")
@click.option(
    "--page-size", type=click.IntRange(1, 1000), default=1000, show_default=True, help="Events asked for per request."
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, writable=True), help="Write NDJSON here instead of stdout."
)
@click.option(
    "--max-attempts",
    type=click.IntRange(min=1),
    help="Attempts per request before giving up (default 6; 429/5xx/lost connections are retried).",
)
@click.option(
    "--backoff-max",
    "backoff_max_seconds",
    type=click.FloatRange(min=0),
    help="Longest wait between attempts, seconds (default 30).",
)
@click.pass_context
def events(
    ctx: click.Context,
    url: str | None,
    start: str | None,
    end: str | None,
    after_id: str | None,
    before_id: str | None,
    rules_json: str | None,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    types: tuple[str, ...],
    outcomes: tuple[str, ...],
    max_events: int | None,
    page_size: int,
    output: str | None,
    max_attempts: int | None,
    backoff_max_seconds: float | None,
) -> None:
    """Stream events from LeadConduit's GET /events as NDJSON, oldest first.

    Pages with sort=asc and an after_id cursor, so memory stays flat however many events there are.
    429 and 5xx answers are retried with capped exponential backoff (at least Retry-After). On a failure,
    the last event id written is printed; pass it to --after-id to resume.

    \b
    Example:
      firehose events --start 2026-11-01 --end 2026-11-02T00:00:00Z --type source -o day.ndjson
      firehose events --rules '[{"lhv":"lead.state","op":"is equal to","rhv":"TX"}]' --max 10
    """
    from firehose.api import EventQuery, LeadConduit
    from firehose.codec import decode, encode_line
    from firehose.http import HttpClient, RetryPolicy

    settings = _settings(ctx, url=url, max_attempts=max_attempts, backoff_max_seconds=backoff_max_seconds)
    rules: tuple[dict[str, Any], ...] = ()
    if rules_json:
        parsed = decode(rules_json, where="--rules")
        if not isinstance(parsed, list) or not all(isinstance(rule, dict) for rule in parsed):
            raise UsageError("--rules must be a JSON array of rule objects")
        rules = tuple(parsed)
    query = EventQuery(
        start=parse_time(start, "--start") if start else None,
        end=parse_time(end, "--end") if end else None,
        after_id=after_id,
        before_id=before_id,
        rules=rules,
        include=include,
        exclude=exclude,
        types=types,
        outcomes=outcomes,
    )
    api = settings.api
    key = api.require_key()
    policy = RetryPolicy(max_attempts=api.max_attempts, backoff_max_seconds=api.backoff_max_seconds)
    started = time.monotonic()
    count, last_id = 0, None
    with contextlib.ExitStack() as stack:
        out: BinaryIO = sys.stdout.buffer
        if output:
            out = stack.enter_context(Path(output).open("wb"))
        http = stack.enter_context(
            HttpClient(api.url, auth=(API_USERNAME, key.reveal()), timeout_seconds=api.timeout_seconds, retry=policy)
        )
        try:
            for event in LeadConduit(http).iter_events(query, page_size=page_size, max_events=max_events):
                out.write(encode_line(event))
                count += 1
                last_id = event["id"]
        except FirehoseError:
            if last_id:
                click.echo(
                    f"firehose: {count} events written before the error; resume with --after-id {last_id}", err=True
                )
            raise
        finally:
            out.flush()
    seconds = time.monotonic() - started
    rate = count / seconds if seconds > 0 else 0.0
    log.info("%d events in %.1f s (%.0f/s)%s", count, seconds, rate, f", last id {last_id}" if last_id else "")
    click.echo(f"firehose events: {count} events in {seconds:.1f} s", err=True)


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
    "--leads", type=click.IntRange(min=0), default=200, show_default=True, help="Leads to generate at start-up."
)
@click.option(
    "--days",
    type=click.FloatRange(min=0.001),
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
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of firehose writes lost on purpose, so reconcile has gaps to find.",
)
@click.option(
    "--rate-429",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of API answers that are 429 with Retry-After.",
)
@click.option(
    "--rate-5xx",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of API answers that are 500/502/503/504.",
)
@click.option(
    "--latency-ms",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Delay added to every API answer.",
)
@click.option("--port-file", type=click.Path(dir_okay=False), help="Write the listening port here once ready.")
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
    port_file: str | None,
) -> None:
    """Run a LeadConduit-compatible service on loopback, seeded with generated leads.

    Serves GET /events, GET /events/{id} and POST /flows/{flow}/sources/{source}/submit, and writes every
    event through a firehose to S3, Azure Blob or a directory. GET /_sandbox/status shows its flows and
    what the firehose wrote; PUT /_sandbox/faults changes fault rates while it runs. Stop with Ctrl-C.

    \b
    Example:
      export LEADCONDUIT_API_KEY=sandbox-key AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
      firehose sandbox --leads 500 --s3-endpoint http://127.0.0.1:8333 --create-buckets --drop-rate 0.02
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
    )
    end = parse_time(until, "--until") if until else default_until()
    try:
        server = make_server(box, host, port)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    bound_port = server.server_address[1]
    count = box.seed_data(leads=leads, days=days, until=end)
    click.echo(
        f"sandbox: {leads} leads, {count} events (seed {seed}, until {end:%Y-%m-%dT%H:%M:%SZ}); "
        f"listening on http://{host}:{bound_port}",
        err=True,
    )
    if port_file:
        Path(port_file).write_text(f"{bound_port}\n")

    def stop(signum: int, frame: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        stream.close()
        click.echo(f"sandbox: stopped; firehose {stream.status()}", err=True)


def main(argv: list[str] | None = None) -> None:
    """The console script."""
    cli.main(args=argv, prog_name="firehose")
