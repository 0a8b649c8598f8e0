"""``firehose locate``: where events' archived objects are."""

from __future__ import annotations

from typing import Any

import click

from firehose.cli.app import cli, storage_settings
from firehose.cli.options import storage_options
from firehose.cli.output import binary_stdout, say


@cli.command()
@click.argument("event_ids", metavar="EVENT_ID...", nargs=-1, required=True)
@click.option("--url", help="LeadConduit base URL (default: $LEADCONDUIT_URL, config, https://app.leadconduit.com).")
@click.option("--archive", "archive_url", help="Look here instead of the event's own destinations (other layouts).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@storage_options
@click.pass_context
def locate(
    ctx: click.Context,
    /,
    event_ids: tuple[str, ...],
    url: str | None,
    archive_url: str | None,
    fmt: str,
    credential_id: str | None,
    workers: int,
    **storage: Any,
) -> None:
    """Fetch each EVENT_ID from LeadConduit and check each of its firehose destinations for its object.

    Reports, per destination (legacy bucket, or services.aws / services.azure), the key and whether it is there
    (size, etag, last modified). Disabled destinations are listed as such. Exits 1 if an enabled destination
    lacks the event, 3 if a credential_id has no mapping in the config, 5 if a store fails.

    \b
    Example:
      firehose locate 6ae13b5ba55055783f30ae50
      firehose locate 6ae13b5ba55055783f30ae50 --archive s3://restored-bucket/events --format json
    """
    from firehose import locate as locate_events
    from firehose.report import RowWriter, json_compact

    settings = storage_settings(ctx, storage, url=url)
    result = locate_events(event_ids, settings, archive=archive_url, credential_id=credential_id)
    out = binary_stdout()
    if fmt == "json":
        out.write(json_compact(result.report()) + b"\n")
        out.flush()
    else:
        fields = ("status", "url", "size", "etag", "last_modified", "error")
        widths = {"status": 8, "url": 70, "size": 7, "etag": 34, "last_modified": 20}
        writer = RowWriter(out, fmt, fields, schema="firehose.locate/1", widths=widths)
        for row in result.rows():
            writer.write(row)
        writer.close()
    for event_id in result.without_destinations:
        say(f"firehose locate: event {event_id} has no firehose destinations")
    ctx.exit(int(result.exit_code))
