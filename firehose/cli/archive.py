"""``firehose archive ls|cat``: list and read an archive by URL."""

from __future__ import annotations

import time
from typing import Any

import click

from firehose.cli.app import cli, storage_settings
from firehose.cli.options import parse_window, storage_options
from firehose.cli.output import binary_stdout, counted, say, tell
from firehose.errors import ExitCode
from firehose.report import RowWriter, json_document, json_line


@cli.group()
def archive() -> None:
    """Read a firehose archive: S3 (s3://bucket/prefix), Azure Blob (az://container/prefix) or a directory
    (file:///dir), laid out as <prefix>/<lead id>/<event id>.json.

    \b
    Example:
      firehose archive ls s3://my-bucket/events --start 2026-11-01 --end 2026-11-01
      firehose archive cat s3://my-bucket/events 6ae13b5ba55055783f30ae50
    """


LS_WIDTHS = {"time": 20, "lead_id": 24, "event_id": 24, "size": 7, "etag": 34, "last_modified": 20}


@archive.command("ls")
@click.argument("url")
@click.option("--start", help="Leads made at or after this time (ISO 8601; the archive is grouped by lead).")
@click.option("--end", help="Leads made at or before this time (a bare date means the whole day).")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json", "ndjson", "csv"]), default="text", show_default=True
)
@click.option("--all", "show_all", is_flag=True, help="Also list keys outside the firehose layout.")
@storage_options
@click.pass_context
def archive_ls(
    ctx: click.Context,
    /,
    url: str,
    start: str | None,
    end: str | None,
    fmt: str,
    show_all: bool,
    credential_id: str | None,
    workers: int,
    **storage: Any,
) -> None:
    """List the archived events under URL: key, lead id, event id, size, etag, last modified, and the event's
    time from its id.

    With --start/--end, only the events of the leads made in that window are listed: lead ids sort by time, so
    the window is one key range, listed in parallel slices of about a page each instead of walking the whole
    prefix. Events are grouped by lead, so a lead's later events (feedback days after) come with it.
    Verification files are skipped; other keys are counted (and shown with --all).

    \b
    Example:
      firehose archive ls s3://lc-archive/events/auto --start 2026-11-01 --end 2026-11-01
      firehose archive ls az://lc-archive --format csv > all.csv
    """
    start_seconds, end_seconds = parse_window(start, end)
    settings = storage_settings(ctx, storage)
    started = time.monotonic()
    meta = {"url": url, "start": start, "end": end}
    from firehose import ArchiveList, list_archive  # here, not at the top: a command loads only its own job

    with list_archive(url, settings, start=start_seconds, end=end_seconds, include_other=show_all,
                      credential_id=credential_id, workers=workers) as listing:  # fmt: skip
        # Begun once the store is open: a URL or credential that fails leaves stdout empty, not half a document.
        writer = RowWriter(binary_stdout(), fmt, ArchiveList.FIELDS, schema="firehose.archive-ls/1",
                           rows_name="objects", widths=LS_WIDTHS, meta=meta)  # fmt: skip
        for row in listing:
            writer.write(row)
        writer.close(listing.counts)
        elsewhere = listing.elsewhere()
    counts, seconds = listing.counts, time.monotonic() - started
    note = f"; {counts['verification_files']} verification files skipped" if counts["verification_files"] else ""
    if counts["other_keys"]:
        unlisted = "" if show_all else " not listed (--all shows them)"
        note += f"; {counts['other_keys']} keys outside the layout{unlisted}"
    note += _elsewhere_hint(elsewhere)
    tell(f"firehose archive ls: {counted(counts['events'], 'event')} in {url}{note} ({seconds:.1f} s)")


def _elsewhere_hint(prefixes: list[str]) -> str:
    """A window lists the leads right under the URL's prefix; say where the events it passed over are."""
    if not prefixes:
        return ""
    return f"; events are under deeper prefixes, which the window does not select: list {', '.join(prefixes)}"


@archive.command("cat")
@click.argument("url")
@click.argument("targets", nargs=-1)
@click.option("--start", help="Print every event of the leads made at or after this time.")
@click.option("--end", help="... and at or before this time (a bare date means the whole day).")
@click.option("--lead-id", help="The lead id of the EVENT_IDs given (saves a search).")
@click.option("--pretty", is_flag=True, help="Indented JSON instead of one line per event.")
@storage_options
@click.pass_context
def archive_cat(
    ctx: click.Context,
    /,
    url: str,
    targets: tuple[str, ...],
    start: str | None,
    end: str | None,
    lead_id: str | None,
    pretty: bool,
    credential_id: str | None,
    workers: int,
    **storage: Any,
) -> None:
    """Print archived events as NDJSON: by KEY, by EVENT_ID, or every event of a time window's leads.

    An object may hold one event, a JSON array, or NDJSON, gzip-compressed or not: each record is printed.
    An object that cannot be read or parsed is reported with its key and the reason, the rest are still
    printed, and the command exits 5 at the end.

    \b
    Example:
      firehose archive cat s3://lc-archive events/auto/6ae13b5aa55055783f30ae4b/6ae13b5aa55055783f30ae4c.json
      firehose archive cat s3://lc-archive/events/auto 6ae13b5aa55055783f30ae4c --pretty
      firehose archive cat az://lc-archive --start 2026-11-01 --end 2026-11-01 > day.ndjson
    """
    start_seconds, end_seconds = parse_window(start, end)
    settings = storage_settings(ctx, storage)
    out = binary_stdout()
    from firehose import Unreadable, read_archive

    with read_archive(url, settings, targets=targets, start=start_seconds, end=end_seconds, lead_id=lead_id,
                      credential_id=credential_id, workers=workers) as reading:  # fmt: skip
        for record in reading:
            if isinstance(record, Unreadable):
                say(f"firehose: error: {record}", level="error")
            else:
                out.write(json_document(record) if pretty else json_line(record))
        out.flush()
        hint = _elsewhere_hint(reading.elsewhere())
    if hint:
        tell(f"firehose archive cat: {hint.lstrip('; ')}")
    if reading.problems:
        say(f"firehose archive cat: {counted(reading.problems, 'object')} could not be read", level="error")
        ctx.exit(int(ExitCode.ARCHIVE))
