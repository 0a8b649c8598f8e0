"""One poll of the watch: read what ``GET /events`` has new, then look for what is still awaited in the stores.

Reading: from the cursor (the highest event id seen) minus ``overlap``, oldest first. Event ids order by their
second only, and an event can become visible a little after later ones (ids are made on several LeadConduit
servers), so a cursor that only moved forward would miss some: the overlap is read again, and ids already seen
(kept in the state database for as long as the overlap reaches back) are skipped, so each is counted once.

Looking: per destination, one listing of the lead-id range of the awaited events' leads (a lead id starts with
its second, so the leads of a time range are one key range), cut where the leads are more than ``MERGE_GAP``
apart so that one old straggler does not drag in everything since; for an event whose lead is over
``LEAD_LOOKBACK`` older than it (feedback days later), a listing of its lead's folder: every spelling of its key,
as reconcile looks (a HEAD of the one spelling the watch would write missed ``<LEAD>/<EVENT>.json``, took it
for late, and ``--repair-after`` wrote it again beside itself). Found before the deadline: ``archived``, with its
lag (the object's last-modified minus the event's end). Not found at the deadline: ``late``, looked for again less and
less often (``RECHECK_MAX`` apart at most); found later: ``recovered``. A late event is given up (``forgotten``)
``FORGET_AFTER`` past its deadline: the nightly reconcile finds and repairs it.

Repairing (``--repair-after``): a late pair still not found ``repair_after`` after its event's end is written
(``reconciliation.repair``: the full event from ``GET /events/{id}``, write-if-absent at the key of the firehose's
layout, read back) and ends ``repaired``. An object that appeared meanwhile is left alone: ``recovered``. The API
no longer holding the event, or the store refusing the write, is a ``repair_failed`` alert, once per pair and
reason; the pair stays late (a refused write is tried again at its rechecks, an expired event never). A repair
goes into the state database's record of repairs before the pair is settled, so a watch killed in between
finds the object at its restart and settles it ``repaired``, without writing again.

Down: a destination is ``destination_down`` ``down_after`` after its first failed request (every one since
failing), or after its last arrival (the newest object found: its last-modified) while an event has waited that
long, whichever comes first. An event counts there while it was not yet due at the last arrival (one late before
something later arrived is lost, not an outage), repaired ones too (a repair is not an arrival). Not decided
at a poll only: ``wake_at`` is the moment the first destination falls down if nothing changes, and ``look_again``
then looks at those destinations alone, so the alert is not up to two intervals late.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from firehose.api import EventQuery, LeadConduit
from firehose.archive import ObjectInfo, Store
from firehose.archive.layout import parse_key
from firehose.archive.listing import lead_objects, list_window
from firehose.errors import ApiError, ApiStatusError, ArchiveError, ConfigError, DataError
from firehose.event import Destination, EventView
from firehose.ids import lowest_id_at, seconds_of
from firehose.reconciliation.lags import delivery_lag
from firehose.reconciliation.repair import settle_intent, settle_intents, write_missing
from firehose.secret import redact_text
from firehose.watching.alerts import outage_alert, pair_alert
from firehose.watching.ledger import EXPIRED, Pair, WatchLedger
from firehose.watching.options import WatchOptions

log = logging.getLogger(__name__)

FIELDS = ("id", "type", "vars.lead.id", "firehose", "end_timestamp")
"""What the watch asks ``/events`` for: where each event goes, and when it ended."""
LEAD_LOOKBACK = 3600
"""An event whose lead is older than this (seconds) is looked for in its lead's folder, not in the listing."""
MERGE_GAP = 300
"""Awaited leads this close (seconds) are listed as one range."""
RECHECK_MAX = 3600.0
FORGET_AFTER = 7 * 86_400
BATCH = 1000
"""New events committed together (with the cursor)."""
MAX_EVENTS_PER_POLL = 200_000
"""A poll stops reading here and checks; the next one goes on at once (a backlog never starves the checks)."""
WATCH_RUN = 0
"""The run id a watch's repairs carry in the record of repairs (reconcile runs count from 1)."""


NEWEST_LOOKED_FOR = 100
"""Pairs looked for at a destination whose down is due with none of its own due (all late): enough to see an
arrival; each of an older lead costs a listing of its folder."""

DELIVERED = ("archived", "recovered")
"""Outcomes of an object the firehose wrote (not a repair's): its arrival tells the destination is up."""


@dataclass
class Health:
    """What the watch knows of one destination (or the API) between polls; kept in memory."""

    last_arrival: float
    """The newest object found there: its last-modified, never before its event's end nor after the moment the
    watch saw it (a store's clock that runs ahead or behind cannot move it past either); the watch's start
    until one is found."""
    failing_since: float | None = None
    """The first of the requests failing since the last one answered."""
    repaired: float | None = None
    """The end of the oldest event the watch found repaired (its own write, or a reconcile's) not yet due at the
    last arrival: it never arrived, so it tells of an outage as an event still awaited does (left out, repairs
    sooner than ``down_after`` hid a destination that took no writes at all)."""
    down: bool = False


@dataclass
class Outcomes:
    """What one destination's check decided, for the poll's one transaction."""

    done: list[tuple[Pair, str]] = field(default_factory=list)
    made_late: list[Pair] = field(default_factory=list)
    rechecked: list[Pair] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Poll:
    """What one poll did."""

    events: int = 0
    """New events read (not counting those of the overlap read again)."""
    seen: Counter[str] = field(default_factory=Counter)
    """New (event, destination) pairs, per destination."""
    settled: Counter[str] = field(default_factory=Counter)
    requests: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    api_failed: bool = False
    failed: set[str] = field(default_factory=set)
    """Destinations whose requests failed."""
    more: bool = False
    """The poll stopped at ``MAX_EVENTS_PER_POLL``: more are waiting."""
    read: bool = True
    """``GET /events`` was read (False: a look at destinations whose down was due, ``Watcher.look_again``)."""


Settled = Callable[[Pair, str, float | None], None]
"""Told of every pair settled (``archived``, ``recovered``, ``forgotten``) and of every new ``late``, with the
delivery lag in seconds where the object was found (for metrics)."""


class Watcher:
    """The watch's state between polls: the ids of the overlap, the stores open, each destination's health."""

    def __init__(
        self,
        api: LeadConduit,
        open_store: Callable[[Destination], Store],
        ledger: WatchLedger,
        options: WatchOptions,
        *,
        deliver: Callable[[dict[str, Any]], None],
        stop: threading.Event,
        api_name: str,
        clock: Callable[[], float] = time.time,
        settled: Settled | None = None,
    ) -> None:
        self.api, self.open_store, self.ledger, self.options = api, open_store, ledger, options
        self.deliver, self.stop, self.api_name, self.clock = deliver, stop, api_name, clock
        self.settled = settled or (lambda pair, outcome, lag: None)
        self._seen = ledger.seen_ids()
        self._stores: dict[tuple[str, str, str | None], Store] = {}
        self.started = clock()
        self._health: dict[str, Health] = {}
        self._api = Health(self.started)
        self._intended: set[tuple[str, str]] = set()
        """The (event, destination) pairs with a repair intent at this poll's start (a small table)."""
        self._down_at: dict[str, float] = {}
        """Per destination not down yet, the moment it will be if nothing arrives (or nothing answers) till then."""
        self._intents_settled = False
        """Settled at the first poll, with or without ``--repair-after``: a repair a killed watch wrote is ``repaired``
        when found, whatever this watch repairs."""

    def poll(self) -> Poll:
        self._deliver()  # what a killed run decided and never delivered
        if not self._intents_settled:  # repairs a killed watch wrote and never recorded
            settle_intents(self.ledger.state, self._store)
            self._intents_settled = True
        poll = Poll()
        # Pairs whose deadline passed since the last look are decided first, not after this poll's read of the
        # API (seconds at 1,000 events/s): `late` comes within deadline + interval, whatever the read takes.
        due = set(self.ledger.turning_late_at(self.clock()))
        if due:
            self._check(self.clock(), poll, only=due)
            self._deliver()
        try:
            self._read(self.clock(), poll)
        except (ApiError, DataError) as exc:  # AuthError is a ConfigError: a wrong key is not an outage
            if self.options.once:
                raise
            poll.api_failed = True
            self._outage(self._api, self.clock(), str(exc), "api", {"api": self.api_name})
        else:
            self._recovered(self._api, self.clock(), None, "api", {"api": self.api_name})
        # Those just looked at have their new pairs looked for at the next look (a single poll, --once: now).
        self._check(self.clock(), poll, but=set() if self.options.once else due)
        self._deliver()
        return poll

    def wake_at(self) -> float | None:
        """The earliest moment a destination (or the API) becomes down if nothing changes until then: the watch
        looks again at that moment (``look_again``) instead of at its next poll, so that ``*_down`` comes
        ``down_after`` after the last arrival (or the first failed request), not up to two intervals later."""
        found = list(self._down_at.values())
        if self._api.failing_since is not None and not self._api.down:
            found.append(self._api.failing_since + self._down_after)
        return min(found, default=None)

    def look_again(self) -> Poll:
        """At ``wake_at``: what a poll would do for the destinations whose down is due, and nothing for the
        others (their pairs' one listing, or their pending pairs' where none is due yet); a whole poll when it is
        the API's."""
        now = self.clock()
        api = self._api
        if api.failing_since is not None and not api.down and api.failing_since + self._down_after <= now:
            return self.poll()
        poll = Poll(read=False)
        self._check(now, poll, only={url for url, at in self._down_at.items() if at <= now})
        self._deliver()
        return poll

    @property
    def _down_after(self) -> float:
        return self.options.down_after.total_seconds()

    def close(self) -> None:
        for store in self._stores.values():
            store.close()

    # -- reading -------------------------------------------------------------------------------------------
    def _read(self, now: float, poll: Poll) -> None:
        cursor = self.ledger.cursor()
        if cursor is None:
            start = self.options.start or datetime.fromtimestamp(now, tz=UTC) - self.options.deadline
            query = EventQuery(start=start, include=FIELDS)
        else:
            # Never from later than now: an id ahead of this machine's clock must not push the overlap past
            # events made since.
            floor = lowest_id_at(min(seconds_of(cursor), int(now)) - int(self.options.overlap.total_seconds()))
            query = EventQuery(after_id=floor, include=FIELDS)
            self._forget_below(floor)
        ids: list[str] = []
        pairs: list[Pair] = []
        newest = cursor
        read = 0
        for event in self.api.iter_events(query, max_events=MAX_EVENTS_PER_POLL):
            read += 1
            event_id = str(event["id"]).lower()
            if event_id in self._seen:
                continue
            self._seen.add(event_id)
            ids.append(event_id)
            made = self._pairs(event)
            poll.seen.update(pair.destination for pair in made)
            pairs.extend(made)
            newest = max(newest or event_id, event_id)
            if len(ids) >= BATCH:
                self.ledger.record_events(ids, pairs, newest)
                poll.events += len(ids)
                ids, pairs = [], []
                if self.stop.is_set():
                    return  # a checkpoint: what was read is saved, the rest is read again next time
        self.ledger.record_events(ids, pairs, newest)
        poll.events += len(ids)
        poll.more = read >= MAX_EVENTS_PER_POLL

    def _forget_below(self, floor: str) -> None:
        if any(event_id < floor for event_id in self._seen):
            self._seen = {event_id for event_id in self._seen if event_id >= floor}
            self.ledger.forget_seen_below(floor)

    def _pairs(self, event: dict[str, Any]) -> list[Pair]:
        view = EventView(event)
        targets = [self.options.archive] if self.options.archive else view.destinations()
        if not targets:
            return []
        lead_id = view.lead_id
        if lead_id is None:  # only in the source response's body, which the fields asked for leave out
            view = EventView(self.api.get_event(view.id))
            lead_id = view.lead_id
            if lead_id is None:
                log.warning("event %s names no lead id: its objects cannot be looked for", view.id)
                return []
        ended = view.ended
        deadline = ended + self.options.deadline.total_seconds()
        return [
            Pair(view.id, d.url(), d.credential_id, d.key(lead_id, view.id), lead_id, ended, deadline) for d in targets
        ]

    # -- looking -------------------------------------------------------------------------------------------
    def _to_look_at(self, now: float, only: set[str] | None, but: set[str]) -> list[tuple[str, str | None, list[Pair]]]:
        """The destinations (URL, credential) to look at now, each with the extra pairs to look for: of the
        destinations ``only`` names, if given, but not those ``but`` names. One whose down is due with no pair to
        look for (all late, their rechecks later) has its newest awaited pairs looked for, or nothing would tell
        whether anything arrived."""
        targets: list[tuple[str, str | None, list[Pair]]] = [
            (url, credential_id, [])
            for url, credential_id in self.ledger.looking(now)
            if (only is None or url in only) and url not in but
        ]
        for url in sorted((only or set()) - {url for url, _, _ in targets}):
            newest = self.ledger.newest_waiting(url, NEWEST_LOOKED_FOR)
            if newest:
                targets.append((url, newest[0].credential_id, newest))
        return targets

    def _check(self, now: float, poll: Poll, only: set[str] | None = None, but: set[str] | None = None) -> None:
        """Look for the pairs due (at the destinations ``only`` names, if given, but not at those ``but`` names)
        and settle what was decided."""
        self._intended = {(i.event_id, i.destination) for i in self.ledger.state.repair_intents()}
        decided = Outcomes()
        answered: list[tuple[str, Health, float | None, float | None]] = []
        """Destinations whose requests answered, with when the newest object found was written and the end of
        the oldest event repaired."""
        failures: list[tuple[str, Health, str]] = []
        """Destinations whose requests failed, with why."""
        events: dict[str, dict[str, Any] | None] = {}
        """Full events fetched for repairs this poll (None: the API no longer holds it), by id."""
        for url, credential_id, newest in self._to_look_at(now, only, but or set()):
            health = self._health_of(url)
            destination = Destination.from_url(url, credential_id)
            try:
                found, pairs = self._look(destination, now, poll.requests[url], newest)
            except (ArchiveError, ConfigError) as exc:
                poll.failed.add(url)
                failures.append((url, health, str(exc)))
                continue
            mine = Outcomes()
            arrived: float | None = None
            to_repair: list[Pair] = []
            repaired = self.ledger.state.repaired_among(url, found)  # a reconcile's repair: not the firehose's
            for pair in pairs:
                info = found.get(pair.event_id)
                if info is not None:
                    if self._found(pair, info, now, mine, repaired=pair.event_id in repaired) in DELIVERED:
                        # When the firehose wrote it: its last-modified, not before its event ended nor after now.
                        arrival = min(max(info.last_modified.timestamp(), pair.ended), now)
                        arrived = arrival if arrived is None else max(arrived, arrival)
                elif pair.late and now - pair.deadline > FORGET_AFTER:
                    mine.done.append((pair, "forgotten"))
                    self.settled(pair, "forgotten", None)
                elif pair.late and self._repair_due(pair, now):
                    to_repair.append(pair)
                elif pair.late:
                    mine.rechecked.append(replace(pair, next_check=self._next_check(pair, now)))
                elif pair.deadline <= now:
                    mine.made_late.append(replace(pair, late=True, next_check=now))
                    self.settled(pair, "late", None)
                    mine.alerts.append(pair_alert("late", now, pair))
            if to_repair:
                self._repair(destination, to_repair, now, events, mine, poll.requests[url])
            poll.settled.update(outcome for _, outcome in mine.done)
            poll.settled["late"] += len(mine.made_late)
            decided.done.extend(mine.done)
            decided.made_late.extend(mine.made_late)
            decided.rechecked.extend(mine.rechecked)
            decided.alerts.extend(mine.alerts)
            ends = [pair.ended for pair, outcome in mine.done if outcome == "repaired"]
            answered.append((url, health, arrived, min(ends, default=None)))
        self.ledger.settle(
            done=decided.done, made_late=decided.made_late, rechecked=decided.rechecked, alerts=decided.alerts
        )
        self._judge(now, answered, failures)

    def _judge(
        self,
        now: float,
        answered: list[tuple[str, Health, float | None, float | None]],
        failures: list[tuple[str, Health, str]],
    ) -> None:
        """Each destination looked at, up or down, and when each not down falls down if nothing changes."""
        # What still waits once this look settled its finds: read before, a destination whose every awaited
        # object was just found, written more than down_after ago, was down (polls further apart than it).
        deadline = self.options.deadline.total_seconds()
        for _, health, arrived, repaired in answered:  # first: what waits is counted from the last arrival
            if arrived is not None:
                health.last_arrival = max(health.last_arrival, arrived)
            if health.repaired is not None and health.repaired <= health.last_arrival - deadline:
                health.repaired = None  # something later arrived
            if repaired is not None and repaired > health.last_arrival - deadline:
                health.repaired = repaired if health.repaired is None else min(health.repaired, repaired)
        waiting = self._waiting()
        for url, health, reason in failures:
            self._outage(health, now, reason, "destination", {"destination": url}, waiting=waiting.get(url))
        for url, health, _, _ in answered:
            self._recovered(health, now, waiting.get(url), "destination", {"destination": url})
        looked = {url for url, *_ in answered} | {url for url, *_ in failures}
        for url in sorted(set(waiting) - looked - set(self.ledger.destinations())):
            # Only a repair tells of it: nothing to look for, so nothing could be seen arriving since.
            self._recovered(self._health_of(url), now, waiting[url], "destination", {"destination": url})
        self._down_at = self._down_times(waiting)

    def _waiting(self) -> dict[str, float]:
        """Per destination, the end of the oldest event awaited there, or repaired (``Health.repaired``), that
        tells of an outage: one not yet due when the last object arrived. One already late then is lost, not a
        sign the destination is down (later ones arrived): counted, a quiet destination with one lost event was
        down at every gap between its events, for the days that event is looked for."""
        deadline = self.options.deadline.total_seconds()
        found = self.ledger.waiting_since(lambda url: self._health_of(url).last_arrival - deadline)
        for url, health in self._health.items():
            if health.repaired is not None and health.repaired > health.last_arrival - deadline:
                found[url] = min(found.get(url, health.repaired), health.repaired)
        return found

    def _health_of(self, url: str) -> Health:
        return self._health.setdefault(url, Health(self.started))

    def _down_times(self, waiting: dict[str, float]) -> dict[str, float]:
        """Per destination not down that events wait for, when it is down if nothing changes: ``down_after``
        after its first failed request, or after its last arrival or its oldest waiting event's end, whichever
        is later, if that comes first (a destination no event goes to is never down). ``waiting``: the oldest end
        of the events still awaited, per destination (``_waiting``)."""
        found: dict[str, float] = {}
        for url, oldest in waiting.items():
            health = self._health_of(url)
            if health.down:
                continue
            silent = max(health.last_arrival, oldest) + self._down_after
            failing = silent if health.failing_since is None else health.failing_since + self._down_after
            found[url] = min(silent, failing)
        return found

    def _found(
        self, pair: Pair, info: ObjectInfo, now: float, into: Outcomes, *, repaired: bool | None = None
    ) -> str | None:
        """A pair's object is there: ``archived`` in time, ``recovered`` after its deadline, or ``repaired`` when
        it is a repair's (a watch killed after writing it, before settling it; one whose answer was lost; or a
        reconcile's, before or after the deadline). Returns the outcome; None when it cannot be told yet (another
        process's repair in flight). ``repaired``: whether the record of repairs holds it, when the caller asked
        for a batch."""
        state = self.ledger.state
        if pair.late or (pair.event_id, pair.destination) in self._intended:
            self._settle_intent(pair)
            if state.repair_in_flight(pair.event_id, pair.destination):
                # Another process (a reconcile --repair) is writing it and has not recorded it yet: decided at
                # the next look, once it has (``repaired``) or is gone (its intent settled here).
                into.rechecked.append(replace(pair, next_check=now + self.options.interval.total_seconds()))
                return None
            repaired = None
        if repaired is None:
            repaired = state.was_repaired(pair.event_id, pair.destination)
        if repaired:
            into.done.append((pair, "repaired"))
            self.settled(pair, "repaired", None)  # its last-modified is the repair's: no delivery lag
            into.alerts.append(pair_alert("repaired", now, pair))
            return "repaired"
        lag = delivery_lag(info.last_modified.timestamp(), pair.ended)  # None: clocks that disagree
        outcome = "recovered" if pair.late else "archived"
        into.done.append((pair, outcome))
        self.settled(pair, outcome, lag)
        if pair.late:
            into.alerts.append(pair_alert("recovered", now, pair, lag_seconds=None if lag is None else round(lag, 3)))
        return outcome

    def _settle_intent(self, pair: Pair) -> None:
        """A repair of this pair still unsettled (its write failed with no answer: the store may have taken it):
        settled now that its key is found, by its bytes, so that the watch's own write is ``repaired``."""
        state = self.ledger.state
        for intent in state.unsettled_intents():
            if (intent.event_id, intent.destination) == (pair.event_id, pair.destination):
                settle_intent(state, intent, self._store, why="whose write had no answer")

    def _next_check(self, pair: Pair, now: float) -> float:
        """A late pair is looked for again less and less often, but at its repair time when that comes first."""
        wait = min(RECHECK_MAX, max(self.options.interval.total_seconds(), (now - pair.deadline) / 4))
        if self.options.repair_after is not None and pair.repair is None:
            repair_at = pair.ended + self.options.repair_after.total_seconds()
            if repair_at > now:
                return min(now + wait, repair_at)
        return now + wait

    def _repair_due(self, pair: Pair, now: float) -> bool:
        after = self.options.repair_after
        return after is not None and pair.repair != EXPIRED and now >= pair.ended + after.total_seconds()

    def _repair(
        self,
        destination: Destination,
        pairs: list[Pair],
        now: float,
        events: dict[str, dict[str, Any] | None],
        into: Outcomes,
        requests: Counter[str],
    ) -> None:
        """Write each of ``pairs`` (late, still missing, past ``repair_after``) as ``reconcile --repair`` does."""
        store = self._store(destination)
        with store.requests.added_to(requests):
            for pair in pairs:
                if self.stop.is_set():  # a checkpoint: the rest stay due, repaired by the next watch
                    return
                if pair.event_id not in events:
                    try:
                        events[pair.event_id] = self._full_event(pair.event_id)
                    except (ApiError, DataError) as exc:  # the rest stay due: tried again next poll
                        log.warning("repairs wait: %s", redact_text(str(exc)))
                        return
                event = events[pair.event_id]
                if event is None:
                    why = "the API no longer holds the event (expired): it cannot be repaired"
                    self._repair_failed(pair, EXPIRED, why, now, into)
                    continue
                try:
                    written = write_missing(
                        store, self.ledger.state, event, event_id=pair.event_id, destination=pair.destination,
                        credential_id=pair.credential_id, key=pair.key, window_start=_day_of(pair.event_id),
                        run_id=WATCH_RUN,
                    )  # fmt: skip
                except (ArchiveError, DataError) as exc:
                    why = f"cannot write {pair.key}: {redact_text(' '.join(str(exc).split()))[:500]}"
                    self._repair_failed(pair, why, why, now, into)
                    continue
                differs = {} if written.same else {"note": "what the key holds differs from the API's event"}
                if written.wrote:
                    into.done.append((pair, "repaired"))
                    self.settled(pair, "repaired", None)
                    into.alerts.append(pair_alert("repaired", now, pair, **differs))
                    log.debug("repaired %s at %s", pair.key, pair.destination)  # its alert is the line of note
                    continue
                # The firehose delivered it between the look and the write: left alone, its arrival counted.
                info = store.head(pair.key)
                if info is not None:
                    if self._found(pair, info, now, into) is not None and differs:
                        into.alerts[-1].update(differs)
                else:  # there at the write, gone at the read: looked for again
                    into.rechecked.append(replace(pair, next_check=self._next_check(pair, now)))

    def _full_event(self, event_id: str) -> dict[str, Any] | None:
        """The event as the API returns it (what the firehose writes); None when the API no longer holds it (any
        other failure is raised: the API's outage, which ``GET /events`` tells of)."""
        try:
            return self.api.get_event(event_id)
        except ApiStatusError as exc:
            if exc.status == 404:
                return None
            raise

    def _repair_failed(self, pair: Pair, repair: str, why: str, now: float, into: Outcomes) -> None:
        """The pair stays late, looked for again (its repair tried again unless ``EXPIRED``); the failure is told
        once per reason, not at every recheck."""
        failed = replace(pair, repair=repair)
        into.rechecked.append(replace(failed, next_check=self._next_check(failed, now)))
        if pair.repair != repair:
            log.warning("%s: repair of %s failed: %s", pair.destination, pair.event_id, why)
            into.alerts.append(pair_alert("repair_failed", now, pair, reason=why))

    def _look(
        self, destination: Destination, now: float, requests: Counter[str], newest: list[Pair]
    ) -> tuple[dict[str, ObjectInfo], list[Pair]]:
        """The objects found (by event id) of the pairs of ``destination`` looked for at ``now``, and the pairs to
        decide: those found, those whose deadline has come, the late ones due for a recheck (the others wait
        unread: a poll's work follows the objects listed and the deadlines passed, not the backlog), and
        ``newest``, looked for as rechecks are. One listing per range of recent leads, one of its folder for each
        older lead."""
        store = self._store(destination)
        url = destination.url()
        rechecks = list({pair.event_id: pair for pair in [*newest, *self.ledger.rechecks(url, now)]}.values())
        pairs = {pair.event_id: pair for pair in rechecks}
        recent = {seconds_of(pair.lead_id) for pair in rechecks if not _older_lead(pair.lead_id, pair.event_id)}
        older: list[tuple[str, str]] = []
        for lead, event in self.ledger.waiting_seconds(url):
            if _older_lead(lead, event):
                older.append((lead, event))
            else:
                recent.add(seconds_of(lead))
        found: dict[str, ObjectInfo] = {}
        with store.requests.added_to(requests):
            for low, high in _ranges(sorted(recent)):
                for info in list_window(
                    store, destination.prefix, start_seconds=low, end_seconds=high, workers=self.options.workers
                ):
                    ids = parse_key(info.key)
                    if ids is not None:
                        found.setdefault(ids[1], info)
            pairs.update((pair.event_id, pair) for pair in self.ledger.pairs_found(url, found, now))
            found = {event_id: info for event_id, info in found.items() if event_id in pairs}
            folders = [pair for pair in [*self.ledger.waiting_of_seconds(url, older), *rechecks]
                       if _older_lead(pair.lead_id, pair.event_id)]  # fmt: skip
            pairs.update((pair.event_id, pair) for pair in folders)
            for event_id, info in self._look_in_folders(store, destination, folders).items():
                found.setdefault(event_id, info)
        for pair in self.ledger.turning_late(url, now):
            pairs.setdefault(pair.event_id, pair)
        return found, sorted(pairs.values(), key=lambda pair: pair.event_id)

    @staticmethod
    def _look_in_folders(store: Store, destination: Destination, pairs: list[Pair]) -> dict[str, ObjectInfo]:
        """The objects of ``pairs`` (events of older leads) found in their leads' folders: every spelling of
        their keys, as reconcile looks (not a HEAD)."""
        by_lead: dict[str, set[str]] = defaultdict(set)
        for pair in pairs:
            by_lead[pair.lead_id].add(pair.event_id)
        found: dict[str, ObjectInfo] = {}
        for lead_id, events in by_lead.items():
            for event_id, infos in lead_objects(store, destination.prefix, lead_id, wanted=events).items():
                if event_id in events:
                    found.setdefault(event_id, infos[0])
        return found

    def _store(self, destination: Destination) -> Store:
        name = (destination.scheme, destination.bucket, destination.credential_id)
        if name not in self._stores:
            self._stores[name] = self.open_store(destination)
        return self._stores[name]

    # -- health --------------------------------------------------------------------------------------------
    def _outage(
        self, health: Health, now: float, reason: str, what: str, where: dict[str, str], *, waiting: float | None = None
    ) -> None:
        """A failed request: down once every request has failed for ``down_after``, or once nothing has arrived
        for that long while an event (ended at ``waiting``) has waited that long: a store that became unreachable
        took no writes either, so it is down when one that only stopped taking writes is, not ``down_after`` after
        the watch's first look that failed (at best the moment it was due down: twice as late)."""
        health.failing_since = health.failing_since if health.failing_since is not None else now
        log.warning("%s: %s", next(iter(where.values())), reason)
        silent = self._silent(health, now, waiting)
        if health.down or (now - health.failing_since < self._down_after and not silent):
            return
        health.down = True
        since = min(health.failing_since, health.last_arrival) if silent else health.failing_since
        self._send([outage_alert(f"{what}_down", now, since=since, reason=reason, **where)])

    def _recovered(self, health: Health, now: float, waiting: float | None, what: str, where: dict[str, str]) -> None:
        """A request answered (its finds already in ``last_arrival``). A destination is down too when nothing has
        arrived for ``down_after`` while an event (ended at ``waiting``) has waited that long (writes stopped: no
        request fails, nothing comes)."""
        health.failing_since = None
        silent = self._silent(health, now, waiting)
        if health.down and not silent:
            health.down = False
            self._send([outage_alert(f"{what}_up", now, since=now, **where)])
        elif silent and not health.down:
            health.down = True
            reason = f"nothing has arrived for {now - health.last_arrival:.0f} s while events wait"
            self._send([outage_alert(f"{what}_down", now, since=health.last_arrival, reason=reason, **where)])

    def _silent(self, health: Health, now: float, waiting: float | None) -> bool:
        down_after = self._down_after
        return waiting is not None and now - waiting >= down_after and now - health.last_arrival >= down_after

    def _send(self, alerts: list[dict[str, Any]]) -> None:
        """Alerts to deliver now (through the outbox)."""
        self.ledger.settle(done=[], made_late=[], rechecked=[], alerts=alerts)

    def _deliver(self) -> None:
        for number, alert in self.ledger.undelivered():
            self.deliver(alert)
            self.ledger.delivered(number)


def _day_of(event_id: str) -> datetime:
    """The UTC midnight that begins the event's day: the window a nightly reconcile (one window a day) keeps its
    findings under, so that a watch's repair makes that reconcile look at the day again."""
    return datetime.fromtimestamp(seconds_of(event_id) // 86_400 * 86_400, tz=UTC)


def _older_lead(lead_id: str, event_id: str) -> bool:
    """An event whose lead is over ``LEAD_LOOKBACK`` older than it: looked for in its lead's folder."""
    return seconds_of(event_id) - seconds_of(lead_id) > LEAD_LOOKBACK


def _ranges(seconds: list[int]) -> Iterator[tuple[int, int]]:
    """Sorted lead seconds as ranges, cut where two are more than ``MERGE_GAP`` apart."""
    if not seconds:
        return
    low = high = seconds[0]
    for second in seconds[1:]:
        if second - high > MERGE_GAP:
            yield low, high
            low = second
        high = second
    yield low, high
