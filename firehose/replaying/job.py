"""A replay as one library call: ``replay(options, settings)`` checks every option, opens the sources, the state
database (its ledger) and a shared ledger as the settings say, plans, asks for confirmation above
``confirm_over``, sends (or, for a dry run, diffs), keeps the dead letters, and returns a ``ReplayResult`` that
holds what a report says and the exit code. The command line and a Python caller get the same report from it.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from firehose.archive.base import IN_FLIGHT
from firehose.config import Settings
from firehose.connections import api_client, open_url
from firehose.errors import ExitCode, FirehoseError, UsageError
from firehose.http import RetryPolicy, Sender
from firehose.progress import NO_PROGRESS, Progress
from firehose.replaying.dead_letters import DeadLetters, prune_dead_letters, writable
from firehose.replaying.diff import request_diff
from firehose.replaying.plan import LEAD_FIELDS, STATUSES, LeadResult, Plan, ReplayOptions, Summary, plan
from firehose.replaying.request import origin
from firehose.replaying.selection import Problems, Sources
from firehose.replaying.send import RateLimiter, send
from firehose.replaying.settle import Settler, settle_ledger
from firehose.secret import redact_url

if TYPE_CHECKING:
    from firehose.claims import StoreLedger

SCHEMA = "firehose.replay/1"
"""The versioned report schema (architecture.md §6): a field is added, never renamed or removed, within /1."""


Notice = Callable[[str], None]
"""Where a run says what the operator should know as it happens (a lead still in doubt, an unusable object)."""


@dataclass
class ReplayResult:
    """What one replay did (or, for a dry run, would do), and what it means.

    ``planned`` leads were handed to the sender (a dry run's: would be sent); ``summary`` counts every lead's
    status, outcome pair and flow; ``rows`` are the report's rows (kept only when asked: a large replay's memory
    stays flat without them). A dry run also counts the requests that ``differ`` from the original and the
    leads per target URL (``to``)."""

    options: ReplayOptions
    target: str
    """Where the leads went, as people read it (credentials hidden)."""
    planned: int = 0
    skipped: int = 0
    skipped_rows: list[LeadResult] = field(default_factory=list, repr=False)
    """The leads the plan left out, each with why (a dry run's summary names some)."""
    left_over: int = 0
    """Selected, but past ``max_count``: left for a later run."""
    summary: Summary = field(default_factory=Summary)
    differ: int = 0
    to: Counter[str] = field(default_factory=Counter)
    problems: list[tuple[str, str]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list, repr=False)  # lead data: not in a log line
    seconds: dict[str, float] = field(default_factory=dict)
    dead_letters: int = 0
    """Leads this run appended to the dead-letter file."""
    pruned: int = 0
    """Leads taken out of the dead-letter file because they have been sent since they failed."""

    SCHEMA = SCHEMA
    FIELDS = LEAD_FIELDS
    STATUSES = STATUSES

    @property
    def dry_run(self) -> bool:
        return self.options.dry_run

    @property
    def counts(self) -> Counter[str]:
        return self.summary.statuses

    @property
    def exit_code(self) -> ExitCode:
        """1 when a lead failed or got no answer (it may have been taken), else 5 when a source event or object
        could not be used, else 0."""
        if self.counts.get("failed", 0) + self.counts.get("unknown", 0) and not self.dry_run:
            return ExitCode.DIFFERENCES
        return ExitCode.ARCHIVE if self.problems else ExitCode.OK

    def report(self) -> dict[str, Any]:
        """The run as the versioned report (``firehose.replay/1``), ready for JSON."""
        problems = [{"where": where, "reason": reason} for where, reason in self.problems]
        if self.dry_run:
            return {
                "schema": SCHEMA,
                "dry_run": True,
                "target": self.target,
                "would_send": self.planned,
                "differ": self.differ,
                "skipped": self.skipped,
                "left_over": self.left_over,
                "to": dict(self.to.most_common()),
                "problems": problems,
                "results": self.rows,
            }
        return {
            "schema": SCHEMA,
            "target": self.target,
            "counts": dict(self.counts),
            "pairs": dict(self.summary.pairs),
            "by_flow": {flow: dict(counts) for flow, counts in sorted(self.summary.by_flow.items())},
            "seconds": {name: round(value, 3) for name, value in self.seconds.items()},
            "problems": problems,
            "results": self.rows,
        }


def replay(
    options: ReplayOptions,
    settings: Settings,
    *,
    credential_id: str | None = None,
    workers: int = IN_FLIGHT,
    on_result: Callable[[LeadResult], None] = lambda _: None,
    on_diff: Callable[[dict[str, Any]], None] = lambda _: None,
    notice: Notice = lambda _: None,
    confirm: Callable[[int], bool] | None = None,
    keep_rows: bool = True,
    progress: Progress = NO_PROGRESS,
) -> ReplayResult:
    """Replay the source events ``options`` selects, each lead once (the ledger in ``settings.state_file``).

    ``on_result(result)`` gets each lead's row as it is settled (skipped ones first), ``on_diff(diff)`` each dry
    run diff. Above ``options.confirm_over`` leads, ``confirm(count)`` is asked first; without it, the run is
    refused (a ``UsageError`` naming ``--yes`` and ``--max``). ``keep_rows``: keep every row for ``report()``.
    ``progress`` is told each lead sent (task ``sending leads``, out of the plan's count), after the confirmation.
    Every option is checked before anything is read or claimed: a bad one never leaves a lead in doubt.
    """
    if options.target.base_url is None:
        options = replace(options, target=replace(options.target, base_url=settings.api.url))
    if not options.dry_run:
        writable(options.dead_letter)  # before any claim: a failure with nowhere to go would stop the run midway
    if options.ledger:  # checked in a dry run too, which does not use it: a bad value is never ignored
        from firehose.archive import StoreUrl

        StoreUrl.parse(options.ledger, "--ledger")
    limiter = RateLimiter(options.rate) if options.rate is not None else None
    sender = Sender(
        concurrency=options.concurrency,
        timeout_seconds=options.timeout_seconds,
        retry=RetryPolicy(max_attempts=options.max_attempts, backoff_max_seconds=30.0),
        retry_unknown=options.retry_unknown,
        follow_redirects=options.follow_redirects,
        before_attempt=limiter,
    )
    result = ReplayResult(options, _target_label(options))
    with contextlib.ExitStack() as stack:
        stack.enter_context(sender)
        run = _Run(options, settings, stack, result, credential_id, workers, notice)
        began, cpu = time.monotonic(), time.process_time()
        to_send = run.plan()
        result.seconds |= {"selecting": time.monotonic() - began, "selecting_cpu": time.process_time() - cpu}
        if options.dry_run:
            _dry_run(to_send, result, on_diff, notice, keep_rows)
            return result
        _confirmed(to_send.count, options.confirm_over, confirm)
        run.send(to_send, sender, on_result, keep_rows, progress)
    return result


def _confirmed(count: int, over: int | None, confirm: Callable[[int], bool] | None) -> None:
    """A replay's confirmation: above ``over`` leads, each of which makes a new lead in LeadConduit (fees,
    deliveries), someone says yes first; a run nobody can ask (cron, a pipe) is refused instead."""
    if over is None or count <= over:
        return
    if confirm is None:
        raise UsageError(f"this would send {_leads(count)} (over --confirm-over {over}); add --yes, or --max N")
    if not confirm(count):
        raise UsageError(f"not sent: sending {_leads(count)} was not confirmed")


def _leads(count: int) -> str:
    return f"{count} lead" if count == 1 else f"{count} leads"


def _target_label(options: ReplayOptions) -> str:
    target = options.target
    if target.url:
        return redact_url(target.url)
    where = f", flow {target.flow_id} source {target.source_id}" if target.flow_id else ", each event's own flow"
    where += "" if target.flow_id else " and source"
    return f"LeadConduit at {redact_url(target.leadconduit)}{where}"


def _dry_run(
    to_send: Plan, result: ReplayResult, on_diff: Callable[[dict[str, Any]], None], notice: Notice, keep_rows: bool
) -> None:
    """Diff each planned request against the original; the plan's rows are the dry run's report (no body)."""
    options = result.options
    planned: list[dict[str, Any]] = []
    for event in to_send.events():
        try:
            prepared = options.prepare(event)
        except FirehoseError as exc:
            notice(str(exc))
            result.problems.append((str(event.get("id")), str(exc)))
            continue
        diff = request_diff(prepared, include_pii=options.include_pii, edits=options.edits)
        result.differ += bool(diff["differs"])
        result.to[diff["url"]["to"].split("?")[0]] += 1
        if keep_rows:
            kept = {name: diff[name] for name in ("event_id", "lead_id", "flow_id", "differs")}
            planned.append(kept | {"status": "would send", "url": diff["url"]["to"]})
        on_diff(diff)
    if keep_rows:
        result.rows = planned + [skipped.row() for skipped in to_send.skipped]


class _Run:
    """One replay's open parts: sources, state database and ledgers, settler; closed with ``stack``."""

    def __init__(
        self,
        options: ReplayOptions,
        settings: Settings,
        stack: contextlib.ExitStack,
        result: ReplayResult,
        credential_id: str | None,
        workers: int,
        notice: Notice,
    ) -> None:
        from firehose.api import LeadConduit
        from firehose.state import ReplayLedger, RunLock, StateDB, no_database_yet

        self.options, self.settings, self.stack, self.result, self.notice = options, settings, stack, result, notice
        use_api = options.from_api or not options.archives
        # The settler asks LeadConduit what became of a lead in doubt: only when the replay goes to that LeadConduit.
        self.settling = not options.dry_run and options.target.named == origin(settings.api.url)
        self.api = None
        if use_api or (options.ids is not None and not options.archives) or (self.settling and settings.api.api_key):
            self.api = LeadConduit(stack.enter_context(api_client(settings)))
        archives = []
        for url in options.archives:
            store, where = open_url(url, settings, credential_id, "--from")
            stack.callback(store.close)
            archives.append((store, where.prefix))
        self.problems = Problems(result.problems)
        api = self.api if use_api or options.ids is not None else None
        self.sources = Sources(api, archives, workers=workers)
        database = settings.state_file
        if options.dry_run and no_database_yet(database):  # a dry run writes nothing: not even a new database
            database = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "state.sqlite"
        if not options.dry_run:  # one sending run per state database; a second one is told, not kept waiting
            stack.enter_context(RunLock(database))
        self.ledger = ReplayLedger(stack.enter_context(StateDB(database)))
        self.shared = self._shared_ledger(credential_id) if options.ledger and not options.dry_run else None
        self.settler = self._settler()

    def _shared_ledger(self, credential_id: str | None) -> StoreLedger:
        from firehose.claims import StoreLedger

        store, where = open_url(str(self.options.ledger), self.settings, credential_id, "--ledger")
        self.stack.callback(store.close)
        if where.scheme == "file":
            store.create()  # a folder of our own; a bucket or container is never made by firehose
        shared = StoreLedger(store, where.prefix, self.options.run_id)
        shared.check()
        return shared

    def _settler(self) -> Settler | None:
        if not (self.settling and self.api is not None):
            return None
        settler = Settler(
            self.api,
            self.settings.api.url,
            grace_seconds=self.options.settle_after_seconds,
            known_leads=self.ledger.made_by_replay(),
        )
        for entry, outcome in settle_ledger(self.ledger, settler):
            state_word = "is still in doubt" if outcome.status == "unknown" else "was in doubt"
            self.notice(f"event {entry.event_id} {state_word}: {outcome.reason}")
        return settler

    def plan(self) -> Plan:
        ids = self.options.ids
        assert not isinstance(ids, Path)  # made lines by ReplayOptions
        selected = self.sources.select(self.options.selection, self.problems, ids=ids)
        to_send = plan(selected, self.ledger, self.options)
        self.stack.callback(to_send.close)
        for place, why in self.problems.items:
            self.notice(f"{place}: {why}")
        self.result.planned, self.result.left_over = to_send.count, to_send.left_over
        self.result.skipped, self.result.skipped_rows = len(to_send.skipped), to_send.skipped
        return to_send

    def send(
        self,
        to_send: Plan,
        sender: Sender,
        on_result: Callable[[LeadResult], None],
        keep_rows: bool,
        progress: Progress,
    ) -> None:
        options, result = self.options, self.result

        def record(outcome: LeadResult) -> None:
            result.summary.add(outcome)
            if keep_rows:
                result.rows.append(outcome.row())
            on_result(outcome)

        for skipped in to_send.skipped:
            record(skipped)
        letters = DeadLetters(options.dead_letter)
        sending = progress.start("sending leads", total=to_send.count)

        def settled(outcome: LeadResult) -> None:
            record(outcome)
            sending.advance()

        began, cpu = time.monotonic(), time.process_time()
        try:
            send(to_send, self.ledger, sender, options, dead_letter=letters.add, on_result=settled,
                 shared=self.shared, settler=self.settler)  # fmt: skip
        finally:
            sending.done()
            letters.close()  # this run's failures are in the file before it is pruned
            result.dead_letters = letters.written
        result.seconds |= {"sending": time.monotonic() - began, "sending_cpu": time.process_time() - cpu}
        if self.settling:  # only a replay into the LeadConduit the settings name delivers what failed
            try:
                result.pruned = prune_dead_letters(options.dead_letter, self.ledger, self.settings.api.url)
            except OSError as exc:  # the leads are sent and on the ledger: the report still goes out
                self.notice(f"{options.dead_letter} not pruned of the leads sent: {exc.strerror}")
