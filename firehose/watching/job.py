"""The watch as one library call: ``watch(options, settings)`` polls until told to stop (or once), delivering
each alert to ``on_alert`` as it is decided, and returns what it saw."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from firehose.config import Settings
from firehose.connections import api_client, destination_opener
from firehose.errors import ExitCode
from firehose.http import RetryInterrupted
from firehose.watching.ledger import Pair, WatchLedger
from firehose.watching.options import WatchOptions

if TYPE_CHECKING:  # the watcher itself is imported when a watch starts
    from firehose.watching.watcher import Poll, Settled, Watcher


SCHEMA = "firehose.watch/1"

notes = logging.getLogger("firehose.watching")
"""The watch's events of note, one line each (a poll with news, each alert, a delivery failing): the command line
shows this logger's info lines unless ``--quiet``."""


@dataclass(frozen=True)
class WatchResult:
    """What a watch saw, this run and in all (the totals live in the state database)."""

    options: WatchOptions
    polls: int
    events: int
    """New events this run."""
    this_run: dict[str, int]
    """Outcomes this run: ``archived``, ``late``, ``recovered``, ``repaired``, ``forgotten``."""
    totals: dict[str, dict[str, int]]
    """Per destination and outcome, since the state database began (``seen`` included)."""
    late: int
    """Pairs late and still missing at the end."""
    requests: dict[str, dict[str, int]] = field(default_factory=dict)
    """Store requests this run, per destination and kind."""
    failed: tuple[str, ...] = ()
    """Destinations whose requests failed in the last poll."""

    @property
    def exit_code(self) -> ExitCode:
        """A watch that runs until stopped exits 0 (its alerts tell); ``--once`` tells by its code, as cron wants:
        5 when a destination could not be read, 1 while an event is late, else 0."""
        if not self.options.once:
            return ExitCode.OK
        if self.failed:
            return ExitCode.ARCHIVE
        return ExitCode.DIFFERENCES if self.late else ExitCode.OK

    def report(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "polls": self.polls,
            "events": self.events,
            "this_run": dict(self.this_run),
            "late_now": self.late,
            "totals": self.totals,
            "requests": self.requests,
            "failed": list(self.failed),
            "exit_code": int(self.exit_code),
        }


def watch(
    options: WatchOptions,
    settings: Settings,
    *,
    on_alert: Callable[[dict[str, Any]], None] | None = None,
    stop: threading.Event | None = None,
    credential_id: str | None = None,
    clock: Callable[[], float] = time.time,
    settled: Settled | None = None,
) -> WatchResult:
    """Follow ``GET /events`` and check each event's destinations until ``stop`` is set (between polls, or at a
    checkpoint inside one) or, with ``options.once``, for one poll. One watch at a time per state database."""
    from firehose.api import LeadConduit
    from firehose.ids import seconds_of
    from firehose.secret import redact_text
    from firehose.state import RunLock, StateDB
    from firehose.watching.watcher import Watcher

    metrics, settled = _with_metrics(options, settled)
    stop = stop or threading.Event()
    raised, delivery = _alerting(options, settings, on_alert, metrics)
    client = api_client(settings)
    requests: dict[str, Counter[str]] = defaultdict(Counter)
    outcomes: Counter[str] = Counter()
    polls = events = 0
    failed: set[str] = set()
    with contextlib.ExitStack() as stack:
        stack.enter_context(RunLock(settings.state_file, "watch", "firehose watch"))
        state = stack.enter_context(StateDB(settings.state_file))
        http = stack.enter_context(client)
        ledger = WatchLedger(state, settings.api.url)
        ledger.open_sinks(["stdout", *delivery.keys])
        if metrics is not None:
            if options.metrics_port is not None:
                metrics.serve(options.metrics_port)
                stack.callback(metrics.close)
            if options.metrics_file is not None:
                metrics.write(options.metrics_file)  # a path that cannot be written fails now, not after a poll
        watcher = Watcher(
            LeadConduit(http),
            destination_opener(settings, credential_id),
            ledger,
            options,
            deliver=raised,
            stop=stop,
            api_name=redact_text(settings.api.url),
            clock=clock,
            settled=settled,
        )
        stack.callback(watcher.close)
        delivery.start()
        stack.callback(delivery.close, 2 * options.alert_timeout.total_seconds())  # a hung try, then retries

        def count(poll: Poll) -> None:
            nonlocal polls, events, failed
            delivery.wake()
            _note(poll)
            events += poll.events
            outcomes.update(poll.settled)
            for url, kinds in poll.requests.items():
                requests[url].update(kinds)
            if poll.read:  # a look at one destination is no poll: the others' failures stand
                polls += 1
                failed = poll.failed
            if metrics is not None:
                cursor = ledger.cursor()
                # An id made in the second now ends, or on a clock a little ahead, is no negative age.
                age = max(0.0, clock() - seconds_of(cursor)) if cursor else None
                metrics.polled(poll, age, options.metrics_file)

        http.interrupt_on(stop)
        _follow(watcher, options, stop, clock, count)
        return WatchResult(
            options,
            polls,
            events,
            dict(outcomes),
            ledger.counts(),
            ledger.late_now(),
            {url: dict(kinds) for url, kinds in requests.items()},
            tuple(sorted(failed)),
        )


def _follow(
    watcher: Watcher,
    options: WatchOptions,
    stop: threading.Event,
    clock: Callable[[], float],
    count: Callable[[Poll], None],
) -> None:
    """Poll, then wait (waking for a destination's down) until the next, until ``stop`` is set or once."""
    while True:
        began = clock()
        try:
            poll = watcher.poll()
            count(poll)
            if options.once or stop.is_set():
                return
            if not poll.more:
                _wait(watcher, began + options.interval.total_seconds(), stop, clock, count)
        except RetryInterrupted:  # stopped between two attempts of an API request: what was read is saved
            return
        if stop.is_set():
            return


def _wait(
    watcher: Watcher, next_poll: float, stop: threading.Event, clock: Callable[[], float], count: Callable[[Poll], None]
) -> None:
    """Until ``next_poll``, waking at each moment a destination (or the API) falls down if nothing has changed
    (``Watcher.wake_at``) to look at it then: its ``*_down`` goes out on time, not at the next poll. A moment that
    does not move on after its look (nothing left to look at) is left to the next poll."""
    last: float | None = None
    while not stop.is_set():
        wake = watcher.wake_at()
        if wake is None or wake >= next_poll or (last is not None and wake <= last):
            break
        while (left := wake - clock()) > 0:  # its moment, by the watch's clock (a wait may end a little early)
            if stop.wait(left):
                return
        last = wake
        count(watcher.look_again())
    stop.wait(max(0.0, next_poll - clock()))


def _alerting(
    options: WatchOptions,
    settings: Settings,
    on_alert: Callable[[dict[str, Any]], None] | None,
    metrics: Any,
) -> tuple[Callable[[dict[str, Any]], None], Any]:
    """What the watcher calls for each alert as it goes to stdout (``on_alert``, a line in the log, the metrics),
    and the couriers (``delivery.AlertDelivery``) taking the outbox to each ``--alert-url`` and
    ``--alert-command``."""
    from firehose.state import StateDB
    from firehose.watching.alerts import alert_line, is_alarm
    from firehose.watching.delivery import AlertDelivery, make_sinks

    def raised(alert: dict[str, Any]) -> None:
        if on_alert is not None:
            on_alert(alert)
        notes.log(logging.WARNING if is_alarm(alert) else logging.INFO, "%s", alert_line(alert),
                  extra={"fields": alert})  # fmt: skip
        if metrics is not None:
            metrics.alerted(alert)

    @contextlib.contextmanager
    def own_ledger() -> Iterator[WatchLedger]:  # a courier's: its own connection, in its own thread
        with StateDB(settings.state_file) as own:
            yield WatchLedger(own, settings.api.url)

    sinks = make_sinks(
        options.alert_urls, options.alert_commands, options.alert_timeout.total_seconds(), [settings.api.key_env]
    )
    return raised, AlertDelivery(sinks, own_ledger, metrics)


def _note(poll: Any) -> None:
    """One line for a poll with news: new events, outcomes, destinations failing (``watcher.Poll``)."""
    outcomes = {outcome: number for outcome, number in sorted(poll.settled.items()) if number}
    if not (poll.events or outcomes or poll.failed):
        return
    said = ", ".join(f"{number} {outcome}" for outcome, number in outcomes.items())
    failed = f"; failing: {', '.join(sorted(poll.failed))}" if poll.failed else ""
    notes.info(
        "poll: %d new event%s%s%s", poll.events, "" if poll.events == 1 else "s", f"; {said}" if said else "", failed,
        extra={"fields": {"event": "poll", "new_events": poll.events, **outcomes, "failed": sorted(poll.failed)}},
    )  # fmt: skip


def _with_metrics(options: WatchOptions, settled: Settled | None) -> tuple[Any, Settled | None]:
    """The metrics the options ask for (None: none), and ``settled`` also telling them of each outcome."""
    if options.metrics_port is None and options.metrics_file is None:
        return None, settled
    from firehose.watching.metrics import WatchMetrics

    metrics = WatchMetrics()

    def told(pair: Pair, outcome: str, lag: float | None) -> None:
        metrics.settled(pair, outcome, lag)
        if settled is not None:
            settled(pair, outcome, lag)

    return metrics, told
