"""``firehose watch``: continuous assurance that each new event reaches its archive."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from firehose.cli.app import cli, storage_settings
from firehose.cli.options import WritableFile, parse_time, storage_options
from firehose.cli.output import binary_stdout, counted, tell
from firehose.duration import parse_duration


@cli.command()
@click.option("--interval", default="30s", show_default=True, help="How often to poll GET /events.")
@click.option("--deadline", default="10min", show_default=True, help="How long an event's object may take.")
@click.option(
    "--down-after",
    default="5min",
    show_default=True,
    help="A destination or the API failing (or a destination receiving nothing) this long is down.",
)
@click.option(
    "--repair-after",
    help="Write an event still missing this long after its end (not shorter than --deadline), as reconcile "
    "--repair does: write-if-absent, read back. Default: never.",
)
@click.option(
    "--overlap",
    default="30s",
    show_default=True,
    help="Read again this far behind the cursor: events that became visible after later ones.",
)
@click.option("--start", help="A first watch begins with events from here (default: now minus --deadline).")
@click.option("--once", is_flag=True, help="One poll, then exit: 1 while an event is late, 5 if a store failed.")
@click.option("--archive", "archive_url", help="Look in this store URL instead of each event's own destinations.")
@click.option(
    "--state",
    "state_file",
    help="State database (default: $FIREHOSE_STATE, else ~/.local/state/firehose/state.sqlite).",
)
@click.option("--metrics-port", type=click.IntRange(1, 65535), help="Serve Prometheus/OpenMetrics text on this port.")
@click.option("--metrics-file", type=WritableFile(), help="Write the metrics here after each poll (node_exporter).")
@click.option(
    "--alert-url",
    "alert_urls",
    multiple=True,
    envvar="FIREHOSE_ALERT_URL",  # a webhook's URL is a credential: in the environment, not in every `ps`
    help="Also POST each alert here as JSON (a webhook; repeatable). Retried; never holds up the watch. "
    "[default: $FIREHOSE_ALERT_URL, URLs separated by spaces]",
)
@click.option(
    "--alert-command",
    "alert_commands",
    multiple=True,
    help="Also run this command for each alert, its JSON on stdin (repeatable; exit 75 means try again).",
)
@click.option(
    "--alert-timeout",
    default="10s",
    show_default=True,
    help="Longest one webhook request or command may take; twice this, the grace for alerts at exit.",
)
@click.option("--url", help="LeadConduit base URL (default: $LEADCONDUIT_URL, config, https://app.leadconduit.com).")
@storage_options
@click.pass_context
def watch(
    ctx: click.Context,
    /,
    interval: str,
    deadline: str,
    down_after: str,
    repair_after: str | None,
    overlap: str,
    start: str | None,
    once: bool,
    archive_url: str | None,
    state_file: str | None,
    metrics_port: int | None,
    metrics_file: str | None,
    alert_urls: tuple[str, ...],
    alert_commands: tuple[str, ...],
    alert_timeout: str,
    url: str | None,
    credential_id: str | None,
    workers: int,
    **storage: Any,
) -> None:
    """Follow GET /events and check that each new event's object reaches each of its destinations in time.

    Alerts go to stdout, one JSON object a line: late (not there by --deadline), recovered (arrived later,
    with its delivery lag), repaired / repair_failed (--repair-after wrote it, or could not), destination_down /
    destination_up, api_down / api_up; each has an "id" to de-duplicate on. --alert-url and --alert-command
    get them too, from an outbox in the state database: at least once, in order, even across a kill -9. Each
    event of note is one line on stderr (--log-format json for log shippers). The cursor and the events
    awaited are kept in the state database: a restart resumes without missing or counting an event twice.
    SIGTERM stops at the next checkpoint, exit 0.

    \b
    Example:
      firehose watch --interval 30s --deadline 10min >> alerts.ndjson
      firehose watch --once --deadline 15min          # cron: exit 1 while an event is late
      firehose watch --alert-url https://hooks.example.com/firehose --log-format json
      firehose watch --deadline 10min --repair-after 1h
    """
    from firehose import WatchOptions
    from firehose import watch as watch_events
    from firehose.report import json_compact

    options = WatchOptions(
        interval=parse_duration(interval, "--interval", allow_zero=False),
        deadline=parse_duration(deadline, "--deadline", allow_zero=False),
        down_after=parse_duration(down_after, "--down-after"),
        repair_after=parse_duration(repair_after, "--repair-after", allow_zero=False) if repair_after else None,
        overlap=parse_duration(overlap, "--overlap"),
        start=parse_time(start, "--start") if start else None,
        archive=archive_url,  # type: ignore[arg-type]  # WatchOptions parses the URL, naming --archive
        once=once,
        workers=workers,
        metrics_port=metrics_port,
        metrics_file=Path(metrics_file) if metrics_file else None,
        alert_urls=alert_urls,
        alert_commands=alert_commands,
        alert_timeout=parse_duration(alert_timeout, "--alert-timeout", allow_zero=False),
    )
    settings = storage_settings(ctx, storage, url=url, state_file=state_file)
    out = binary_stdout()

    def alert(document: dict[str, Any]) -> None:
        out.write(json_compact(document) + b"\n")
        out.flush()  # an alert is news now, not when a buffer fills

    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    try:
        with noting():
            result = watch_events(options, settings, on_alert=alert, stop=stop, credential_id=credential_id)
    finally:
        signal.signal(signal.SIGTERM, previous)
    seen = sum(counts.get("seen", 0) for counts in result.totals.values())
    tell(
        f"firehose watch: {counted(result.polls, 'poll')}, {counted(result.events, 'new event')}; "
        + ", ".join(f"{number} {outcome}" for outcome, number in sorted(result.this_run.items()))
        + f"{'; ' if result.this_run else ''}{result.late} late now, {seen:,} (event, destination) pairs in all"
    )
    ctx.exit(int(result.exit_code))


@contextlib.contextmanager
def noting() -> Iterator[None]:
    """The watch's events of note (``firehose.watching`` info lines) shown unless ``--quiet``: a service's log."""
    from firehose.cli import output

    notes = logging.getLogger("firehose.watching")
    if not output.quiet() and notes.getEffectiveLevel() > logging.INFO:
        notes.setLevel(logging.INFO)
    try:
        yield
    finally:
        notes.setLevel(logging.NOTSET)
