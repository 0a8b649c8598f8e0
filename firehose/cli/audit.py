"""``firehose audit pack`` and ``audit verify``: evidence packs (and bare ``audit``, the old way to make one)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from firehose.cli.app import cli, storage_settings
from firehose.cli.options import (
    check_slicing,
    parse_depth,
    parse_time,
    refuse_misplaced,
    slice_options,
    storage_options,
)
from firehose.cli.output import binary_stdout, counted, shown_progress, tell
from firehose.duration import days_of
from firehose.errors import UsageError
from firehose.report import json_document

log = logging.getLogger("firehose")


def _pack_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options that make a pack: ``audit pack``'s, and the bare ``audit``'s (hidden there)."""
    options = [
        click.option("--start", help="First day of the period (ISO 8601; UTC)."),
        click.option("--end", help="Last day of the period (a bare date means the whole day)."),
        click.option("--out", "out_dir", type=click.Path(file_okay=False), help="A new folder for the pack."),
        click.option("--require-retention", help="Judge retention settings against this, e.g. 7y, 18mo, 400d."),
        click.option(
            "--signing-key",
            type=click.Path(dir_okay=False),
            help="Ed25519 private key (PEM) to sign with; made if absent (default: <out>.signing-key.pem beside "
            "the pack).",
        ),
        click.option(
            "--verify",
            "depth",
            default="presence",
            show_default=True,
            help="How coverage is checked: presence, content (finds differing objects) or sample:P.",
        ),
        click.option("--archive", "archive_url", help="Audit this store URL instead of each event's own destinations."),
        click.option(
            "--include-pii", is_flag=True, help="Keep the differing values of differing events in findings.ndjson."
        ),
        click.option(
            "--state", "state_file", help="State database (its repairs are counted; default as for reconcile)."
        ),
        click.option(
            "--url", help="LeadConduit base URL (default: $LEADCONDUIT_URL, config, https://app.leadconduit.com)."
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return storage_options(slice_options(command))


@cli.group(invoke_without_command=True, no_args_is_help=True, subcommand_metavar="COMMAND [ARGS]...")
@_pack_options
@click.pass_context
def audit(ctx: click.Context, /, **given: Any) -> None:
    """Evidence packs for auditors: make one for a period (`audit pack`, or in slices merged by `audit merge`),
    re-check one later (`audit verify`).

    \b
    Example:
      firehose audit pack --start 2026-10-01 --end 2026-10-31 --out evidence-2026-10 --require-retention 7y
      firehose audit verify evidence-2026-10
    """
    if ctx.invoked_subcommand is not None:
        refuse_misplaced(ctx)
        return
    # `firehose audit --start ...` made a pack before `audit pack` did: kept (hidden) for the cron jobs that run it.
    tell("firehose audit: making a pack this way is kept for old scripts; use `firehose audit pack` (same options)")
    _make_pack(ctx, **given)


for _param in audit.params:  # the bare form's options: not in its help (`audit pack --help` shows them)
    if isinstance(_param, click.Option) and _param.name not in ("verbose", "quiet"):
        _param.hidden = True


@audit.command("pack")
@_pack_options
@click.pass_context
def audit_pack(ctx: click.Context, /, **given: Any) -> None:
    """Write an evidence pack for a period: coverage calendar, hash manifest, retention findings, signed.

    The pack (a new folder) holds coverage.csv/.json (per day and destination: events the API reports,
    archived, missing, differing, repaired, archive-only), manifest.ndjson (SHA-256 of every archived event
    object), retention.json (each destination's settings judged PASS/FAIL/UNKNOWN against
    --require-retention), summary.json, report.html, and SHA256SUMS signed with Ed25519. No lead data unless
    --include-pii. Exit 0 when nothing is missing or differs and no retention check fails, 1 otherwise.
    Check a pack later with `firehose audit verify DIR`. With --shards N --shard I --run-state URL it checks one
    slice of the period and keeps its part there (`audit merge` makes the pack); with --executor, every slice.

    \b
    Example:
      firehose audit pack --start 2026-10-01 --end 2026-10-31 --out evidence-2026-10 --require-retention 7y
      firehose audit pack --start 2026-10-01 --end 2026-10-31 --shards 64 --executor local:4 \\
        --run-state s3://audit-bucket/firehose-audits/2026-10 --out evidence-2026-10
      firehose audit verify evidence-2026-10
    """
    _make_pack(ctx, **given)


def _make_pack(
    ctx: click.Context,
    /,
    start: str | None,
    end: str | None,
    out_dir: str | None,
    require_retention: str | None,
    signing_key: str | None,
    depth: str,
    archive_url: str | None,
    include_pii: bool,
    state_file: str | None,
    url: str | None,
    credential_id: str | None,
    workers: int,
    shards: int | None,
    shard: int | None,
    shard_from_env: bool,
    run_state: str | None,
    executor: str | None,
    api_concurrency: int | None,
    **storage: Any,
) -> None:
    sliced = check_slicing(start, end, shards, shard, shard_from_env, merge=False, executor=executor,
                           run_state=run_state, api_concurrency=api_concurrency)  # fmt: skip
    _check_slice_outputs(sliced, run_state, out_dir, signing_key)
    for flag, value in (("--start", start), ("--end", end), ("--out", out_dir or sliced)):
        if not value:  # a slice needs no --out: its part goes to --run-state
            raise UsageError(f"audit needs {flag} (or use `firehose audit verify DIR`)")
    assert start and end
    mode, percent = parse_depth(depth)
    from firehose import AuditOptions, Destination  # here, not at the top: a command loads only its own job
    from firehose import audit as run_audit

    options = AuditOptions(
        start=parse_time(start, "--start"),
        end=parse_time(end, "--end", end_of_day=True),
        out=Path(out_dir) if out_dir else None,
        signing_key=Path(signing_key) if signing_key else None,
        required_days=days_of(require_retention, "--require-retention") if require_retention else None,
        verify=mode,
        sample_percent=percent,
        archive=Destination.from_url(archive_url, credential_id, name="--archive") if archive_url else None,
        include_pii=include_pii,
        workers=workers,
    )
    settings = storage_settings(ctx, storage, url=url, state_file=state_file)
    if sliced:
        assert run_state
        _one_slice(ctx, options.sharded(*sliced), settings, run_state, credential_id)
    started = time.monotonic()
    with shown_progress("audit", notes=True) as progress:
        if executor:
            from firehose import audit_all_slices, parse_executor

            assert run_state and shards
            result = audit_all_slices(options, settings, run_state, shards, workers=parse_executor(executor),
                                      credential_id=credential_id, api_concurrency=api_concurrency,
                                      progress=progress)  # fmt: skip
        else:
            result = run_audit(options, settings, credential_id=credential_id, progress=progress)
    _tell_pack(ctx, result, time.monotonic() - started)


def _check_slice_outputs(
    sliced: tuple[int, int] | None, run_state: str | None, out_dir: str | None, signing_key: str | None
) -> None:
    """A slice's part goes to --run-state, never to a pack of its own: `audit merge` makes the pack."""
    if not sliced:
        return
    if not run_state:
        raise UsageError("audit --shards needs --run-state URL: a slice's part of the pack is kept there")
    for flag, value in (("--out", out_dir), ("--signing-key", signing_key)):
        if value:
            raise UsageError(f"{flag}: a slice writes its part to --run-state; `firehose audit merge` writes the pack")


def _one_slice(ctx: click.Context, options: Any, settings: Any, run_state: str, credential_id: str | None) -> None:
    """One slice of a sliced audit, checkpointed in the run state."""
    from firehose import audit_slice

    with shown_progress("audit", notes=True) as progress:
        done = audit_slice(options, settings, run_state, credential_id=credential_id, progress=progress)
    index, count = options.shard
    how = "done before, not checked again" if done.reused else "checkpoint written" if done.recorded else "checked"
    summary = done.report()
    tell(
        f"firehose audit: slice {index} of {count} ({how}; --run-state {run_state}): coverage "
        f"{summary['coverage_verdict']}, {counted(summary['manifest']['objects'], 'object')} hashed"
    )
    tell("  " + ", ".join(f"{name} {number}" for name, number in sorted(done.counts.items())))
    ctx.exit(int(done.exit_code))


def _tell_pack(ctx: click.Context, result: Any, seconds: float) -> None:
    """A written pack's summary on stderr, and its exit code."""
    summary = result.summary
    size = sum(path.stat().st_size for path in result.out.iterdir())
    tell(
        f"firehose audit: pack written to {result.out} in {seconds:.1f} s ({size:,} bytes): "
        f"coverage {summary['coverage_verdict']}, retention {summary['retention_verdict'] or 'not judged'}; "
        f"{counted(summary['manifest']['objects'], 'object')} hashed",
    )
    for name, value in sorted(summary["coverage"].items()):
        tell(f"  {name}: {value}")
    if result.key_created:
        tell(
            f"  signing key made at {result.key_created} (keep it private; its public half is in the pack, "
            f"SHA-256 {summary['signing_key_sha256']})",
        )
    ctx.exit(int(result.exit_code))


@audit.command("merge")
@click.option("--run-state", required=True, help="Where the slices' checkpoints are (s3://, az://, file://).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="A new folder for the pack.")
@click.option(
    "--signing-key",
    type=click.Path(dir_okay=False),
    help="Ed25519 private key (PEM) to sign with; made if absent (default: <out>.signing-key.pem beside the pack).",
)
@click.option("--shards", type=click.IntRange(min=1), help="How many slices (default: as their checkpoints say).")
@storage_options
@click.pass_context
def audit_merge(
    ctx: click.Context,
    /,
    run_state: str,
    out_dir: str,
    signing_key: str | None,
    shards: int | None,
    credential_id: str | None,
    workers: int,
    **storage: Any,
) -> None:
    """Make the one evidence pack of a sliced audit's checkpoints (`audit pack --shards N --shard I --run-state`).

    The pack is the one `audit pack` makes of the whole period in one process: the same coverage, findings,
    manifest and retention files; summary.json says when it was made and how many slices it merged. Refused,
    naming them, while a slice has no checkpoint. Exit codes as for `audit pack`.

    \b
    Example:
      firehose audit pack --start 2026-10-01 --end 2026-10-31 --shards 64 --shard-from-env --run-state s3://b/runs/2026-10
      firehose audit merge --run-state s3://b/runs/2026-10 --out evidence-2026-10
    """
    settings = storage_settings(ctx, storage)
    from firehose import merge_audit

    started = time.monotonic()
    result = merge_audit(run_state, settings, out=Path(out_dir), signing_key=Path(signing_key) if signing_key else None,
                         shards=shards, credential_id=credential_id)  # fmt: skip
    tell(f"firehose audit merge: {counted(result.summary['shards'], 'slice')} merged from {run_state}")
    _tell_pack(ctx, result, time.monotonic() - started)


@audit.command("verify")
@click.argument("pack", type=click.Path(file_okay=False, exists=True))
@click.option(
    "--public-key",
    type=click.Path(dir_okay=False, exists=True),
    help="The signer's public key (PEM) you trust; without it the pack's own key is used (its SHA-256 is shown).",
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@storage_options
@click.pass_context
def audit_verify(
    ctx: click.Context,
    /,
    pack: str,
    public_key: str | None,
    fmt: str,
    credential_id: str | None,
    workers: int,
    **storage: Any,
) -> None:
    """Re-check an evidence pack: its signature, every file's hash, and every archived object it lists.

    Needs no LeadConduit access, only the stores (credentials as for every command). Reports each object that
    is gone or changed since the pack was made. Exit 0 when all holds, 1 otherwise.

    \b
    Example:
      firehose audit verify evidence-2026-10 --public-key auditor-trusted.pub.pem
    """
    settings = storage_settings(ctx, storage)
    from firehose import verify_pack

    trusted = Path(public_key) if public_key else None  # checked by verify_pack before any object is read
    with shown_progress("audit verify") as progress:
        result = verify_pack(
            Path(pack), settings, trusted_key=trusted, credential_id=credential_id, workers=workers, progress=progress
        )
    if fmt == "json":
        out = binary_stdout()
        out.write(json_document(result.report()))
        out.flush()
    else:
        for problem in result.pack_problems:
            click.echo(f"pack: {problem}")
        for item in result.changed:
            click.echo(f"{item['status']}: {item['url']} (event {item['event_id']}): {item['reason']}")
    tell(
        f"firehose audit verify: signature {'valid' if result.signature_ok else 'INVALID'} (key SHA-256 "
        f"{result.key_sha256[:16]}…), {len(result.pack_problems)} pack problems, {counted(result.objects, 'object')} "
        f"checked, {len(result.changed)} gone or changed",
    )
    ctx.exit(int(result.exit_code))
