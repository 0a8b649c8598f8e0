"""``firehose replay``: send stored inbound requests again, once each."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from firehose.cli.output import binary_stdout, counted, paused, say, shown_progress, tell
from firehose.duration import parse_duration
from firehose.errors import ConfigError
from firehose.progress import NO_PROGRESS, Progress
from firehose.report import RowWriter, diff_lines, json_document, json_line
from firehose.secret import Secret

if TYPE_CHECKING:
    from firehose import LeadResult, ReplayOptions, ReplayResult

TARGETS_SHOWN = 5
"""Target URLs a dry run's summary names, most leads first (the report names them all)."""

WIDTHS = {
    "status": 8, "event_id": 24, "lead_id": 24, "flow_id": 24, "original_outcome": 8, "new_outcome": 8,
    "new_lead_id": 24, "http_status": 4, "attempts": 3,
}  # fmt: skip


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
def replay(ctx: click.Context, /, **flags: Any) -> None:  # 40 flags, each named in its decorator above
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
    from firehose import replay as run_replay  # here, not at the top: a command loads only its own job

    settings = storage_settings(ctx, flags, url=flags["url"], state_file=flags["state_file"])
    options = _options(flags)
    fmt, report_file = flags["fmt"], flags["report_file"]
    rows = _Rows(fmt)
    with contextlib.ExitStack() as stack:
        if flags["ids_file"]:
            options = replace(options, ids=_id_lines(flags["ids_file"]))
        # A bar for the leads sent when their rows go elsewhere: on a terminal, the rows themselves show it.
        shown = not options.dry_run and not sys.stdout.isatty()
        progress = stack.enter_context(shown_progress("replay")) if shown else NO_PROGRESS
        result = run_replay(
            options,
            settings,
            credential_id=flags["credential_id"],
            workers=flags["workers"],
            on_result=rows.write,
            on_diff=lambda diff: _show_diff(diff, fmt),
            notice=lambda text: say(f"firehose replay: {text}"),
            confirm=_asking(progress) if sys.stdin.isatty() else None,
            keep_rows=report_file is not None,
            progress=progress,
        )
    if result.dry_run:
        binary_stdout().flush()
        _summarise_dry_run(result)
    else:
        rows.close({"counts": dict(result.counts), "pairs": dict(result.summary.pairs)})
        _summarise(result)
    if report_file:
        Path(report_file).write_bytes(json_document(result.report()))
        if result.dry_run:
            tell(f"  the plan is in {report_file}")
    ctx.exit(int(result.exit_code))


class _Rows:
    """The leads' rows on stdout, begun at the first one: a run refused before it sends (a lock, a confirmation)
    leaves standard output empty, not half a document."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self.writer: RowWriter | None = None

    def write(self, outcome: LeadResult) -> None:
        self._begun().write(outcome.row())

    def close(self, summary: dict[str, Any]) -> None:
        self._begun().close(summary)

    def _begun(self) -> RowWriter:
        from firehose import ReplayResult

        if self.writer is None:
            self.writer = RowWriter(binary_stdout(), self.fmt, ReplayResult.FIELDS, schema=ReplayResult.SCHEMA,
                                    rows_name="results", widths=WIDTHS)  # fmt: skip
        return self.writer


def _options(flags: dict[str, Any]) -> ReplayOptions:
    """The flags as the library's options; each is checked here or in the options themselves."""
    from firehose import Edits, ReplayOptions, Selection, Target

    selection = Selection(
        start=parse_time(flags["start"], "--start") if flags["start"] else None,
        end=parse_time(flags["end"], "--end", end_of_day=True) if flags["end"] else None,
        flows=_split(flags["flows"]),
        sources=_split(flags["sources"]),
        outcomes=_split(flags["outcomes"]),
        reason=flags["reason"],
        rules=parse_rules(flags["rules_json"]),
    )
    return ReplayOptions(
        target=Target(flags["target_url"], flags["to_flow"], flags["to_source"], base_url=None),
        selection=selection,
        archives=flags["from_urls"],
        from_api=flags["from_api"],
        edits=Edits(parse_assignments(flags["sets"]), flags["unsets"], flags["mark_test"]),
        source_key=_source_key(flags["source_api_key_env"]),
        **{name: flags[name] for name in PASSED_AS_IS},
        rate=parse_rate(flags["rate"]),
        timeout_seconds=flags["timeout"],
        settle_after_seconds=parse_duration(flags["settle_after"], "--settle-after").total_seconds(),
        ledger=flags["ledger_url"],
        confirm_over=None if flags["yes"] else flags["confirm_over"],
        dead_letter=Path(flags["dead_letter"]),
    )


PASSED_AS_IS = (
    "force",
    "retry_unknown",
    "max_count",
    "concurrency",
    "keep_query_credentials",
    "include_pii",
    "dry_run",
    "max_attempts",
    "follow_redirects",
)
"""Flags whose value is the option's, under the same name."""


def _split(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(part.strip() for value in values for part in value.split(",") if part.strip())


def _source_key(variable: str | None) -> Secret | None:
    if not variable:
        return None
    value = os.environ.get(variable)
    if not value:
        raise ConfigError(f"--source-api-key-env {variable}: that environment variable is not set")
    return Secret(value)


def _id_lines(ids_file: str) -> Iterable[str] | Path:
    if ids_file != "-":
        return Path(ids_file)  # read as the replay goes
    # Bytes that are not UTF-8 become U+FFFD: that line is reported as no id, the others go on.
    if isinstance(sys.stdin, io.TextIOWrapper):
        sys.stdin.reconfigure(errors="replace")
    return sys.stdin


def _asking(progress: Progress) -> Callable[[int], bool]:
    def ask(count: int) -> bool:
        with paused(progress):
            question = f"Send {counted(count, 'lead')}, each creating a new lead in LeadConduit?"
            click.confirm(question, abort=True, err=True)
        return True

    return ask


def _show_diff(diff: dict[str, Any], fmt: str) -> None:
    out = binary_stdout()
    if fmt == "text":
        out.write(("\n".join(diff_lines(diff)) + "\n").encode())
    else:
        out.write(json_line(diff))


def _summarise_dry_run(result: ReplayResult) -> None:
    tell(
        f"firehose replay (dry run, nothing sent): would send {counted(result.planned, 'lead')} to "
        f"{counted(len(result.to), 'URL')}; {result.differ} differ from the original request; "
        f"{result.skipped} skipped"
        + (f"; {result.left_over} more left for a later run (--max)" if result.left_over else ""),
    )
    shown = result.to.most_common(TARGETS_SHOWN)
    for address, count in shown:  # one line each: a long URL list was one line the width of a screen
        tell(f"  {counted(count, 'lead')} to {address}")
    if len(result.to) > len(shown):
        tell(f"  and {counted(len(result.to) - len(shown), 'other URL')} (the report lists them)")
    for skipped in result.skipped_rows[:20]:
        tell(f"  skipped {skipped.event_id}: {skipped.reason}")


def _summarise(result: ReplayResult) -> None:
    counts, options = result.counts, result.options
    statuses = type(result).STATUSES
    tell(
        "firehose replay: "
        + ", ".join(f"{counts.get(s, 0)} {s}" for s in statuses)
        + "".join(f"; {n} {pair}" for pair, n in result.summary.pairs.most_common()),
    )
    if result.planned:
        sending = result.seconds.get("sending", 0.0)
        per_second = result.planned / max(sending, 1e-9)
        tell(
            f"  {result.planned} requests handed over in {sending:.1f} s ({per_second:.1f}/s), "
            f"after {result.seconds.get('selecting', 0.0):.1f} s selecting",
        )
    if result.left_over:
        tell(f"  {result.left_over} more selected, left for a later run (--max {options.max_count})")
    if result.dead_letters:
        say(f"  permanent failures appended to {options.dead_letter} (replay them with --ids {options.dead_letter})")
    if result.pruned:
        they = "it" if result.pruned == 1 else "they"
        tell(f"  {counted(result.pruned, 'lead')} sent since {they} failed, taken out of {options.dead_letter}")
