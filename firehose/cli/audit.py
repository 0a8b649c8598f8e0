"""``firehose audit`` and ``audit verify``: evidence packs."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import click

from firehose.cli.app import cli, settings_from, storage_settings
from firehose.cli.options import (
    parse_depth,
    parse_time,
    storage_options,
)
from firehose.cli.output import binary_stdout
from firehose.connections import api_client, archive_destination, destination_opener
from firehose.errors import DataError, ExitCode, UsageError

log = logging.getLogger("firehose")


@cli.group(invoke_without_command=True)
@click.option("--start", help="First day of the period (ISO 8601; UTC).")
@click.option("--end", help="Last day of the period (a bare date means the whole day).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="A new folder for the pack.")
@click.option("--require-retention", help="Judge retention settings against this, e.g. 7y, 18mo, 400d.")
@click.option(
    "--signing-key",
    type=click.Path(dir_okay=False),
    help="Ed25519 private key (PEM) to sign with; made if absent (default: <out>.signing-key.pem beside the pack).",
)
@click.option(
    "--verify",
    "depth",
    default="presence",
    show_default=True,
    help="How coverage is checked: presence, content (finds differing objects) or sample:P.",
)
@click.option("--archive", "archive_url", help="Audit this store URL instead of each event's own destinations.")
@click.option("--include-pii", is_flag=True, help="Keep the differing values of differing events in findings.ndjson.")
@click.option("--state", "state_file", help="State database (its repairs are counted; default as for reconcile).")
@click.option("--url", help="LeadConduit base URL (default: $LEADCONDUIT_URL, config, https://app.leadconduit.com).")
@storage_options
@click.pass_context
def audit(
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
    **storage: Any,
) -> None:
    """Write an evidence pack for a period: coverage calendar, hash manifest, retention findings, signed.

    The pack (a new folder) holds coverage.csv/.json (per day and destination: events the API reports,
    archived, missing, differing, repaired, archive-only), manifest.ndjson (SHA-256 of every archived event
    object), retention.json (each destination's settings judged PASS/FAIL/UNKNOWN against
    --require-retention), summary.json, report.html, and SHA256SUMS signed with Ed25519. No lead data unless
    --include-pii. Exit 0 when nothing is missing or differs and no retention check fails, 1 otherwise.
    Check a pack later with `firehose audit verify DIR`.

    \b
    Example:
      firehose audit --start 2026-10-01 --end 2026-10-31 --out evidence-2026-10 --require-retention 7y
      firehose audit verify evidence-2026-10
    """
    if ctx.invoked_subcommand is not None:
        return
    from firehose import audit as auditing
    from firehose.api import LeadConduit
    from firehose.config import state_path
    from firehose.reconciler import KEPT, ReconcileOptions, Reconciler
    from firehose.retention import parse_retention
    from firehose.state import RunLock, StateDB

    for flag, value in (("--start", start), ("--end", end), ("--out", out_dir)):
        if not value:
            raise UsageError(f"audit needs {flag} (or use `firehose audit verify DIR`)")
    assert start and end and out_dir
    begin, finish = parse_time(start, "--start"), parse_time(end, "--end", end_of_day=True)
    required = parse_retention(require_retention) if require_retention else None
    mode, percent = parse_depth(depth)
    out = Path(out_dir)
    key_file = Path(signing_key) if signing_key else out.with_name(out.name + ".signing-key.pem")
    auditing.check_outputs(out, key_file)  # before the long coverage run, not after it
    settings = settings_from(
        ctx, url=url, **{name: storage.get(name) for name in ("endpoint_url", "region", "profile", "account_url")}
    )
    override = archive_destination(archive_url, credential_id)
    options = ReconcileOptions(
        start=begin,
        end=finish,
        verify=mode,
        sample_percent=percent,
        archive=override,
        workers=workers,
        full=True,
        include_pii=include_pii,
    )
    open_for = destination_opener(settings, credential_id)
    client = api_client(settings)
    started = time.monotonic()
    database = state_path(state_file, os.environ)
    with (
        RunLock(database, "reconcile", "firehose audit"),  # its coverage is a reconcile run, in the same tables
        client as http,
        StateDB(database) as state,
    ):
        click.echo("firehose audit: checking coverage against the API", err=True)
        outcome = Reconciler(LeadConduit(http), open_for, state, options).run()
        findings = [
            {
                "verdict": f.verdict.value,
                "event_id": f.event_id,
                "lead_id": f.lead_id,
                "type": f.type,
                "destination": f.destination,
                "key": f.key,
                "expires_at": f.expires_at.isoformat() if f.expires_at else None,
                "reason": f.reason,
                "fields": list(f.fields),
                **({"values": f.values} if include_pii and f.values is not None else {}),
            }
            for f in state.findings(outcome.run_id, outcome.windows)
            if f.verdict in KEPT
        ]
        repaired_before = state.repaired(begin, finish)
    destinations = [override] if override else sorted(outcome.destinations.values(), key=lambda d: d.url())
    result = auditing.write_pack(
        out,
        start=begin,
        end=finish,
        outcome=outcome,
        repaired_before=repaired_before,
        findings=findings,
        open_store=open_for,
        destinations=destinations,
        required_days=required,
        verify=depth,
        signing_key=key_file,
        workers=workers,
        progress=lambda text: click.echo(f"firehose audit: {text}", err=True),
        older_leads=outcome.older_leads,
    )
    summary = result.summary
    size = sum(path.stat().st_size for path in out.iterdir())
    click.echo(
        f"firehose audit: pack written to {out} in {time.monotonic() - started:.1f} s ({size:,} bytes): "
        f"coverage {summary['coverage_verdict']}, retention {summary['retention_verdict'] or 'not judged'}; "
        f"{summary['manifest']['objects']} objects hashed",
        err=True,
    )
    for name, value in sorted(summary["coverage"].items()):
        click.echo(f"  {name}: {value}", err=True)
    if result.key_created:
        click.echo(
            f"  signing key made at {result.key_created} (keep it private; its public half is in the pack, "
            f"SHA-256 {summary['signing_key_sha256']})",
            err=True,
        )
    failed = summary["coverage_verdict"] == "FAIL" or summary["retention_verdict"] == "FAIL"
    ctx.exit(int(ExitCode.DIFFERENCES if failed else ExitCode.OK))


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
    from firehose import audit as auditing
    from firehose.codec import encode_pretty

    settings = storage_settings(ctx, storage)
    trusted = None
    if public_key:
        from firehose.signing import fingerprint

        trusted = Path(public_key).read_bytes()
        try:
            fingerprint(trusted)  # the key the user trusts must be one, before any object is read
        except DataError:
            raise UsageError(f"--public-key {public_key}: not a PEM Ed25519 public key") from None
    result = auditing.verify_pack(
        Path(pack), destination_opener(settings, credential_id), trusted_key=trusted, workers=workers
    )
    if fmt == "json":
        out = binary_stdout()
        out.write(
            encode_pretty(
                {
                    "schema": "firehose.audit-verify/1",
                    "ok": result.ok,
                    "signature_ok": result.signature_ok,
                    "signing_key_sha256": result.key_sha256,
                    "pack_problems": result.pack_problems,
                    "objects": result.objects,
                    "changed": result.changed,
                }
            )
        )
        out.flush()
    else:
        for problem in result.pack_problems:
            click.echo(f"pack: {problem}")
        for item in result.changed:
            click.echo(f"{item['status']}: {item['url']} (event {item['event_id']}): {item['reason']}")
    click.echo(
        f"firehose audit verify: signature {'valid' if result.signature_ok else 'INVALID'} (key SHA-256 "
        f"{result.key_sha256[:16]}…), {len(result.pack_problems)} pack problems, {result.objects} objects "
        f"checked, {len(result.changed)} gone or changed",
        err=True,
    )
    ctx.exit(int(ExitCode.OK if result.ok else ExitCode.DIFFERENCES))
