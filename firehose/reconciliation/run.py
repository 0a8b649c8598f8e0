"""The reconcile run: march ``GET /events`` against the archive listings, window by window, classify every
(event, destination) pair, repair what is missing, and keep each finished window in the state database so an
interrupted run resumes where it stopped.

Per window (a day by default):

1. page ``/events`` for the window, asking only for the fields presence needs (``include``) unless content is
   read or repairs may be written;
2. per destination, list the leads made from ``lead_lookback`` before the window to its end (one key range,
   ``archive.listing``), and list the folders of the few leads that are older (feedback days after its lead);
3. classify (``classify``): presence from the listing; content for every object (``content``) or a fixed
   sample (``sample:P``); archive-only from the listing;
4. ``repair``: write each missing event as the API returns it, if absent, then read it back and compare;
5. save the window's counts, request counts and non-match findings in one transaction.

A destination that fails (unreachable, access denied, unmapped credential) marks its events ``error`` with the
reason; the other destinations go on.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from firehose.api import EventQuery, LeadConduit
from firehose.archive import ObjectInfo, Store, StoreUrl
from firehose.archive.base import IN_FLIGHT
from firehose.archive.layout import parse_key
from firehose.archive.listing import lead_objects, list_window, ordered_map, read_many
from firehose.codec import canonical, records
from firehose.errors import ArchiveError, ArchiveNotFound, ConfigError, DataError, UsageError
from firehose.event import Destination
from firehose.findings import Finding, Verdict
from firehose.ids import seconds_of
from firehose.progress import NO_PROGRESS, Progress, Task
from firehose.reconciliation.classify import (
    Expected,
    archive_only,
    classify_content,
    classify_presence,
    expected_objects,
    sampled,
)
from firehose.reconciliation.inventories import GONE, Inventories
from firehose.reconciliation.lags import LagHistogram, delivery_lag, merged_lags
from firehose.reconciliation.repair import settle_intents, write_missing
from firehose.state import StateDB, WindowRecord

log = logging.getLogger(__name__)

NO_DESTINATION = "(no destination)"
KEPT = (Verdict.MISSING, Verdict.DIFFER, Verdict.ARCHIVE_ONLY, Verdict.ERROR, Verdict.REPAIRED)
"""The classes a report lists item by item."""
LISTING_AHEAD = 2
"""Listing slices (a page each) fetched ahead of the window being classified, per destination. ``/events`` paces
a run, so more only holds more of the listing in memory (measured: no faster with 16)."""
PRESENCE_FIELDS = ("id", "type", "vars.lead.id", "firehose", "expires_at", "end_timestamp")
"""What presence needs from each event: where it should be, when the API forgets it, and when it ended (what its
delivery lag counts from)."""


PRESENT = frozenset({Verdict.MATCH, Verdict.DIFFER, Verdict.REPAIRED})
"""Verdicts of an object that is in the archive (what coverage counts as archived, with archive-only ones)."""


@dataclass(frozen=True)
class ReconcileOptions:
    start: datetime
    end: datetime
    verify: str = "presence"  # presence | content | sample
    sample_percent: float = 0.0
    repair: bool = False
    window: timedelta = timedelta(days=1)
    lead_lookback: timedelta = timedelta(hours=1)
    """Events come after their lead; leads made this long before a window are listed with it."""
    archive: Destination | None = None
    """``--archive URL``: check here instead of each event's own destinations."""
    workers: int = IN_FLIGHT
    full: bool = False
    """Re-examine every window, even those an earlier run finished."""
    dry_run: bool = False
    """List and classify, but read no object and write nothing (state included): say what would be done."""
    include_pii: bool = False
    """Keep the differing values of ``differ`` findings (lead data) in state and reports."""
    recheck: timedelta = timedelta(days=1)
    """A finished window is taken as settled only if it was checked this long after its end: firehose writes
    can land late (spool retries), so recent windows are examined again on the next run."""
    shard: tuple[int, int] | None = None
    """``(index, count)`` when this run is one slice of a larger window (``sharded``): for its report."""
    sliced_from: tuple[datetime, datetime] | None = None
    """The whole window a slice was cut from: what its checkpoint belongs to."""
    inventory: tuple[str, ...] = ()
    """``--inventory URL``: S3 Inventory or Azure Blob Inventory manifests read instead of listing each
    destination their bucket or container is (``inventories``); every ``missing`` is confirmed live."""

    def __post_init__(self) -> None:
        # Tolerant of what a Python caller writes: a store URL for ``archive``, a time without a zone (UTC).
        archive: Any = self.archive  # typed Destination; a Python caller may give the URL
        if isinstance(archive, str):
            object.__setattr__(self, "archive", Destination.from_url(archive, name="archive"))
        inventory: Any = self.inventory  # one URL, or several
        object.__setattr__(self, "inventory", (inventory,) if isinstance(inventory, str) else tuple(inventory))
        for url in self.inventory:
            StoreUrl.parse(url, "--inventory")  # a bad URL is refused before anything is asked
        for name in ("start", "end"):
            moment = getattr(self, name)
            if not isinstance(moment, datetime):
                raise UsageError(f"ReconcileOptions.{name} must be a datetime, got {type(moment).__name__}")
            if moment.tzinfo is None:
                object.__setattr__(self, name, moment.replace(tzinfo=UTC))
        if self.verify not in ("presence", "content", "sample"):
            raise UsageError(f"--verify must be presence, content or sample:P, got {self.verify!r}")
        if self.start >= self.end:
            raise UsageError(f"the window is empty: start {self.start:%Y-%m-%dT%H:%M:%SZ} is not before its end")

    def fingerprint(self) -> str:
        """Runs with the same fingerprint share their finished windows. The time range is left out, so tonight's
        run reuses last night's settled windows; what is checked, and how, is in."""
        # An inventory is another way to the same answer (every missing confirmed live), and tonight's has
        # another URL than last night's: windows settled with or without one are reused alike.
        ignored = {"start", "end", "workers", "full", "recheck", "dry_run", "shard", "sliced_from", "inventory"}
        values = {name: str(value) for name, value in asdict(self).items() if name not in ignored}
        return hashlib.sha256(canonical(values)).hexdigest()[:32]

    def sharded(self, index: int, count: int) -> ReconcileOptions:
        """Slice ``index`` of ``count`` (0-based) of this window, cut by event-id time (an ObjectId's seconds):
        equal spans of whole seconds, each event in exactly one, whatever machine computes it. Any orchestrator
        runs the same command ``count`` times with another index; many more slices than workers even out the
        busy hours. The window's end is inclusive, so a slice ends one second before the next begins."""
        if not 0 <= index < count:
            raise UsageError(f"--shard must be from 0 to {count - 1} for --shards {count}, got {index}")
        first, last = int(self.start.timestamp()), int(self.end.timestamp())
        if count > (last - first + 1) // 2:
            raise UsageError(
                f"--shards {count} cuts the window's {last - first + 1} seconds too fine (2 seconds each at least)"
            )
        edges = [first + (last - first + 1) * n // count for n in range(count + 1)]
        start = self.start if index == 0 else datetime.fromtimestamp(edges[index], tz=UTC)
        end = self.end if index == count - 1 else datetime.fromtimestamp(edges[index + 1] - 1, tz=UTC)
        return replace(self, start=start, end=end, shard=(index, count), sliced_from=(self.start, self.end))

    def windows(self) -> Iterator[tuple[datetime, datetime]]:
        """The range cut at fixed boundaries (multiples of ``window`` since the epoch, so midnights UTC for a
        day), so that runs over different ranges share the same windows."""
        size = int(self.window.total_seconds())
        moment = self.start
        while moment < self.end:
            edge = datetime.fromtimestamp((int(moment.timestamp()) // size + 1) * size, tz=UTC)
            following = min(self.end, edge)
            yield moment, following
            moment = following


@dataclass
class Outcome:
    """What a run found: counts overall, per destination and per day, requests made, and where state is."""

    run_id: int
    counts: Counter[str] = field(default_factory=Counter)
    by_destination: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    by_day: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    by_day_destination: dict[tuple[str, str], Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    """Counts per (day, destination URL): the coverage calendar of an audit."""
    destinations: dict[str, Destination] = field(default_factory=dict)
    """The destinations the run checked, by URL (those of the windows it examined)."""
    requests: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    """Requests made (or, for a dry run, planned) per destination; ``api`` counts events paged from LeadConduit."""
    resumed_windows: int = 0
    planned: list[Finding] = field(default_factory=list)
    """With ``dry_run``: the findings, kept here instead of in the state database."""
    windows: list[datetime] = field(default_factory=list)
    """The starts of this run's windows: its findings are those stored for them."""
    lags: dict[str, LagHistogram] = field(default_factory=dict)
    """Delivery lags per destination URL, of the objects the windows' listings found (reused windows' included)."""
    older_leads: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    """Keys, per destination URL, of the archived objects of the run's events whose lead was made before the run
    (and its lead look-back) began: feedback days after a lead. A listing by lead misses them; an audit's
    manifest lists them from here. Only for windows this run examined."""


class Reconciler:
    """One run over a window; ``open_store`` gives the store for a destination (credential mapping included)."""

    def __init__(
        self,
        api: LeadConduit,
        open_store: Callable[[Destination], Store],
        state: StateDB,
        options: ReconcileOptions,
        *,
        progress: Progress = NO_PROGRESS,
        api_gate: AbstractContextManager[Any] | None = None,
        inventory_store: Callable[[str], Store] | None = None,
    ) -> None:
        self.api = api
        self.inventory_store = inventory_store
        """Opens the store an ``--inventory`` URL names (its manifest and files), with the run's credentials."""
        self._inventories = Inventories()
        self.api_gate = api_gate or nullcontext()
        """Held while a window pages ``/events``: a semaphore shared by every slice of a run caps how many page
        LeadConduit at once (``--api-concurrency``)."""
        self.open_store = open_store
        self.state = state
        self.options = options
        self.progress = progress
        """Told of the run's windows (a task, advanced after each), each destination's listing (keys listed) and
        each window's content reads (objects read)."""
        self._stores: dict[tuple[str, str, str | None], Store] = {}
        self._cursors: dict[Destination, ListingCursor] = {}
        self._reads: dict[str, Task] = {}
        """Each store's content reads for the whole run, their total grown window by window."""
        self._reads_made = threading.Lock()
        self._event_stream: Iterator[dict[str, Any]] | None = None
        self._run_id = 0
        self._window_start = options.start
        self._event_ahead: dict[str, Any] | None = None

    def run(self) -> Outcome:
        options = self.options
        run_id = self.state.run(options.fingerprint(), {k: str(v) for k, v in asdict(options).items()})
        self._run_id = run_id
        outcome = Outcome(run_id)
        done = {record.start: record for record in self.state.finished_windows(run_id)}
        windows = list(options.windows())
        behind: list[tuple[datetime, datetime, set[str]]] = []
        """The windows this run has passed (examined or reused), in order, each with the destinations (URLs)
        whose archive-only objects its record holds: a destination first named later is back-filled into the
        others, whether this run examined them or reused them from an earlier, interrupted invocation."""
        # Read first: a manifest that cannot be used stops the run before it starts.
        self._inventories = Inventories(options.inventory, self.inventory_store)
        task = self.progress.start("reconcile windows", total=len(windows))
        try:
            if not options.dry_run:
                self._settle_intents()
            for start, end in windows:
                record = done.get(start)
                settled = (
                    record is not None
                    and record.end == end
                    and record.finished_at is not None
                    and (record.finished_at - record.end >= options.recheck)
                    # A repair since (by any run) changed the archive these findings describe: look again.
                    and not self.state.repaired_since(start, record.finished_at)
                )
                if options.dry_run or options.full or record is None or not settled:
                    known = set(self._cursors)
                    findings, requests, lags = self._window(start, end)
                    for destination in set(self._cursors) - known:
                        self._late_destination(outcome, destination, behind)
                    outcome.destinations.update({d.url(): d for d in self._cursors})
                    record = WindowRecord(start, end, _tally(findings), requests, lags=lags)
                    floor = int((options.start - options.lead_lookback).timestamp())
                    for f in findings:
                        if f.verdict in PRESENT and f.lead_id and seconds_of(f.lead_id) < floor:
                            outcome.older_leads[f.destination].append(f.key)
                    kept = [f for f in findings if f.verdict in KEPT]  # matches are counted, not kept one by one
                    if options.dry_run:
                        outcome.planned.extend(kept)
                    else:
                        self.state.save_window(run_id, record, kept)
                else:
                    outcome.resumed_windows += 1
                # A record lists a destination it checked under its requests, even when nothing was found there.
                behind.append((start, end, set(record.counts) | set(record.requests)))
                self._add(outcome, record)
                outcome.windows.append(start)
                task.advance()
            if not options.dry_run:
                self.state.finish(run_id)
        finally:
            for started in (task, *self._reads.values()):
                started.done()
            for cursor in self._cursors.values():
                cursor.close()
            for store in self._stores.values():
                store.close()
            self._inventories.close()
        return outcome

    def _late_destination(
        self, outcome: Outcome, destination: Destination, behind: list[tuple[datetime, datetime, set[str]]]
    ) -> None:
        """A destination first named by this window's events: its archive-only objects in the windows passed
        before whose records do not hold it yet, added to their findings and counts (so coverage and an audit's
        manifest agree), and the destination marked as checked there (so a resumed run does not add them twice)."""
        url = destination.url()
        lacking = [(start, end) for start, end, checked in behind if url not in checked]
        if not lacking:
            return
        try:
            late = self._backfill(destination, lacking)
        except (ArchiveError, ConfigError) as exc:
            log.warning("%s", exc)  # the window itself reports the destination's failure as error findings
            return
        by_window: dict[datetime, list[Finding]] = defaultdict(list)
        for finding in late:
            made = datetime.fromtimestamp(seconds_of(finding.event_id), tz=UTC)
            window = next(start for start, end in reversed(lacking) if start <= made)
            by_window[window].append(finding)
        for start, end in lacking:
            findings = by_window.get(start, [])
            extra = WindowRecord(start, end, _tally(findings), {url: {}})
            if self.options.dry_run:
                outcome.planned.extend(findings)
            else:
                self.state.add_findings(self._run_id, extra, findings)
            self._add(outcome, extra)
        for _start, _end, checked in behind:
            checked.add(url)

    def _add(self, outcome: Outcome, record: WindowRecord) -> None:
        day = f"{record.start:%Y-%m-%d}"
        for destination, counts in record.counts.items():
            for verdict, number in counts.items():
                outcome.counts[verdict] += number
                outcome.by_destination[destination][verdict] += number
                outcome.by_day[day][verdict] += number
                outcome.by_day_destination[(day, destination)][verdict] += number
        for destination, kinds in record.requests.items():
            outcome.requests[destination].update(kinds)
        for destination, histogram in merged_lags([record.lags]).items():
            outcome.lags.setdefault(destination, LagHistogram()).merge(histogram)

    # -- one window -------------------------------------------------------------------------------------
    def _window(
        self, start: datetime, end: datetime
    ) -> tuple[list[Finding], dict[str, dict[str, int]], dict[str, dict[str, Any]]]:
        options = self.options
        self._window_start = start
        full = (options.verify != "presence" or options.repair) and not options.dry_run
        events: dict[str, dict[str, Any]] = {}
        expected: dict[Destination, list[Expected]] = defaultdict(list)
        findings: list[Finding] = []
        api_events = 0
        with self.api_gate:  # the window's paging of /events, and nothing slower: no store is asked in here
            for event in self._events_until(start, end, include=() if full else PRESENCE_FIELDS):
                api_events += 1
                targets = [options.archive] if options.archive else None
                items = expected_objects(event, destinations=targets)
                if not items and not full and event.get("firehose") and _lead_unknown(event):
                    event = self.api.get_event(event["id"])  # the lead id may be only in the source response
                    items = expected_objects(event, destinations=targets)
                if not items:
                    findings.append(Finding(Verdict.NOT_CONFIGURED, str(event["id"]), "", NO_DESTINATION))
                    continue
                if full:
                    events[items[0].event_id] = event
                for item in items:
                    expected[item.destination].append(item)
        requests: dict[str, Counter[str]] = defaultdict(Counter)
        requests["api"]["events"] = api_events
        # Every destination the run has met is checked in every window, not only those this window's events name:
        # a day with no event for a destination can still hold archive-only objects in it (an audit's manifest
        # lists them).
        for destination in self._cursors:
            expected.setdefault(destination, [])
        lags: dict[str, LagHistogram] = {}
        findings.extend(self._destinations(expected, events, start, end, requests, lags))
        stored = {url: lags[url].stored() for url in sorted(lags) if lags[url].count or lags[url].unknown}
        return findings, {name: dict(kinds) for name, kinds in requests.items()}, stored

    def _destinations(
        self,
        expected: dict[Destination, list[Expected]],
        events: dict[str, dict[str, Any]],
        start: datetime,
        end: datetime,
        requests: dict[str, Counter[str]],
        lags: dict[str, LagHistogram],
    ) -> list[Finding]:
        """Every destination of the window checked: those of different stores at the same time (a content check
        waits on each store's answers, and one slow store would otherwise hold up the others: on this machine
        Azurite reads 700 objects/s, SeaweedFS 1,800), those sharing a store one after the other (a store counts
        its own requests). Repairs follow, one destination after the other: they write to the state database,
        whose connection stays in this thread."""
        groups: dict[tuple[str, str, str | None], list[Destination]] = defaultdict(list)
        for destination in expected:
            groups[(destination.scheme, destination.bucket, destination.credential_id)].append(destination)

        def check(group: list[Destination]) -> list[list[Finding]]:
            return [self._destination(d, expected[d], events, start, end, requests[d.url()], lags) for d in group]

        if len(groups) > 1:
            with ThreadPoolExecutor(max_workers=len(groups), thread_name_prefix="destination") as pool:
                checked = list(pool.map(check, groups.values()))
        else:
            checked = [check(group) for group in groups.values()]
        found = {
            d: f
            for group, results in zip(groups.values(), checked, strict=True)
            for d, f in zip(group, results, strict=True)
        }
        findings: list[Finding] = []
        for destination in expected:
            findings.extend(self._repaired(destination, found[destination], events, requests[destination.url()]))
        return findings

    def _repaired(
        self, destination: Destination, found: list[Finding], events: dict[str, dict[str, Any]], requests: Counter[str]
    ) -> list[Finding]:
        """``found`` with its missing objects repaired, when the run repairs."""
        if not self.options.repair or self.options.dry_run or not any(f.verdict == Verdict.MISSING for f in found):
            return found
        store = self._store(destination)  # opened by the check: a store that failed to open has no missing
        with store.requests.added_to(requests):
            return self._repair(store, found, events, destination.credential_id)

    def _backfill(self, destination: Destination, windows: list[tuple[datetime, datetime]]) -> list[Finding]:
        """Archive-only findings of a destination first named by a later window's events, for the windows this
        run passed before it whose records lack it (nothing in them expected it, so only archive-only objects
        can be found)."""
        options = self.options
        found: list[Finding] = []
        store = self._store(destination)
        listed = list(  # one listing for them all: only archive-only objects can be in it, so it is small
            self._source(
                store,
                destination,
                int((options.start - options.lead_lookback).timestamp()),
                int(windows[-1][1].timestamp()),
                ahead=options.workers * 2,
            )
        )
        for start, end in windows:
            last = end if end >= options.end else end - timedelta(seconds=1)
            found.extend(archive_only(listed, set(), destination=destination.url(), start=start, end=last))
        return found

    def _events_until(self, start: datetime, end: datetime, *, include: tuple[str, ...]) -> Iterator[dict[str, Any]]:
        """The window's events, from one paging of ``/events`` for the rest of the run: windows share the pages
        instead of each asking for its own (and its empty last page). A window holds the seconds from its start
        to before its end; the run's last window keeps its end second too (``end`` is inclusive)."""
        if self._event_stream is None:
            query = EventQuery(start=start, end=self.options.end, include=include)
            self._event_stream = self.api.iter_events(query)
        last = int(end.timestamp()) if end >= self.options.end else int(end.timestamp()) - 1
        first = int(start.timestamp())
        while True:
            event = self._event_ahead if self._event_ahead is not None else next(self._event_stream, None)
            self._event_ahead = None
            if event is None:
                return
            made = seconds_of(str(event["id"]))
            if made > last:
                self._event_ahead = event
                return
            if made >= first:  # earlier ones belong to windows an earlier run settled
                yield event

    def _source(
        self, store: Store, destination: Destination, start_seconds: int, end_seconds: int, *, ahead: int
    ) -> Iterator[ObjectInfo]:
        """The objects of the leads made in ``[start_seconds, end_seconds]``: listed, or read from an inventory."""
        workers = self.options.workers
        if self._inventories:
            return self._inventories.stream(store, destination, start_seconds, end_seconds, workers=workers,
                                            ahead=ahead)  # fmt: skip
        return list_window(
            store, destination.prefix, start_seconds=start_seconds, end_seconds=end_seconds, workers=workers,
            ahead=ahead,
        )  # fmt: skip

    def _store(self, destination: Destination) -> Store:
        name = (destination.scheme, destination.bucket, destination.credential_id)
        if name not in self._stores:
            self._stores[name] = self.open_store(destination)
        return self._stores[name]

    def _destination(
        self,
        destination: Destination,
        items: list[Expected],
        events: dict[str, dict[str, Any]],
        start: datetime,
        end: datetime,
        requests: Counter[str],
        lags: dict[str, LagHistogram],
    ) -> list[Finding]:
        options = self.options
        try:
            store = self._store(destination)
            before = store.requests.snapshot()
            listed = self._listing(store, destination, items, start, end)
            found = list(classify_presence(items, listed))
            if self._inventories:  # an inventory is up to a day old: what it lacks is looked for now
                found = self._inventories.confirmed(store, destination, items, found, listed, workers=options.workers)
            expected_ids = {item.event_id.lower() for item in items}
            # A window holds the seconds from its start to before its end; the run's last keeps its end second
            # (as _events_until): an object made at midnight is the next day's archive-only, never both days'.
            last = end if end >= options.end else end - timedelta(seconds=1)
            found.extend(
                archive_only(listed.values(), expected_ids, destination=destination.url(), start=start, end=last)
            )
            if options.dry_run:
                # The plan: what content checks would read and what repair would write, nothing done.
                reads = [
                    f
                    for f in found
                    if f.verdict == Verdict.MATCH
                    and (
                        options.verify == "content"
                        or (options.verify == "sample" and sampled(f.event_id, options.sample_percent))
                    )
                ]
                requests["get_planned"] += len(reads)
                requests["put_planned"] += (
                    sum(1 for f in found if f.verdict == Verdict.MISSING) if options.repair else 0
                )
            else:
                if options.verify != "presence":
                    found = self._content(store, found, items, events)
            lags[destination.url()] = _lags(found, items, listed)  # after a content read: what is there now
            after = store.requests.snapshot()
            requests.update({kind: after[kind] - before[kind] for kind in after})
            return found
        except (ArchiveError, ConfigError) as exc:
            # The error names its store already (s3://bucket/...); a prefix of the URL would say it twice.
            said = str(exc)
            log.warning("%s", said if said.startswith(destination.scheme + "://") else f"{destination.url()}: {said}")
            return [
                Finding(
                    Verdict.ERROR,
                    i.event_id,
                    i.key,
                    destination.url(),
                    i.lead_id,
                    i.type,
                    i.expires_at,
                    reason=str(exc),
                )
                for i in items
            ]

    def _listing(
        self, store: Store, destination: Destination, items: list[Expected], start: datetime, end: datetime
    ) -> dict[str, ObjectInfo]:
        """The window's objects: the leads made from ``lead_lookback`` before the window to its end, taken from
        the destination's one listing of the whole run, and a listing of the folder of each older lead."""
        earliest = int((start - self.options.lead_lookback).timestamp())
        cursor = self._cursors.get(destination)
        if cursor is None:
            # From the run's start even when a destination is first named by a later window's events: that
            # window's archive-only check must see the later events of leads made before it (as a manifest does).
            stream = self._source(
                store,
                destination,
                int((self.options.start - self.options.lead_lookback).timestamp()),
                int(self.options.end.timestamp()),
                ahead=LISTING_AHEAD,
            )
            listed_task = self.progress.start(f"listing {destination.url()}")
            cursor = self._cursors[destination] = ListingCursor(stream, listed_task)
        listed = dict(
            cursor.advance(
                until_seconds=int(end.timestamp()), keep_from_seconds=earliest, window_seconds=int(start.timestamp())
            )
        )
        # Feedback days after its lead: list the lead's folder (every spelling of its events at once). A lead made
        # since the run's listing began was listed by it, and the cursor holds its later events: its folder is
        # listed again only for an event not found there (it may have been written since). On Azurite each such
        # request scans the whole container (~1,000 a run at 100,000 events).
        listed_from = int((self.options.start - self.options.lead_lookback).timestamp())
        held = {ids for key in listed if (ids := parse_key(key)) is not None}
        older: dict[str, list[str]] = defaultdict(list)
        for item in items:
            made = seconds_of(item.lead_id)
            if made < earliest and (made < listed_from or (item.lead_id.lower(), item.event_id.lower()) not in held):
                older[item.lead_id].append(item.event_id)

        def lead(lead_id: str) -> dict[str, list[ObjectInfo]]:
            return lead_objects(store, destination.prefix, lead_id, wanted=older[lead_id])

        for objects in ordered_map(lead, sorted(older), workers=self.options.workers, ahead=self.options.workers * 4):
            for infos in objects.values():
                listed.update((info.key, info) for info in infos)
        return listed

    def _content(
        self, store: Store, found: list[Finding], items: list[Expected], events: dict[str, dict[str, Any]]
    ) -> list[Finding]:
        by_id = {item.event_id: item for item in items}
        chosen = [
            f
            for f in found
            if f.verdict == Verdict.MATCH
            and (self.options.verify == "content" or sampled(f.event_id, self.options.sample_percent))
        ]
        wanted = {f.key: f for f in chosen}
        results: dict[str, Finding] = {}
        with self._reads_made:  # destinations of different stores are checked at once, in their own threads
            task = self._reads.get(store.url)
            if task is None:
                task = self._reads[store.url] = self.progress.start(f"reading {store.url}", total=0)
        task.expect(len(wanted))
        for key, body in read_many(store, list(wanted), workers=self.options.workers):
            results[key] = self._compared(store, wanted[key], by_id, events, body)
            task.advance()
        return [results.get(f.key, f) if f.verdict == Verdict.MATCH else f for f in found]

    def _compared(
        self,
        store: Store,
        finding: Finding,
        by_id: dict[str, Expected],
        events: dict[str, dict[str, Any]],
        body: bytes | ArchiveError,
    ) -> Finding:
        """One object read for a content check, against the API's event."""
        key = finding.key
        item = by_id[finding.event_id]
        try:
            if isinstance(body, ArchiveNotFound) and self._inventories:
                return _with(finding, Verdict.MISSING, GONE)  # the read itself is the confirmation
            if isinstance(body, Exception):
                raise body
            return classify_content(
                item,
                events[item.event_id],
                records(body, where=f"{store.url}/{key}"),
                include_pii=self.options.include_pii,
            )
        except (DataError, ArchiveError) as exc:
            return _with(finding, Verdict.ERROR, str(exc))

    def _settle_intents(self) -> None:
        settle_intents(self.state, self._store)

    def _repair(
        self, store: Store, found: list[Finding], events: dict[str, dict[str, Any]], credential: str | None
    ) -> list[Finding]:
        repaired = []
        for finding in found:
            if finding.verdict != Verdict.MISSING:
                repaired.append(finding)
                continue
            event = events.get(finding.event_id) or self.api.get_event(finding.event_id)
            try:
                written = write_missing(
                    store, self.state, event, event_id=finding.event_id, destination=finding.destination,
                    credential_id=credential, key=finding.key, window_start=self._window_start, run_id=self._run_id,
                )  # fmt: skip
            except ArchiveError as exc:
                repaired.append(_with(finding, Verdict.ERROR, f"repair failed: {exc}"))
                continue
            except DataError as exc:
                repaired.append(_with(finding, Verdict.ERROR, str(exc)))
                continue
            wrote, same = written.wrote, written.same
            if same:
                reason = "written and read back" if wrote else "already there when repair looked again"
                repaired.append(_with(finding, Verdict.REPAIRED, reason))
            else:
                repaired.append(_with(finding, Verdict.DIFFER, "an object appeared that differs from the API's"))
        return repaired


class ListingCursor:
    """One destination's listing for a whole run, consumed a window at a time.

    Lead ids sort by time and windows come in time order, so each window takes the next keys up to its end, and
    keeps those of leads made from ``lead_lookback`` before it; a run lists each destination once, like a plain
    walk, instead of once per window.
    """

    def __init__(self, stream: Iterator[ObjectInfo], task: Task | None = None) -> None:
        self._stream = stream
        self._task = task
        """Advanced by each key taken from the listing."""
        self._ahead: ObjectInfo | None = None
        self._held: dict[str, tuple[int, ObjectInfo, str]] = {}
        """key -> (its lead's second, the object, its event id)"""
        self._failed: ArchiveError | None = None

    def advance(self, *, until_seconds: int, keep_from_seconds: int, window_seconds: int) -> dict[str, ObjectInfo]:
        """The listed objects of leads made in ``[keep_from_seconds, until_seconds]`` (foreign keys skipped), and
        those of older leads listed earlier whose event is made at or after ``window_seconds`` (feedback on an old
        lead, which this window's archive-only check must see, as an audit's manifest does).

        A listing that failed fails every later window too: its keys are unknown, not absent."""
        if self._failed is not None:
            raise self._failed
        self._held = {
            key: held
            for key, held in self._held.items()
            if held[0] >= keep_from_seconds or seconds_of(held[2]) >= window_seconds
        }
        while True:
            try:
                info = self._ahead if self._ahead is not None else next(self._stream, None)
            except ArchiveError as exc:
                self._failed = exc
                raise
            if info is None:
                break
            if self._ahead is None and self._task is not None:
                self._task.advance()
            self._ahead = None
            ids = parse_key(info.key)
            if ids is None:
                continue
            made = seconds_of(ids[0])
            if made > until_seconds:
                self._ahead = info
                break
            if made >= keep_from_seconds or seconds_of(ids[1]) >= window_seconds:
                self._held[info.key] = (made, info, ids[1])
        return {key: info for key, (_, info, _) in self._held.items()}

    def close(self) -> None:
        if self._task is not None:
            self._task.done()
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()


def _lags(found: list[Finding], items: list[Expected], listed: dict[str, ObjectInfo]) -> LagHistogram:
    """The delivery lags of the objects found there (``match`` or ``differ``; a listing's, an inventory's or a
    live confirmation's last-modified)."""
    ended = {item.event_id: item.ended for item in items}
    histogram = LagHistogram()
    for finding in found:
        if finding.verdict not in (Verdict.MATCH, Verdict.DIFFER):
            continue
        info, end = listed.get(finding.key), ended.get(finding.event_id)
        modified = info.last_modified.timestamp() if info is not None else 0.0
        histogram.observe(delivery_lag(modified, end) if modified > 0 and end is not None else None)
    return histogram


def _with(finding: Finding, verdict: Verdict, reason: str) -> Finding:
    return replace(finding, verdict=verdict, reason=reason)


def _lead_unknown(event: dict[str, Any]) -> bool:
    lead = event.get("vars", {}).get("lead") if isinstance(event.get("vars"), dict) else None
    return not (isinstance(lead, dict) and lead.get("id"))


def _tally(findings: list[Finding]) -> dict[str, dict[str, int]]:
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for finding in findings:
        counts[finding.destination][finding.verdict.value] += 1
    return {destination: dict(counter) for destination, counter in counts.items()}
