"""``firehose archive ls|cat``: list and read an archive by URL."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import click

from firehose.cli.app import cli, storage_settings
from firehose.cli.options import (
    parse_window,
    storage_options,
)
from firehose.cli.output import binary_stdout, counted, tell
from firehose.connections import open_url
from firehose.errors import DataError, ExitCode, UsageError

if TYPE_CHECKING:
    from firehose.archive import Store

log = logging.getLogger("firehose")


@cli.group()
def archive() -> None:
    """Read a firehose archive: S3 (s3://bucket/prefix), Azure Blob (az://container/prefix) or a directory
    (file:///dir), laid out as <prefix>/<lead id>/<event id>.json.

    \b
    Example:
      firehose archive ls s3://my-bucket/events --start 2026-11-01 --end 2026-11-01
      firehose archive cat s3://my-bucket/events 6ae13b5ba55055783f30ae50
    """


LS_FIELDS = ("time", "lead_id", "event_id", "size", "etag", "last_modified", "key")
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
    from firehose.archive.layout import ArchivedEvent
    from firehose.archive.listing import ArchiveListing
    from firehose.report.rows import RowWriter

    start_seconds, end_seconds = parse_window(start, end)
    settings = storage_settings(ctx, storage)
    started = time.monotonic()
    store, where = open_url(url, settings, credential_id)
    listing = ArchiveListing(
        store,
        where.prefix,
        start_seconds=start_seconds,
        end_seconds=end_seconds,
        workers=workers,
        include_other=show_all,
    )
    meta = {"url": url, "start": start, "end": end}
    writer = RowWriter(
        binary_stdout(),
        fmt,
        LS_FIELDS,
        schema="firehose.archive-ls/1",
        rows_name="objects",
        widths=LS_WIDTHS,
        meta=meta,
    )
    try:
        for item in listing:
            if isinstance(item, ArchivedEvent):
                writer.write(
                    {
                        "time": item.time,
                        "lead_id": item.lead_id,
                        "event_id": item.event_id,
                        "size": item.size,
                        "etag": item.etag,
                        "last_modified": item.last_modified,
                        "key": item.key,
                    }
                )
            else:
                writer.write(
                    {"size": item.size, "etag": item.etag, "last_modified": item.last_modified, "key": item.key}
                )
    finally:
        store.close()
    counts = {"events": listing.events, "verification_files": listing.verification, "other_keys": listing.other}
    writer.close(counts)
    note = f"; {listing.verification} verification files skipped" if listing.verification else ""
    if listing.other:
        note += f"; {listing.other} keys outside the layout" + ("" if show_all else " not listed (--all shows them)")
    note += _elsewhere_hint(listing, url)
    tell(
        f"firehose archive ls: {counted(listing.events, 'event')} in {url}{note} ({time.monotonic() - started:.1f} s)",
    )


def _elsewhere_hint(listing: Any, url: str) -> str:
    """A window lists the leads right under the URL's prefix; say where the events it passed over are (and,
    when it found none at all, where events are)."""
    if not listing.events and not listing.elsewhere:
        listing.look_elsewhere()
    if not listing.elsewhere:
        return ""
    where = ", ".join(f"{url.rstrip('/')}/{prefix.rstrip('/')}" for prefix in listing.elsewhere_prefixes)
    return f"; events are under deeper prefixes, which the window does not select: list {where}"


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
    from firehose.archive.layout import ArchivedEvent
    from firehose.archive.listing import ArchiveListing
    from firehose.ids import is_object_id

    if not targets and not (start or end):
        raise UsageError("give KEYs or EVENT_IDs, or --start/--end for a window")
    if lead_id is not None and not is_object_id(lead_id):
        raise UsageError(f"--lead-id {lead_id!r} is not a 24-hex-digit lead id")
    start_seconds, end_seconds = parse_window(start, end)
    settings = storage_settings(ctx, storage)
    store, where = open_url(url, settings, credential_id)
    try:
        keys, problems = _keys_named(store, where.prefix, targets, url=url, lead_id=lead_id, workers=workers)
        selected: Iterable[str] = keys
        listing = None
        if start or end:
            listing = ArchiveListing(
                store, where.prefix, start_seconds=start_seconds, end_seconds=end_seconds, workers=workers
            )
            selected = (item.key for item in listing if isinstance(item, ArchivedEvent))
        problems += _print_records(store, selected, pretty=pretty, workers=workers)
    finally:
        store.close()
    hint = _elsewhere_hint(listing, url) if listing is not None else ""
    if hint:
        tell(f"firehose archive cat: {hint.lstrip('; ')}")
    if problems:
        click.echo(f"firehose archive cat: {counted(problems, 'object')} could not be read", err=True)
        ctx.exit(int(ExitCode.ARCHIVE))


def _keys_named(
    store: Store, prefix: str, targets: tuple[str, ...], *, url: str, lead_id: str | None, workers: int
) -> tuple[list[str], int]:
    """The keys KEY and EVENT_ID arguments name (a key whole or relative to the URL's prefix; an event id found
    by a search), and how many named nothing (each one reported)."""
    from firehose.archive.layout import folder
    from firehose.archive.listing import find_event_keys
    from firehose.ids import is_object_id

    keys: list[str] = []
    problems = 0
    for target in targets:
        if is_object_id(target):
            found = find_event_keys(store, prefix, target.lower(), lead_id=lead_id, workers=workers)
            if not found:
                click.echo(f"firehose: error: event {target} not found under {url}", err=True)
                problems += 1
            keys.extend(found[:1])
        else:
            keys.append(target if target.startswith(prefix) else folder(prefix) + target)
    return keys, problems


def _print_records(store: Store, keys: Iterable[str], *, pretty: bool, workers: int) -> int:
    """Every record of every object on stdout, read ``workers`` at a time; how many objects could not be read
    (each one reported, the others still printed)."""
    from firehose.archive.listing import read_many
    from firehose.codec import encode_line, encode_pretty, iter_records
    from firehose.errors import ArchiveError

    out = binary_stdout()
    problems = 0
    for key, body in read_many(store, keys, workers=workers):
        try:
            if isinstance(body, Exception):
                raise body
            for record in iter_records(body, where=f"{store.url}/{key}"):  # one at a time: memory
                out.write(encode_pretty(record) if pretty else encode_line(record))
        except (DataError, ArchiveError) as exc:  # a missing, refused or unreadable key: the next one too
            click.echo(f"firehose: error: {exc}", err=True)
            problems += 1
    out.flush()
    return problems
