"""``firehose replay``: send stored inbound requests again, once each."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, BinaryIO

import click

from firehose.cli.app import cli, storage_settings
from firehose.cli.options import (
    FiniteFloat,
    WritableFile,
    parse_assignments,
    parse_rate,
    parse_rules,
    parse_time,
    storage_options,
)
from firehose.cli.output import binary_stdout, counted, tell
from firehose.connections import api_client, open_url
from firehose.duration import parse_duration
from firehose.errors import ConfigError, ExitCode, FirehoseError, UsageError
from firehose.secret import redact_url

log = logging.getLogger("firehose")


TARGETS_SHOWN = 5
"""Target URLs a dry run's summary names, most leads first (the report names them all)."""

REPLAY_FIELDS = (
    "status",
    "event_id",
    "lead_id",
    "flow_id",
    "original_outcome",
    "new_outcome",
    "new_lead_id",
    "http_status",
    "attempts",
    "reason",
)


@cli.command()
@click.option("--from", "from_urls", multiple=True, help="Read source events from this archive URL (repeatable).")
@click.option("--from-api", is_flag=True, help="Read source events from GET /events (the default without --from).")
@click.option(
    "--ids",
    "ids_file",
    type=click.Path(exists=True, dir_okay=False, readable=True, allow_dash=True),
    help="Only these events: one id per line, or NDJSON (a dead-letter file works as is).",
)
@click.option("--start", help="Source events created at or after this time.")
@click.option("--end", help="... and at or before this time (a bare date means the whole day).")
@click.option("--flow", "flows", multiple=True, help="Only this flow id (repeatable, or comma-separated).")
@click.option("--source", "sources", multiple=True, help="Only this source id (repeatable, or comma-separated).")
@click.option("--outcome", "outcomes", multiple=True, help="Only these original outcomes, e.g. error,failure.")
@click.option("--reason", help="Only events whose reason matches this regular expression.")
@click.option("--rules", "rules_json", help="Only events these LeadConduit rules (a JSON array) hold for.")
@click.option("--target", "target_url", help="Send here instead of the original URI (its query kept if none given).")
@click.option("--to-flow", help="Send to this flow on the original host.")
@click.option("--to-source", help="... and this source.")
@click.option(
    "--source-api-key-env",
    help="Environment variable holding an API key for sources that require authentication (sent as Basic auth).",
)
@click.option("--set", "sets", multiple=True, help="Set a body field before sending: FIELD=VALUE (repeatable).")
@click.option("--unset", "unsets", multiple=True, help="Remove a body field before sending (repeatable).")
@click.option("--mark-test", is_flag=True, help="Set is_test=true, LeadConduit's test-lead field.")
@click.option(
    "--dry-run", is_flag=True, help="Show, for each event, what would be sent against the original; send nothing."
)
@click.option("--include-pii", is_flag=True, help="Show lead data in diffs (redacted by default).")
@click.option("--concurrency", type=click.IntRange(1, 256), default=4, show_default=True, help="Requests in flight.")
@click.option(
    "--rate", help="At most this many requests per second, evenly spaced, e.g. 50/s or 600/m (default: no limit)."
)
@click.option("--max-attempts", type=click.IntRange(1, 50), default=5, show_default=True, help="Tries per lead.")
@click.option(
    "--timeout",
    type=FiniteFloat(0, 3600, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds for each attempt to send and get its whole answer.",
)
@click.option("--retry-unknown", is_flag=True, help="Also retry (and re-send) requests that got no answer.")
@click.option(
    "--settle-after",
    default="5min",
    show_default=True,
    help="A lead in doubt that LeadConduit shows no lead for after this long is settled as not received.",
)
@click.option("--follow-redirects", is_flag=True, help="Follow a 307/308 to the same host, keeping method and body.")
@click.option(
    "--keep-query-credentials",
    is_flag=True,
    help="Send credential-looking query parameters (api_key=, token=, ...) of stored URIs; dropped by default.",
)
@click.option(
    "--ledger",
    "ledger_url",
    help="Also claim each lead in this store (s3://, az://, file://): one ledger for replays on several machines.",
)
@click.option("--force", is_flag=True, help="Send events the ledger says were already sent.")
@click.option("--max", "max_count", type=click.IntRange(min=1), help="Send at most this many leads this run.")
@click.option(
    "--confirm-over", type=click.IntRange(min=0), default=100, show_default=True, help="Ask first above this."
)
@click.option("--yes", is_flag=True, help="Do not ask before sending many leads.")
@click.option(
    "--dead-letter",
    type=WritableFile(),
    default="replay-dead-letter.ndjson",
    show_default=True,
    help="Where permanent failures go (NDJSON with each event; give it back to --ids).",
)
@click.option("--state", "state_file", help="State database with the ledger (default: as for reconcile).")
@click.option("--report", "report_file", type=WritableFile(), help="Write the JSON report here.")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json", "ndjson", "csv"]), default="text", show_default=True
)
@click.option("--url", help="LeadConduit base URL (default: $LEADCONDUIT_URL, config, https://app.leadconduit.com).")
@storage_options
@click.pass_context
def replay(  # noqa: C901  # its loops move into the library next (issue 12), as reconcile's and audit's did
    ctx: click.Context,
    /,
    from_urls: tuple[str, ...],
    from_api: bool,
    ids_file: str | None,
    start: str | None,
    end: str | None,
    flows: tuple[str, ...],
    sources: tuple[str, ...],
    outcomes: tuple[str, ...],
    reason: str | None,
    rules_json: str | None,
    target_url: str | None,
    to_flow: str | None,
    to_source: str | None,
    source_api_key_env: str | None,
    sets: tuple[str, ...],
    unsets: tuple[str, ...],
    mark_test: bool,
    dry_run: bool,
    include_pii: bool,
    concurrency: int,
    rate: str | None,
    max_attempts: int,
    timeout: float,
    retry_unknown: bool,
    settle_after: str,
    follow_redirects: bool,
    keep_query_credentials: bool,
    ledger_url: str | None,
    force: bool,
    max_count: int | None,
    confirm_over: int,
    yes: bool,
    dead_letter: str,
    state_file: str | None,
    report_file: str | None,
    fmt: str,
    url: str | None,
    credential_id: str | None,
    workers: int,
    **storage: Any,
) -> None:
    """Send the stored inbound requests of source events to a flow again, once each.

    Each request is rebuilt from the event's request (method, body byte for byte, Content-Type, query string;
    no hop-by-hop or credential headers). A ledger in the state database records every lead sent: a second
    run posts nothing already sent (--force to override). Use --dry-run first: it shows, per event, what
    would be sent against the original. Exit 0 when every lead was sent and accepted, 1 when any failed or
    got no answer (unknown: it may have been taken; not re-sent unless --retry-unknown).

    \b
    Example:
      firehose replay --from-api --start 2026-11-20 --end 2026-11-20 --outcome error --dry-run
      firehose replay --from s3://lc-archive/events --outcome error --to-flow F --to-source S --rate 10/s
    """
    from firehose import replay as replaying
    from firehose.api import LeadConduit
    from firehose.claims import StoreLedger
    from firehose.codec import encode_line, encode_pretty
    from firehose.http import RetryPolicy, Sender
    from firehose.report import RowWriter
    from firehose.secret import Secret
    from firehose.state import ReplayLedger, RunLock, StateDB

    settings = storage_settings(ctx, storage, url=url, state_file=state_file)

    def split(values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(part.strip() for value in values for part in value.split(",") if part.strip())

    rules = parse_rules(rules_json)
    if ledger_url:  # checked in a dry run too, which does not use it: a bad value is never ignored
        from firehose.archive import StoreUrl

        StoreUrl.parse(ledger_url, "--ledger")
    selection = replaying.Selection(
        start=parse_time(start, "--start") if start else None,
        end=parse_time(end, "--end", end_of_day=True) if end else None,
        flows=split(flows),
        sources=split(sources),
        outcomes=split(outcomes),
        reason=reason,
        rules=rules,
    )
    source_key = None
    if source_api_key_env:
        value = os.environ.get(source_api_key_env)
        if not value:
            raise ConfigError(f"--source-api-key-env {source_api_key_env}: that environment variable is not set")
        source_key = Secret(value)
    options = replaying.ReplayOptions(
        target=replaying.Target(target_url, to_flow, to_source, base_url=settings.api.url),
        edits=replaying.Edits(parse_assignments(sets), tuple(unsets), mark_test),
        source_key=source_key,
        force=force,
        retry_unknown=retry_unknown,
        max_count=max_count,
        concurrency=concurrency,
        keep_query_credentials=keep_query_credentials,
        include_pii=include_pii,
    )
    grace = parse_duration(settle_after, "--settle-after").total_seconds()
    target_label = (
        redact_url(target_url)
        if target_url
        else f"LeadConduit at {redact_url(settings.api.url)}"
        + (f", flow {to_flow} source {to_source}" if to_flow else ", each event's own flow and source")
    )
    limiter = replaying.RateLimiter(per_second) if (per_second := parse_rate(rate)) else None
    # Every value is checked before anything is read or claimed: a bad one never leaves a lead in doubt.
    sender = Sender(
        concurrency=concurrency,
        timeout_seconds=timeout,
        retry=RetryPolicy(max_attempts=max_attempts, backoff_max_seconds=30.0),
        retry_unknown=retry_unknown,
        follow_redirects=follow_redirects,
        before_attempt=limiter,
    )
    problems = replaying.Problems()
    use_api = from_api or not from_urls
    # The settler asks LeadConduit what became of a lead in doubt: only when the replay goes to that LeadConduit.
    settling = not dry_run and options.target.named == replaying.Target(base_url=settings.api.url).named

    with contextlib.ExitStack() as stack:
        stack.enter_context(sender)
        leads_api = None
        if use_api or (ids_file and not from_urls) or (settling and settings.api.api_key):
            leads_api = LeadConduit(stack.enter_context(api_client(settings)))
        stores = []
        for from_url in from_urls:
            store, where = open_url(from_url, settings, credential_id, "--from")
            stack.callback(store.close)
            stores.append((store, where))

        ids = None
        if ids_file:
            # Bytes that are not UTF-8 become U+FFFD: that line is reported as no id, the others go on.
            if ids_file == "-" and isinstance(sys.stdin, io.TextIOWrapper):
                sys.stdin.reconfigure(errors="replace")
            ids = sys.stdin if ids_file == "-" else stack.enter_context(Path(ids_file).open(errors="replace"))
        archives = [(store, where.prefix) for store, where in stores]
        source = replaying.Sources(leads_api if use_api or ids else None, archives, workers=workers)
        selected = source.select(selection, problems, ids=ids)

        database = settings.state_file
        if not dry_run:  # one sending run per state database; a second one is told, not kept waiting
            stack.enter_context(RunLock(database))
        state = stack.enter_context(StateDB(database))
        ledger = ReplayLedger(state)
        shared = None
        if ledger_url and not dry_run:
            ledger_store, ledger_where = open_url(ledger_url, settings, credential_id, "--ledger")
            stack.callback(ledger_store.close)
            if ledger_where.scheme == "file":
                ledger_store.create()  # a folder of our own; a bucket or container is never made by firehose
            shared = StoreLedger(ledger_store, ledger_where.prefix, options.run_id)
            shared.check()
        settler = None
        if settling and leads_api is not None:
            settler = replaying.Settler(
                leads_api,
                settings.api.url,
                grace_seconds=grace,
                known_leads=ledger.made_by_replay(),
            )
            for entry, outcome in replaying.settle_ledger(ledger, settler):
                state_word = "is still in doubt" if outcome.status == "unknown" else "was in doubt"
                click.echo(f"firehose replay: event {entry.event_id} {state_word}: {outcome.reason}", err=True)
        began, cpu = time.monotonic(), time.process_time()
        plan = replaying.plan(selected, ledger, options)
        selecting, selecting_cpu = time.monotonic() - began, time.process_time() - cpu
        stack.callback(plan.close)
        for place, why in problems.items:
            click.echo(f"firehose replay: {place}: {why}", err=True)
        summary = replaying.Summary()
        out = binary_stdout()
        targets: Counter[str] = Counter()

        if dry_run:
            differs = 0
            planned: list[dict[str, Any]] = []
            for event in plan.events():
                try:
                    prepared = options.prepare(event)
                except FirehoseError as exc:
                    click.echo(f"firehose replay: {exc}", err=True)
                    problems.add(str(event.get("id")), str(exc))
                    continue
                diff = replaying.request_diff(prepared, include_pii=include_pii, edits=options.edits)
                differs += bool(diff["differs"])
                targets[diff["url"]["to"].split("?")[0]] += 1
                if report_file:  # the plan is the dry run's report: one small row per lead, no body
                    planned.append({name: diff[name] for name in ("event_id", "lead_id", "flow_id", "differs")}
                                   | {"status": "would send", "url": diff["url"]["to"]})  # fmt: skip
                if fmt == "text":
                    out.write(("\n".join(replaying.diff_lines(diff)) + "\n").encode())
                else:
                    out.write(encode_line(diff))
            out.flush()
            tell(
                f"firehose replay (dry run, nothing sent): would send {counted(plan.count, 'lead')} to "
                f"{counted(len(targets), 'URL')}; {differs} differ from the original request; "
                f"{len(plan.skipped)} skipped"
                + (f"; {plan.left_over} more left for a later run (--max)" if plan.left_over else ""),
            )
            shown = targets.most_common(TARGETS_SHOWN)
            for address, count in shown:  # one line each: a long URL list was one line the width of a screen
                tell(f"  {counted(count, 'lead')} to {address}")
            if len(targets) > len(shown):
                tell(f"  and {counted(len(targets) - len(shown), 'other URL')} (the report lists them)")
            for row in plan.skipped[:20]:
                tell(f"  skipped {row.event_id}: {row.reason}")
            if report_file:
                skipped = [{name: getattr(r, name) for name in REPLAY_FIELDS} for r in plan.skipped]
                Path(report_file).write_bytes(
                    encode_pretty(
                        {
                            "schema": "firehose.replay/1",
                            "dry_run": True,
                            "target": target_label,
                            "would_send": plan.count,
                            "differ": differs,
                            "skipped": len(plan.skipped),
                            "left_over": plan.left_over,
                            "to": dict(targets.most_common()),
                            "problems": [{"where": w, "reason": r} for w, r in problems.items],
                            "results": planned + skipped,
                        }
                    )
                )
                tell(f"  the plan is in {report_file}")
            ctx.exit(int(ExitCode.ARCHIVE if problems.items else ExitCode.OK))

        if plan.count > confirm_over and not yes:
            if not sys.stdin.isatty():
                raise UsageError(
                    f"this would send {counted(plan.count, 'lead')} (over --confirm-over {confirm_over}); "
                    "add --yes, or --max N"
                )
            click.confirm(
                f"Send {counted(plan.count, 'lead')}, each creating a new lead in LeadConduit?", abort=True, err=True
            )

        writer = RowWriter(
            out,
            fmt,
            REPLAY_FIELDS,
            schema="firehose.replay/1",
            rows_name="results",
            widths={"status": 8, "event_id": 24, "lead_id": 24, "flow_id": 24, "original_outcome": 8},
        )
        results: list[replaying.Result] = []
        letters = None

        def dead(result: replaying.Result, event: Any) -> None:
            nonlocal letters
            if letters is None:
                letters = stack.enter_context(_private_append(Path(dead_letter)))
            letters.write(
                encode_line(
                    {
                        "event_id": result.event_id,
                        "status": result.status,
                        "http_status": result.http_status,
                        "attempts": result.attempts,
                        "reason": result.reason,
                        "event": replaying.redacted_event(event),
                    }
                )
            )
            letters.flush()

        def record(result: replaying.Result) -> None:
            summary.add(result)
            writer.write({name: getattr(result, name) for name in REPLAY_FIELDS})
            if report_file:
                results.append(result)

        for row in plan.skipped:
            record(row)
        began, cpu = time.monotonic(), time.process_time()
        replaying.send(
            plan, ledger, sender, options, dead_letter=dead, on_result=record, shared=shared, settler=settler
        )
        sending, sending_cpu = time.monotonic() - began, time.process_time() - cpu
        writer.close({"counts": dict(summary.statuses), "pairs": dict(summary.pairs)})
        if letters is not None:
            letters.close()  # this run's failures are in the file before it is pruned
        pruned = 0
        if settling:  # only a replay into the LeadConduit the settings name delivers what failed
            try:
                pruned = replaying.prune_dead_letters(Path(dead_letter), ledger, settings.api.url)
            except OSError as exc:  # the leads are sent and on the ledger: the report still goes out
                click.echo(f"firehose replay: {dead_letter} not pruned of the leads sent: {exc.strerror}", err=True)

    if report_file:
        Path(report_file).write_bytes(
            encode_pretty(
                {
                    "schema": "firehose.replay/1",
                    "target": target_label,
                    "counts": dict(summary.statuses),
                    "pairs": dict(summary.pairs),
                    "by_flow": {flow: dict(counts) for flow, counts in sorted(summary.by_flow.items())},
                    "seconds": {
                        "selecting": round(selecting, 3),
                        "sending": round(sending, 3),
                        "selecting_cpu": round(selecting_cpu, 3),
                        "sending_cpu": round(sending_cpu, 3),
                    },
                    "results": [{name: getattr(r, name) for name in REPLAY_FIELDS} for r in results],
                }
            )
        )
    counts = summary.statuses
    tell(
        "firehose replay: "
        + ", ".join(f"{counts.get(s, 0)} {s}" for s in replaying.STATUSES)
        + "".join(f"; {n} {pair}" for pair, n in summary.pairs.most_common()),
    )
    if plan.count:
        tell(
            f"  {plan.count} requests handed over in {sending:.1f} s ({plan.count / max(sending, 1e-9):.1f}/s), "
            f"after {selecting:.1f} s selecting",
        )
    if plan.left_over:
        tell(f"  {plan.left_over} more selected, left for a later run (--max {max_count})")
    if letters is not None:
        click.echo(f"  permanent failures appended to {dead_letter} (replay them with --ids {dead_letter})", err=True)
    if pruned:
        tell(f"  {counted(pruned, 'lead')} sent since it failed, taken out of {dead_letter}")
    failed = counts.get("failed", 0) + counts.get("unknown", 0)
    code = ExitCode.DIFFERENCES if failed else ExitCode.ARCHIVE if problems.items else ExitCode.OK
    ctx.exit(int(code))


def _private_append(path: Path) -> BinaryIO:
    """A file opened for appending that only its owner may read (0600, also when it existed): dead letters hold
    lead data."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.fchmod(descriptor, 0o600)
    except OSError as exc:
        raise ConfigError(f"--dead-letter {path}: cannot write it ({exc.strerror})") from exc
    return os.fdopen(descriptor, "ab")
