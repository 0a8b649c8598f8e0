"""``firehose runs`` and ``firehose ledger``: what the state database remembers, without opening SQLite."""

from __future__ import annotations

from typing import Any

import click

from firehose import History, past_runs, replay_ledger
from firehose.cli.app import cli, settings_from
from firehose.cli.output import binary_stdout, tell
from firehose.report import RowWriter

FORMATS = click.Choice(["text", "json", "ndjson", "csv"])


@cli.command()
@click.option("--state", "state_file", help="State database (default: $FIREHOSE_STATE, else ~/.local/state/firehose).")
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True)
@click.pass_context
def runs(ctx: click.Context, /, state_file: str | None, fmt: str) -> None:
    """List the reconcile and audit runs the state database remembers, most recent first: what each checked,
    its windows, their counts summed, and the repairs it wrote.

    \b
    Example:
      firehose runs
      firehose runs --format json --state /var/lib/firehose/state.sqlite
    """
    settings = settings_from(ctx, state_file=state_file)
    widths = {"run": 4, "started_at": 26, "verify": 9, "repair": 6, "windows": 7, "from": 26, "to": 26, "counts": 50}
    with past_runs(settings) as history:
        writer = RowWriter(binary_stdout(), fmt, History.RUN_FIELDS, schema="firehose.runs/1", rows_name="runs",
                           widths=widths)  # fmt: skip
        for row in history:
            writer.write(_flat(row) if fmt in ("text", "csv") else row)
        writer.close({})
    if not history.exists:
        tell(f"firehose runs: no state database at {settings.state_file} yet (a reconcile makes it)")


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    """A run's counts as one cell, for a table or CSV."""
    return row | {"counts": ", ".join(f"{k} {v}" for k, v in row["counts"].items())}


@cli.command()
@click.option("--status", type=click.Choice(History.LEDGER_STATUSES), help="Only leads with this status.")
@click.option("--state", "state_file", help="State database (default: $FIREHOSE_STATE, else ~/.local/state/firehose).")
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True)
@click.pass_context
def ledger(ctx: click.Context, /, status: str | None, state_file: str | None, fmt: str) -> None:
    """List the replay ledger: each source event replayed, its status (sent, failed, unknown: sent without an
    answer, sending: in flight or stopped), the lead it made, most recently changed first.

    \b
    Example:
      firehose ledger --status unknown
      firehose ledger --format csv > ledger.csv
    """
    settings = settings_from(ctx, state_file=state_file)
    widths = {"event_id": 24, "status": 8, "lead_id": 24, "flow_id": 24, "target": 40, "attempts": 8}
    count = 0
    with replay_ledger(settings, status) as leads:
        writer = RowWriter(binary_stdout(), fmt, History.LEDGER_FIELDS, schema="firehose.ledger/1", rows_name="leads",
                           widths=widths)  # fmt: skip
        for row in leads:
            writer.write(row)
            count += 1
        writer.close({"count": count})  # not "leads": that key holds the rows
    if not leads.exists:
        tell(f"firehose ledger: no state database at {settings.state_file} yet (a replay makes it)")
