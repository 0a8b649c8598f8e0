"""``firehose events``: stream GET /events as NDJSON."""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import BinaryIO

import click

from firehose.cli.app import cli, settings_from
from firehose.cli.options import (
    FiniteFloat,
    WritableFile,
    parse_rules,
    parse_time,
)
from firehose.cli.output import binary_stdout, counted, say, tell
from firehose.errors import FirehoseError

log = logging.getLogger("firehose")


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
@click.option("-o", "--output", type=WritableFile(), help="Write NDJSON here instead of stdout.")
@click.option(
    "--max-attempts",
    type=click.IntRange(1, 100),
    help="Attempts per request before giving up (default 6; 429/5xx/lost connections are retried).",
)
@click.option(
    "--backoff-max",
    "backoff_max_seconds",
    type=FiniteFloat(0, 3600),
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
    from firehose import EventQuery
    from firehose import events as events_of
    from firehose.report import json_line

    settings = settings_from(ctx, url=url, max_attempts=max_attempts, backoff_max_seconds=backoff_max_seconds)
    rules = parse_rules(rules_json)
    query = EventQuery(
        start=parse_time(start, "--start") if start else None,
        end=parse_time(end, "--end", end_of_day=True) if end else None,
        after_id=after_id,
        before_id=before_id,
        rules=rules,
        include=include,
        exclude=exclude,
        types=types,
        outcomes=outcomes,
    )
    stream = events_of(query, settings, page_size=page_size, max_events=max_events)  # the key checked first
    started = time.monotonic()
    count, last_id = 0, None
    with contextlib.ExitStack() as stack:
        stack.callback(stream.close)  # type: ignore[attr-defined]  # a generator: its connection closes
        out: BinaryIO = binary_stdout()
        if output:
            out = stack.enter_context(Path(output).open("wb"))
        try:
            for event in stream:
                out.write(json_line(event))
                count += 1
                last_id = event["id"]
        except FirehoseError:
            if last_id:
                say(f"firehose: {counted(count, 'event')} written before the error; resume with --after-id {last_id}")
            raise
        finally:
            out.flush()
    seconds = time.monotonic() - started
    rate = count / seconds if seconds > 0 else 0.0
    log.info("%d events in %.1f s (%.0f/s)%s", count, seconds, rate, f", last id {last_id}" if last_id else "")
    tell(f"firehose events: {counted(count, 'event')} in {seconds:.1f} s")
