"""``firehose runs`` and ``firehose ledger``: what the state database remembers, without opening SQLite."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from firehose.cli.app import cli, settings_from
from firehose.cli.output import binary_stdout, tell
from firehose.secret import redact_url

if TYPE_CHECKING:
    from firehose.state import RunSummary

FORMATS = click.Choice(["text", "json", "ndjson", "csv"])
RUN_FIELDS = ("run", "started_at", "verify", "repair", "windows", "from", "to", "counts", "repairs")
LEDGER_FIELDS = (
    "event_id", "status", "lead_id", "flow_id", "target", "attempts", "http_status", "original_outcome",
    "new_outcome", "new_lead_id", "reason", "updated_at",
)  # fmt: skip
LEDGER_STATUSES = ("sent", "failed", "unknown", "sending", "skipped")


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
    from firehose.report.rows import RowWriter
    from firehose.state import StateDB

    settings = settings_from(ctx, state_file=state_file)
    widths = {"run": 4, "started_at": 26, "verify": 9, "repair": 6, "windows": 7, "from": 26, "to": 26, "counts": 50}
    with contextlib.ExitStack() as stack:
        # Opened before anything is written: a state database that cannot be read is one error line, no header.
        state = None if _absent(settings.state_file) else stack.enter_context(StateDB(settings.state_file))
        writer = RowWriter(binary_stdout(), fmt, RUN_FIELDS, schema="firehose.runs/1", rows_name="runs",
                           widths=widths)  # fmt: skip
        for run in state.history() if state else ():
            writer.write(_run_row(run, fmt))
        writer.close({})
    if state is None:
        tell(f"firehose runs: no state database at {settings.state_file} yet (a reconcile makes it)")


def _run_row(run: RunSummary, fmt: str) -> dict[str, Any]:
    arguments = run.arguments if isinstance(run.arguments, dict) else {}  # as stored: each value as text
    verify = str(arguments.get("verify", ""))
    if verify == "sample":
        verify = f"sample:{float(arguments.get('sample_percent') or 0):g}"
    shown = dict(sorted(run.counts.items()))
    return {
        "run": run.run_id,
        "started_at": run.started_at,
        "verify": verify,
        "repair": str(arguments.get("repair")) == "True",
        "windows": run.windows,
        "from": run.first_window,
        "to": run.last_window_end,
        "counts": ", ".join(f"{k} {v}" for k, v in shown.items()) if fmt in ("text", "csv") else shown,
        "repairs": run.repairs,
    }


@cli.command()
@click.option("--status", type=click.Choice(LEDGER_STATUSES), help="Only leads with this status.")
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
    from firehose.report.rows import RowWriter
    from firehose.state import ReplayLedger, StateDB

    settings = settings_from(ctx, state_file=state_file)
    widths = {"event_id": 24, "status": 8, "lead_id": 24, "flow_id": 24, "target": 40, "attempts": 8}
    count = 0
    with contextlib.ExitStack() as stack:
        state = None if _absent(settings.state_file) else stack.enter_context(StateDB(settings.state_file))
        writer = RowWriter(binary_stdout(), fmt, LEDGER_FIELDS, schema="firehose.ledger/1", rows_name="leads",
                           widths=widths)  # fmt: skip
        for entry in ReplayLedger(state).entries(status) if state else ():
            row = {name: getattr(entry, name) for name in LEDGER_FIELDS}
            row["target"] = redact_url(entry.target) if entry.target else entry.target
            writer.write(row)
            count += 1
        writer.close({"count": count})  # not "leads": that key holds the rows
    if state is None:
        tell(f"firehose ledger: no state database at {settings.state_file} yet (a replay makes it)")


def _absent(path: Path) -> bool:
    """No database there yet, and nothing in the way of one: a path under a file is the state database's error
    to report, not an empty history."""
    if path.exists():
        return False
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    return folder.is_dir()
