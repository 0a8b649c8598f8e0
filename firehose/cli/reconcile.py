"""``firehose reconcile``: the archive against GET /events, and repairs."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from firehose.cli.app import cli, settings_from
from firehose.cli.options import (
    WritableFile,
    parse_depth,
    parse_time,
    storage_options,
)
from firehose.cli.output import binary_stdout
from firehose.connections import api_client, archive_destination, destination_opener
from firehose.duration import parse_duration
from firehose.errors import ExitCode

log = logging.getLogger("firehose")


FINDING_FIELDS = ("verdict", "expires_at", "event_id", "lead_id", "type", "destination", "key", "reason", "fields")


@cli.command()
@click.option("--start", help="Events created at or after this time (default: 90 days ago, all the API holds).")
@click.option("--end", help="Events created at or before this time (default: now minus --lag).")
@click.option("--lag", default="15min", show_default=True, help="Leave recent events alone: the firehose retries late.")
@click.option(
    "--verify",
    default="presence",
    show_default=True,
    help="presence (listings only), content (read every object) or sample:P (a fixed P% of objects).",
)
@click.option("--repair", is_flag=True, help="Write missing events to their destinations (never overwrites).")
@click.option("--full", is_flag=True, help="Re-examine every window, even those an earlier run settled.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="List and classify only: print the plan (windows, requests per destination, what would be "
    "written) and write nothing.",
)
@click.option(
    "--recheck",
    default="1d",
    show_default=True,
    help="Windows checked less than this long after their end are examined again next run.",
)
@click.option("--expiring-within", default="7d", show_default=True, help="A gap expiring this soon is at risk.")
@click.option("--archive", "archive_url", help="Check this store URL instead of each event's own destinations.")
@click.option("--state", "state_file", help="State database (default: $FIREHOSE_STATE or ~/.local/state/firehose).")
@click.option("--report", "report_file", type=WritableFile(), help="Write the JSON report here.")
@click.option(
    "--include-pii",
    is_flag=True,
    help="Show the archived and API values of each differing field (lead data); by default only field names.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "ndjson", "csv"]),
    default="text",
    show_default=True,
    help="How the findings that are not match go to stdout.",
)
@click.option("--url", help="LeadConduit base URL (default: $LEADCONDUIT_URL, config, https://app.leadconduit.com).")
@storage_options
@click.pass_context
def reconcile(
    ctx: click.Context,
    /,
    start: str | None,
    end: str | None,
    lag: str,
    verify: str,
    repair: bool,
    full: bool,
    dry_run: bool,
    recheck: str,
    expiring_within: str,
    archive_url: str | None,
    state_file: str | None,
    report_file: str | None,
    include_pii: bool,
    fmt: str,
    url: str | None,
    credential_id: str | None,
    workers: int,
    **storage: Any,
) -> None:
    """Check that every event LeadConduit still holds is in its firehose archive, and repair the gaps.

    Each (event, destination) pair is match, missing, differ, archive_only or error; events whose firehose is
    off are not_configured. Gaps are ranked by expires_at. Finished windows are kept in a state database: the
    same command after an interruption resumes where it stopped. Exit 0 when nothing is missing or differs
    (after --repair), 1 when something is, 5 when a store could not be checked.

    \b
    Example:
      firehose reconcile --start 2026-11-01 --end 2026-11-07 --report report.json
      firehose reconcile --repair --verify sample:5
    """
    from firehose.api import LeadConduit
    from firehose.config import state_path
    from firehose.reconcile import GAPS, Verdict, at_risk, by_expiry
    from firehose.reconciler import KEPT, ReconcileOptions, Reconciler
    from firehose.report import RowWriter
    from firehose.state import RunLock, StateDB

    settings = settings_from(
        ctx, url=url, **{name: storage.get(name) for name in ("endpoint_url", "region", "profile", "account_url")}
    )
    now = datetime.now(UTC)
    lag_time = parse_duration(lag, "--lag")  # checked even when --end makes it unused: a bad value is never ignored
    finish = parse_time(end, "--end", end_of_day=True) if end else now - lag_time
    begin = parse_time(start, "--start") if start else now - timedelta(days=90)
    mode, percent = parse_depth(verify)
    override = archive_destination(archive_url, credential_id)
    options = ReconcileOptions(
        start=begin,
        end=finish,
        verify=mode,
        sample_percent=percent,
        repair=repair,
        archive=override,
        workers=workers,
        full=full,
        dry_run=dry_run,
        include_pii=include_pii,
        recheck=parse_duration(recheck, "--recheck"),
    )
    within = parse_duration(expiring_within, "--expiring-within")

    open_for = destination_opener(settings, credential_id)

    client = api_client(settings)
    database = state_path(state_file, os.environ)
    with (
        # One reconcile (or audit) at a time per state database, refused at once naming who holds it; a dry run
        # writes no windows and takes no lock.
        contextlib.nullcontext() if dry_run else RunLock(database, "reconcile", "firehose reconcile"),
        client as http,
        StateDB(database) as state,
    ):

        def progress(done: int, total: int, day: datetime) -> None:
            # A progress line on a terminal only; logs and pipes get the summary alone.
            click.echo(f"\rfirehose reconcile: window {done}/{total} ({day:%Y-%m-%d})", err=True, nl=done == total)

        reporter = progress if sys.stderr.isatty() else None
        outcome = Reconciler(LeadConduit(http), open_for, state, options, progress=reporter).run()
        findings = (
            outcome.planned
            if dry_run
            else [f for f in state.findings(outcome.run_id, outcome.windows) if f.verdict in KEPT]
        )
        if dry_run:
            findings = by_expiry(findings) + [f for f in findings if f.verdict not in GAPS]

    risky = [f for f in findings if at_risk(f, now=now, within=within)]
    rows = [
        {
            **{name: getattr(f, name) for name in FINDING_FIELDS if name not in ("verdict", "fields")},
            "verdict": f.verdict.value,
            "fields": ",".join(f.fields),
            **({"values": f.values} if include_pii else {}),
        }
        for f in findings
    ]
    columns = FINDING_FIELDS + (("values",) if include_pii else ())
    writer = RowWriter(
        binary_stdout(),
        fmt,
        columns,
        schema="firehose.reconcile/1",
        rows_name="findings",
        widths={
            "verdict": 12,
            "expires_at": 20,
            "event_id": 24,
            "lead_id": 24,
            "type": 17,
            "destination": 28,
            "key": 40,
            "reason": 30,
        },
    )
    for row in rows:
        writer.write(row)
    earliest = min((f.expires_at for f in risky if f.expires_at), default=None)
    summary: dict[str, Any] = {"counts": dict(outcome.counts), "at_risk": len(risky), "earliest_expiry": earliest}
    writer.close(summary)
    if report_file:
        from firehose.codec import encode_pretty

        report = {
            "schema": "firehose.reconcile/1",
            "window": {"start": begin.isoformat(), "end": finish.isoformat()},
            "verify": verify,
            "repair": repair,
            **summary,
            "earliest_expiry": earliest.isoformat() if earliest else None,
            "by_destination": {d: dict(c) for d, c in outcome.by_destination.items()},
            "by_day": {d: dict(c) for d, c in sorted(outcome.by_day.items())},
            "requests": {name: dict(kinds) for name, kinds in sorted(outcome.requests.items())},
            "resumed_windows": outcome.resumed_windows,
            "findings": [
                {**row, "expires_at": row["expires_at"].isoformat() if row["expires_at"] else None} for row in rows
            ],
        }
        Path(report_file).write_bytes(encode_pretty(report))
    gaps = sum(outcome.counts.get(v.value, 0) for v in GAPS)
    errors = outcome.counts.get(Verdict.ERROR.value, 0)
    click.echo(
        f"firehose reconcile: {len(risky)} at risk (missing or differing, expiring within {expiring_within})"
        + (f", earliest {earliest:%Y-%m-%dT%H:%M:%SZ}" if earliest else ""),
        err=True,
    )
    click.echo("  " + ", ".join(f"{name} {number}" for name, number in sorted(outcome.counts.items())), err=True)
    for destination, counts in sorted(outcome.by_destination.items()):
        click.echo(f"  {destination}: " + ", ".join(f"{n} {c}" for n, c in sorted(counts.items())), err=True)
    if dry_run:
        windows = len(outcome.windows)
        click.echo(
            f"  plan (dry run, nothing written): {windows} windows from {begin:%Y-%m-%dT%H:%M:%SZ} to "
            f"{finish:%Y-%m-%dT%H:%M:%SZ}; requests per destination, list and head made, get and put to come:",
            err=True,
        )
        for name, kinds in sorted(outcome.requests.items()):
            click.echo(
                f"    {name}: " + ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items())), err=True
            )
        if repair:
            click.echo(
                f"  would write {sum(1 for f in findings if f.verdict == Verdict.MISSING)} missing objects "
                "(listed on stdout)",
                err=True,
            )
    if outcome.resumed_windows:
        click.echo(
            f"  reused: {outcome.resumed_windows} windows were already done and settled (--full redoes them)", err=True
        )
    ctx.exit(int(ExitCode.ARCHIVE if errors else ExitCode.DIFFERENCES if gaps else ExitCode.OK))
