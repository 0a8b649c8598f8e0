"""``firehose reconcile``: the archive against GET /events, and repairs."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from firehose.cli.app import cli, storage_settings
from firehose.cli.options import (
    WritableFile,
    check_slicing,
    findings_format,
    parse_depth,
    parse_time,
    refuse_misplaced,
    shard_options,
    storage_options,
)
from firehose.cli.output import binary_stdout, counted, shown_progress, tell
from firehose.duration import parse_duration
from firehose.report import RowWriter, json_document, lag_lines

log = logging.getLogger("firehose")

if TYPE_CHECKING:
    from firehose import ReconcileOptions, ReconcileResult, Settings, SlicedReport


# A group that is a command too: `firehose reconcile ...` runs, `firehose reconcile merge` merges slices.
@cli.group(invoke_without_command=True, subcommand_metavar="[merge --run-state URL]")
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
@click.option(
    "--inventory",
    "inventories",
    multiple=True,
    metavar="URL",
    help="Read this S3 Inventory manifest.json or Azure Blob Inventory manifest instead of listing its bucket "
    "(repeatable: one per bucket); every missing object is confirmed live first.",
)
@click.option(
    "--state",
    "state_file",
    help="State database (default: $FIREHOSE_STATE, else ~/.local/state/firehose/state.sqlite).",
)
@click.option("--report", "report_file", type=WritableFile(), help="Write the JSON report here.")
@click.option(
    "--include-pii",
    is_flag=True,
    help="Show the archived and API values of each differing field (lead data); by default only field names.",
)
@findings_format
@click.option("--url", help="LeadConduit base URL (default: $LEADCONDUIT_URL, config, https://app.leadconduit.com).")
@shard_options
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
    inventories: tuple[str, ...],
    state_file: str | None,
    report_file: str | None,
    include_pii: bool,
    fmt: str,
    url: str | None,
    credential_id: str | None,
    workers: int,
    shards: int | None,
    shard: int | None,
    shard_from_env: bool,
    run_state: str | None,
    merge: bool,
    executor: str | None,
    api_concurrency: int | None,
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
      firehose reconcile --start 2026-11-01 --end 2026-11-30 --shards 64 --shard-from-env   # one slice of 64
      firehose reconcile merge --run-state s3://audit-bucket/firehose-runs/2026-11   # the slices' one report
      firehose reconcile --inventory s3://inventories/lc-archive/daily/2026-11-20T01-00Z/manifest.json
    """
    # Here, not at the top: a command loads only its own job (every command module is imported at start).
    from firehose import Destination, ReconcileOptions, merge_slices, reconcile_slice
    from firehose import reconcile as run_reconcile

    if ctx.invoked_subcommand is not None:  # `reconcile merge ...`: its options are its own
        refuse_misplaced(ctx)
        return
    sliced = check_slicing(start, end, shards, shard, shard_from_env, merge=merge, executor=executor,
                           run_state=run_state, api_concurrency=api_concurrency)  # fmt: skip
    settings = storage_settings(ctx, storage, url=url, state_file=state_file)
    if merge:
        assert run_state and shards
        merged = merge_slices(run_state, shards, settings, credential_id=credential_id)
        finish_sliced(
            ctx, merged, fmt, report_file, f"firehose reconcile: {counted(shards, 'slice')} merged from {run_state}"
        )
    now = datetime.now(UTC)
    lag_time = parse_duration(lag, "--lag")  # checked even when --end makes it unused: a bad value is never ignored
    mode, percent = parse_depth(verify)
    options = ReconcileOptions(
        start=parse_time(start, "--start") if start else now - timedelta(days=90),
        end=parse_time(end, "--end", end_of_day=True) if end else now - lag_time,
        verify=mode,
        sample_percent=percent,
        repair=repair,
        archive=Destination.from_url(archive_url, credential_id, name="--archive") if archive_url else None,
        workers=workers,
        full=full,
        dry_run=dry_run,
        include_pii=include_pii,
        recheck=parse_duration(recheck, "--recheck"),
        inventory=inventories,
    )
    if sliced:
        options = options.sharded(*sliced)
    within = parse_duration(expiring_within, "--expiring-within")
    if executor:
        assert run_state and shards
        _all_slices(ctx, options, settings, (run_state, shards, executor, api_concurrency, credential_id), fmt,
                    report_file)  # fmt: skip
    with shown_progress("reconcile") as progress:  # bars on a terminal; logs and pipes get the summary alone
        if run_state:
            done = reconcile_slice(options, settings, run_state, credential_id=credential_id,
                                   expiring_within=within, progress=progress)  # fmt: skip
            finish_sliced(ctx, done, fmt, report_file, _slice_note(options, done, run_state))
        result = run_reconcile(
            options, settings, credential_id=credential_id, expiring_within=within, progress=progress, now=now
        )
    _write_findings(result, fmt)
    if report_file:
        Path(report_file).write_bytes(json_document(result.report()))
    _summarise(result, expiring_within)
    ctx.exit(int(result.exit_code))


def _all_slices(
    ctx: click.Context,
    options: ReconcileOptions,
    settings: Settings,
    how: tuple[str, int, str, int | None, str | None],
    fmt: str,
    report_file: str | None,
) -> None:
    """Every slice on the executor, merged."""
    from firehose import parse_executor, reconcile_all_slices

    run_state, shards, executor, api_concurrency, credential_id = how
    workers = parse_executor(executor)
    with shown_progress("reconcile") as progress:
        everything = reconcile_all_slices(options, settings, run_state, shards, workers=workers,
                                          credential_id=credential_id, api_concurrency=api_concurrency,
                                          progress=progress)  # fmt: skip
    finish_sliced(ctx, everything, fmt, report_file, f"firehose reconcile: {counted(shards, 'slice')} run and merged")


def _slice_note(options: ReconcileOptions, done: SlicedReport, run_state: str) -> str:
    index, count = options.shard or (0, 1)
    how = "done before, not checked again" if done.reused else "checkpoint written" if done.recorded else "checked"
    return f"firehose reconcile: slice {index} of {count} ({how}; --run-state {run_state})"


def finish_sliced(ctx: click.Context, result: SlicedReport, fmt: str, report_file: str | None, note: str) -> None:
    """A slice's or a merged report: its findings on stdout, the report file, its counts, its exit code."""
    _write_findings(result, fmt)
    if report_file:
        Path(report_file).write_bytes(json_document(result.report()))
    tell(note)
    tell("  " + ", ".join(f"{name} {number}" for name, number in sorted(result.counts.items())))
    for line in lag_lines(result.document.get("delivery_lag", {})):
        tell(line)
    ctx.exit(int(result.exit_code))


def _write_findings(result: ReconcileResult | SlicedReport, fmt: str) -> None:
    writer = RowWriter(binary_stdout(), fmt, result.fields, schema=result.SCHEMA, rows_name="findings", widths=WIDTHS)
    for row in result.rows():
        writer.write(row)
    writer.close(result.summary())


def _summarise(result: ReconcileResult, expiring_within: str) -> None:
    """The run's summary on stderr."""
    earliest, first_gap = result.earliest_expiry, result.first_gap_expiry
    tell(
        f"firehose reconcile: {len(result.at_risk)} at risk (missing or differing, expiring within "
        f"{expiring_within})"
        + (f", earliest {earliest:%Y-%m-%dT%H:%M:%SZ}" if earliest else "")
        + (f"; the first gap leaves the API at {first_gap:%Y-%m-%dT%H:%M:%SZ}" if first_gap and not earliest else ""),
    )
    if result.forgotten_until is not None:
        tell(
            f"  LeadConduit's API keeps events {result.API_DAYS} days: it no longer holds those made before "
            f"{result.forgotten_until:%Y-%m-%dT%H:%M:%SZ}, so that part of the window was not checked against it",
        )
    tell("  " + ", ".join(f"{name} {number}" for name, number in sorted(result.counts.items())))
    for destination, counts in sorted(result.by_destination.items()):
        tell(f"  {destination}: " + ", ".join(f"{n} {c}" for n, c in sorted(counts.items())))
    for line in lag_lines(result.delivery_lag):
        tell(line)
    options = result.options
    if options.dry_run:
        tell(
            f"  plan (dry run, nothing written): {counted(len(result.outcome.windows), 'window')} from "
            f"{options.start:%Y-%m-%dT%H:%M:%SZ} to {options.end:%Y-%m-%dT%H:%M:%SZ}; requests per destination, "
            "list and head made, get and put to come:",
        )
        for name, kinds in sorted(result.requests.items()):
            tell(f"    {name}: " + ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items())))
        if options.repair:
            tell(f"  would write {counted(result.would_write, 'missing object')} (listed on stdout)")
    if result.resumed_windows:
        tell(
            f"  reused: {counted(result.resumed_windows, 'window')} already done and settled (--full redoes them)",
        )


WIDTHS = {
    "verdict": 12,
    "expires_at": 20,
    "event_id": 24,
    "lead_id": 24,
    "type": 17,
    "destination": 28,
    "key": 40,
    "reason": 30,
}
