"""``firehose reconcile merge``: the one report of a sliced reconcile's checkpoints, as the issue spells it; the
same library call (``merge_slices``) and output as ``reconcile --shards N --merge --run-state URL``."""

from __future__ import annotations

from typing import Any

import click

from firehose.cli.app import storage_settings
from firehose.cli.options import WritableFile, findings_format, storage_options
from firehose.cli.output import counted
from firehose.cli.reconcile import finish_sliced, reconcile


@reconcile.command("merge")
@click.option("--run-state", required=True, help="Where the slices' checkpoints are (s3://, az://, file://).")
@click.option("--shards", type=click.IntRange(min=1), help="How many slices (default: as their checkpoints say).")
@click.option("--report", "report_file", type=WritableFile(), help="Write the JSON report here.")
@findings_format
@storage_options
@click.pass_context
def reconcile_merge(
    ctx: click.Context,
    /,
    run_state: str,
    shards: int | None,
    report_file: str | None,
    fmt: str,
    credential_id: str | None,
    workers: int,
    **storage: Any,
) -> None:
    """Write the one report of a sliced reconcile (`reconcile --shards N --shard I --run-state URL`).

    The same counts, per destination and day, and the same findings in the same order as one run over the whole
    window, with its exit code. Refused (exit 2), naming them, while a slice has no checkpoint.

    \b
    Example:
      firehose reconcile merge --run-state s3://audit-bucket/firehose-runs/2026-11 --report report.json
    """
    from firehose import merge_slices

    settings = storage_settings(ctx, storage)
    merged = merge_slices(run_state, shards, settings, credential_id=credential_id)
    count = merged.report()["shards"]
    finish_sliced(
        ctx, merged, fmt, report_file, f"firehose reconcile: {counted(count, 'slice')} merged from {run_state}"
    )
