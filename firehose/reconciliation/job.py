"""A reconcile run as one library call: ``reconcile(options, settings)`` opens the API, the stores and the state
database as the settings say, runs ``run.Reconciler`` over the window, and returns a ``ReconcileResult`` that
holds everything a report says (counts, at-risk gaps, by destination and day, requests, findings) and the exit
code. The command line, a Python caller and a remote worker all get their report from the same result.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from firehose.archive import Store
from firehose.config import Settings
from firehose.connections import api_client, destination_opener, open_url
from firehose.errors import ExitCode
from firehose.findings import GAPS, Finding, Verdict
from firehose.progress import NO_PROGRESS, Progress
from firehose.reconciliation.checkpoints import SliceDone
from firehose.reconciliation.expiry import API_DAYS, AT_RISK_WITHIN, at_risk, by_expiry
from firehose.reconciliation.lags import lag_report
from firehose.reconciliation.run import KEPT, Outcome, ReconcileOptions, Reconciler

if TYPE_CHECKING:
    from firehose.reconciliation.checkpoints import RunState

SCHEMA = "firehose.reconcile/1"
"""The versioned report schema (architecture.md §6): a field is added, never renamed or removed, within /1."""

FINDING_FIELDS = ("verdict", "expires_at", "event_id", "lead_id", "type", "destination", "key", "reason", "fields")
"""A finding's fields in a report, in order (``values`` follows with ``include_pii``)."""


def exit_code_of(counts: Mapping[str, int]) -> ExitCode:
    """A run's exit code from its counts: 5 when a store could not be checked, else 1 when something is missing or
    differs, else 0 (one run's, a slice's, or the merge of slices')."""
    if counts.get(Verdict.ERROR.value, 0):
        return ExitCode.ARCHIVE
    return ExitCode.DIFFERENCES if any(counts.get(v.value, 0) for v in GAPS) else ExitCode.OK


@dataclass(frozen=True)
class ReconcileResult:
    """What one reconcile run found, and what it means: counts, at-risk gaps, findings and the exit code.

    ``findings`` are the pairs a report lists one by one (missing, differ, archive-only, error, repaired): gaps
    first, soonest expiry first. A dry run's result has the same shape; its findings are what a run would find,
    and ``would_write`` what ``repair`` would write.
    """

    options: ReconcileOptions
    outcome: Outcome
    findings: tuple[Finding, ...]
    at_risk: tuple[Finding, ...]
    expiring_within: timedelta
    checked_at: datetime

    SCHEMA = SCHEMA
    API_DAYS = API_DAYS
    """How long LeadConduit's API keeps an event."""

    @property
    def fields(self) -> tuple[str, ...]:
        """A finding's fields in the report's rows, in order (``values``, lead data, only with ``include_pii``)."""
        return FINDING_FIELDS + (("values",) if self.options.include_pii else ())

    @property
    def counts(self) -> Mapping[str, int]:
        return self.outcome.counts

    @property
    def by_destination(self) -> Mapping[str, Counter[str]]:
        return self.outcome.by_destination

    @property
    def by_day(self) -> Mapping[str, Counter[str]]:
        return self.outcome.by_day

    @property
    def requests(self) -> Mapping[str, Counter[str]]:
        """Requests per destination (made, or for a dry run, planned); ``api`` counts events paged."""
        return self.outcome.requests

    @property
    def delivery_lag(self) -> dict[str, dict[str, Any]]:
        """Per destination: p50, p95, p99 and max delivery lag (seconds) of the objects found, and the histogram
        they come from (``lags``)."""
        return lag_report(self.outcome.lags)

    @property
    def resumed_windows(self) -> int:
        """Windows an earlier run had settled, reused instead of examined again (``full`` redoes them)."""
        return self.outcome.resumed_windows

    @property
    def earliest_expiry(self) -> datetime | None:
        """When the first at-risk gap's event leaves the API (None when nothing is at risk or none is known)."""
        return min((f.expires_at for f in self.at_risk if f.expires_at), default=None)

    @property
    def first_gap_expiry(self) -> datetime | None:
        """When the first gap's event leaves the API, at risk or not (None when no gap has a known expiry)."""
        return min((f.expires_at for f in self.findings if f.verdict in GAPS and f.expires_at), default=None)

    @property
    def forgotten_until(self) -> datetime | None:
        """The start of what the API still holds, when the window begins before it (None otherwise): events made
        before it are gone from ``GET /events``, so the run could not check them."""
        horizon = self.checked_at - timedelta(days=API_DAYS)
        return horizon if self.options.start < horizon else None

    @property
    def gaps(self) -> int:
        """Pairs missing or differing after the run (and its repairs)."""
        return sum(self.counts.get(v.value, 0) for v in GAPS)

    @property
    def would_write(self) -> int:
        """For a dry run with ``repair``: the objects it would write (0 otherwise)."""
        if not (self.options.dry_run and self.options.repair):
            return 0
        return sum(1 for f in self.findings if f.verdict == Verdict.MISSING)

    @property
    def exit_code(self) -> ExitCode:
        return exit_code_of(self.counts)

    @property
    def verify_label(self) -> str:
        """How objects were checked, as ``--verify`` spells it: presence, content or sample:P."""
        if self.options.verify == "sample":
            return f"sample:{self.options.sample_percent:g}"
        return self.options.verify

    def rows(self) -> Iterator[dict[str, Any]]:
        """Each finding as a report row (``values``, lead data, only when the run kept them: ``include_pii``)."""
        pii = self.options.include_pii
        for f in self.findings:
            row: dict[str, Any] = {name: getattr(f, name) for name in FINDING_FIELDS}
            row["verdict"] = f.verdict.value
            row["fields"] = ",".join(f.fields)
            if pii:
                row["values"] = f.values
            yield row

    def summary(self) -> dict[str, Any]:
        """The counts a listing of findings ends with."""
        return {"counts": dict(self.counts), "at_risk": len(self.at_risk), "earliest_expiry": self.earliest_expiry}

    def report(self) -> dict[str, Any]:
        """The run as the versioned report (``firehose.reconcile/1``), ready for JSON."""
        earliest = self.earliest_expiry
        return {
            "schema": SCHEMA,
            "window": {"start": self.options.start.isoformat(), "end": self.options.end.isoformat()},
            "verify": self.verify_label,
            "repair": self.options.repair,
            **self.summary(),
            "earliest_expiry": earliest.isoformat() if earliest else None,
            "by_destination": {d: dict(c) for d, c in self.by_destination.items()},
            "by_day": {d: dict(c) for d, c in sorted(self.by_day.items())},
            "requests": {name: dict(kinds) for name, kinds in sorted(self.requests.items())},
            "delivery_lag": self.delivery_lag,
            "resumed_windows": self.resumed_windows,
            **({"shard": {"index": self.options.shard[0], "of": self.options.shard[1]}} if self.options.shard else {}),
            **({"dry_run": True, "would_write": self.would_write} if self.options.dry_run else {}),
            "findings": [
                {**row, "expires_at": row["expires_at"].isoformat() if row["expires_at"] else None}
                for row in self.rows()
            ],
        }


def reconcile(
    options: ReconcileOptions,
    settings: Settings,
    *,
    credential_id: str | None = None,
    expiring_within: timedelta = AT_RISK_WITHIN,
    progress: Progress = NO_PROGRESS,
    now: datetime | None = None,
    api_gate: AbstractContextManager[Any] | None = None,
) -> ReconcileResult:
    """Reconcile the archive against ``GET /events`` for ``options``' window, and repair gaps if it says so.

    The API, each event's stores (through the credentials the settings map, or ``credential_id`` for all) and the
    state database (``settings.state_file``) are opened here and closed before it returns. One run at a time per
    state database: a second one is refused naming who holds it (a dry run writes nothing and takes no lock).
    ``progress`` is told of the windows (a task advanced after each), the listings and the content reads.
    """
    checked_at = now or datetime.now(UTC)
    outcome, findings = run_and_collect(
        options,
        settings,
        credential_id=credential_id,
        holder="firehose reconcile",
        progress=progress,
        api_gate=api_gate,
    )
    if options.dry_run:
        findings = by_expiry(findings) + [f for f in findings if f.verdict not in GAPS]
    risky = tuple(f for f in findings if at_risk(f, now=checked_at, within=expiring_within))
    return ReconcileResult(options, outcome, tuple(findings), risky, expiring_within, checked_at)


def run_and_collect(
    options: ReconcileOptions,
    settings: Settings,
    *,
    credential_id: str | None,
    holder: str,
    progress: Progress = NO_PROGRESS,
    also: Callable[[Any], Any] | None = None,
    announce: Callable[[], None] | None = None,
    api_gate: AbstractContextManager[Any] | None = None,
) -> tuple[Outcome, list[Finding]]:
    """Run the reconciler with the run lock, the API client and the state database, and read back the findings a
    report lists (a dry run's are kept in memory, the others in the state database). ``also(state)`` reads
    more from the state database before it closes (an audit's record of repairs); ``announce()`` is called once
    the run holds the lock, before it starts."""
    from firehose.api import LeadConduit
    from firehose.state import RunLock, StateDB, no_database_yet

    open_for = destination_opener(settings, credential_id)
    client = api_client(settings)
    database = settings.state_file
    with contextlib.ExitStack() as stack:
        if options.dry_run and no_database_yet(database):  # a dry run writes nothing: not even a new database
            database = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "state.sqlite"
        if not options.dry_run:  # one reconcile (or audit) at a time per state database, refused at once
            stack.enter_context(RunLock(database, "reconcile", holder))
        http = stack.enter_context(client)
        state = stack.enter_context(StateDB(database))
        if announce is not None:
            announce()

        def inventory_store(url: str) -> Store:
            return open_url(url, settings, credential_id, "--inventory")[0]

        outcome = Reconciler(LeadConduit(http), open_for, state, options, progress=progress, api_gate=api_gate,
                             inventory_store=inventory_store).run()  # fmt: skip
        if options.dry_run:
            findings = list(outcome.planned)
        else:
            findings = [f for f in state.findings(outcome.run_id, outcome.windows) if f.verdict in KEPT]
        if also is not None:
            also(state)
    return outcome, findings


@dataclass(frozen=True)
class SlicedReport(SliceDone):
    """A slice's report as its checkpoint holds it, or the report all slices make together (``merge_slices``):
    the ``firehose.reconcile/1`` document itself, with its findings as rows and its exit code."""

    SCHEMA = SCHEMA

    def report(self) -> dict[str, Any]:
        return dict(self.document)

    @property
    def counts(self) -> Mapping[str, int]:
        return dict(self.document["counts"])

    @property
    def fields(self) -> tuple[str, ...]:
        pii = any("values" in row for row in self.document["findings"])
        return FINDING_FIELDS + (("values",) if pii else ())

    def rows(self) -> Iterator[dict[str, Any]]:
        yield from self.document["findings"]

    def summary(self) -> dict[str, Any]:
        return {name: self.document[name] for name in ("counts", "at_risk", "earliest_expiry")}

    @property
    def exit_code(self) -> ExitCode:
        return exit_code_of(self.counts)


def reconcile_slice(
    options: ReconcileOptions,
    settings: Settings,
    run_state: str,
    *,
    credential_id: str | None = None,
    expiring_within: timedelta = AT_RISK_WITHIN,
    progress: Progress = NO_PROGRESS,
    api_gate: AbstractContextManager[Any] | None = None,
) -> SlicedReport:
    """One slice of a sliced run (``options.sharded(i, n)``) with its checkpoint in ``run_state`` (a store URL,
    one folder per run): a slice done before is not checked again; a finished one is recorded, never over
    another's record. A dry run neither reads nor writes checkpoints' effect: it plans the slice as ever."""
    from firehose.reconciliation.checkpoints import run_identity

    with open_run_state(run_state, settings, credential_id, create=True) as state:
        identity = run_identity(options)  # refuses options that are not a slice
        assert options.shard is not None
        shard = options.shard
        earlier = state.done(shard, identity)
        if earlier is not None and not options.dry_run:
            return SlicedReport(earlier, reused=True)
        result = reconcile(options, settings, credential_id=credential_id, expiring_within=expiring_within,
                           progress=progress, api_gate=api_gate)  # fmt: skip
        document = result.report()
        # A slice that could not check a store keeps no checkpoint: the next run checks it again.
        complete = not options.dry_run and result.exit_code != ExitCode.ARCHIVE
        recorded = state.record(shard, identity, document) if complete else False
        return SlicedReport(document, recorded=recorded)


def merge_slices(
    run_state: str, shards: int | None, settings: Settings, *, credential_id: str | None = None
) -> SlicedReport:
    """The one report of a sliced run's ``shards`` checkpoints in ``run_state`` (None: as many as the folder's
    checkpoints say), as one run over the whole window writes it; a ``UsageError`` naming the slices not done
    yet."""
    with open_run_state(run_state, settings, credential_id) as state:
        return SlicedReport(state.merge(shards))


@contextlib.contextmanager
def open_run_state(
    run_state: str, settings: Settings, credential_id: str | None, *, kind: str = "reconcile", create: bool = False
) -> Iterator[RunState]:
    """The checkpoints of the sliced run at ``run_state`` (a store URL, one folder per run), its store closed
    after. ``create``: a ``file://`` folder is made (a bucket or container is never made by firehose)."""
    from firehose.reconciliation.checkpoints import RunState

    store, where = open_url(run_state, settings, credential_id, "--run-state")
    try:
        if create and where.scheme == "file":
            store.create()
        yield RunState(store, where.prefix, kind)
    finally:
        store.close()
