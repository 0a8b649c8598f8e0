"""``firehose locate``: where an event's archived objects are."""

from __future__ import annotations

import logging
from typing import Any

import click

from firehose.cli.app import cli, storage_settings
from firehose.cli.options import (
    storage_options,
)
from firehose.cli.output import binary_stdout
from firehose.connections import api_client, archive_destination, destination_opener

log = logging.getLogger("firehose")


@cli.command()
@click.argument("event_id")
@click.option("--url", help="LeadConduit base URL (default: $LEADCONDUIT_URL, config, https://app.leadconduit.com).")
@click.option("--archive", "archive_url", help="Look here instead of the event's own destinations (other layouts).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@storage_options
@click.pass_context
def locate(
    ctx: click.Context,
    /,
    event_id: str,
    url: str | None,
    archive_url: str | None,
    fmt: str,
    credential_id: str | None,
    workers: int,
    **storage: Any,
) -> None:
    """Fetch EVENT_ID from LeadConduit and check each of its firehose destinations for its object.

    Reports, per destination (legacy bucket, or services.aws / services.azure), the key and whether it is there
    (size, etag, last modified). Disabled destinations are listed as such. Exits 1 if an enabled destination
    lacks the event, 3 if a credential_id has no mapping in the config, 5 if a store fails.

    \b
    Example:
      firehose locate 6ae13b5ba55055783f30ae50
      firehose locate 6ae13b5ba55055783f30ae50 --archive s3://restored-bucket/events --format json
    """
    from firehose.api import LeadConduit
    from firehose.locate import exit_code
    from firehose.locate import locate as locate_event
    from firehose.report.rows import RowWriter

    settings = storage_settings(ctx, storage, url=url)
    with api_client(settings) as http:
        event = LeadConduit(http).get_event(event_id)

    open_for = destination_opener(settings, credential_id)

    override = archive_destination(archive_url, credential_id)
    locations = locate_event(event, open_for, destinations=[override] if override else None)
    fields = (
        ("status", "url", "size", "etag", "last_modified", "error")
        if fmt == "text"
        else ("status", "service", "bucket", "key", "url", "credential_id", "size", "etag", "last_modified", "error")
    )
    writer = RowWriter(
        binary_stdout(),
        fmt,
        fields,
        schema="firehose.locate/1",
        rows_name="destinations",
        widths={"status": 8, "url": 70, "size": 7, "etag": 34, "last_modified": 20},
        meta={"event_id": event_id},
    )
    for location in locations:
        writer.write(location.as_row())
    code = exit_code(locations)
    writer.close({"exit_code": int(code)})
    if not locations:
        click.echo(f"firehose locate: event {event_id} has no firehose destinations", err=True)
    ctx.exit(int(code))
