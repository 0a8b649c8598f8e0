"""``destination_down`` by the watch's clock: a stand-in API (no new events), a local store whose objects' times
are set by hand (a store's clock), and a fake clock that ``job._wait``'s waits move on, so hours of polls and
wakes take milliseconds. Events are put in the ledger as a poll would have read them."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest

from firehose.archive import Store, open_store
from firehose.codec import encode
from firehose.errors import ArchiveError
from firehose.event import Destination
from firehose.state import StateDB
from firehose.watching.job import _wait
from firehose.watching.ledger import Pair, WatchLedger
from firehose.watching.options import WatchOptions
from firehose.watching.watcher import Poll, Watcher

T0 = 1_700_000_000.0


class NoNewEvents:
    def iter_events(self, query: Any, max_events: int = 0) -> Iterator[dict[str, Any]]:
        return iter(())

    def get_event(self, event_id: str) -> dict[str, Any]:  # what --repair-after writes
        return {"id": event_id}


class Clock:
    """The watch's clock; a wait moves it on (a stop is never asked for)."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.waits = 0

    def __call__(self) -> float:
        return self.now

    def is_set(self) -> bool:
        return False

    def wait(self, seconds: float) -> bool:
        self.waits += 1
        self.now += max(0.0, seconds)
        return False


class Unreachable:
    """A store whose requests fail once ``down`` is set (connection refused), else the local store's."""

    def __init__(self, store: Store) -> None:
        self.store, self.down = store, False

    def list(self, *args: Any, **kwargs: Any) -> Any:
        if self.down:
            raise ArchiveError("connection refused")
        return self.store.list(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


class Sandbox:
    made: ClassVar[list[Sandbox]] = []

    def __init__(self, tmp_path: Path, options: WatchOptions) -> None:
        Sandbox.made.append(self)
        (tmp_path / "store").mkdir()
        self.destination = Destination.from_url((tmp_path / "store").as_uri())
        self.url = self.destination.url()
        self.store = Unreachable(open_store(self.url))
        self.state = StateDB(tmp_path / "state.sqlite")
        self.ledger = WatchLedger(self.state, "api")
        self.options = options
        self.clock = Clock(T0)
        self.alerts: list[dict[str, Any]] = []
        self.watcher = Watcher(
            NoNewEvents(),  # type: ignore[arg-type]
            lambda _: self.store,
            self.ledger, options, deliver=self.alerts.append, stop=threading.Event(), api_name="api",
            clock=self.clock,
        )  # fmt: skip
        self.number = 0

    def event(self, ended: float) -> Pair:
        """An event ended at ``ended`` (seconds after T0), read by the watch."""
        self.number += 1
        made = f"{int(T0 + ended):08x}{self.number:016x}"
        pair = Pair(made, self.url, None, self.destination.key(made, made), made, T0 + ended,
                    T0 + ended + self.options.deadline.total_seconds())  # fmt: skip
        self.ledger.record_events([made], [pair], made)
        return pair

    def arrive(self, pair: Pair, at: float) -> None:
        """Its object written at ``at`` seconds after T0 by the store's clock."""
        self.store.write(pair.key, encode({"id": pair.event_id}), if_absent=True)
        path = Path(self.url.removeprefix("file://")) / pair.key
        os.utime(path, (T0 + at, T0 + at))

    def wait(self, began: float, looks: list[Poll] | None = None) -> None:
        """The job's wait after a poll that began at ``began``: the wakes until the next poll."""
        found = [] if looks is None else looks
        _wait(self.watcher, began + self.options.interval.total_seconds(), self.clock, self.clock,  # type: ignore[arg-type]
              found.append)  # fmt: skip

    def run_until(self, at: float, events: dict[float, Any] | None = None) -> list[Poll]:
        """Polls every interval and the wakes between them (``job._wait``) until ``at`` seconds after T0; at each
        poll, what ``events`` says happens first (by its moment, seconds after T0)."""
        looks: list[Poll] = []
        todo = dict(sorted((events or {}).items()))
        while self.clock.now < T0 + at:
            for moment in [m for m in todo if T0 + m <= self.clock.now]:
                todo.pop(moment)()
            began = self.clock.now
            looks.append(self.watcher.poll())
            self.wait(began, looks)
        return looks

    def kinds(self, since: float = 0.0) -> list[tuple[str, float]]:

        return [
            (a["alert"], round(datetime.fromisoformat(a["at"]).timestamp() - T0, 3))
            for a in self.alerts
            if a["alert"].startswith("destination_") and datetime.fromisoformat(a["at"]).timestamp() >= T0 + since
        ]


@pytest.fixture(autouse=True)
def _closed() -> Iterator[None]:
    yield
    while Sandbox.made:
        box = Sandbox.made.pop()
        box.watcher.close()
        box.state.close()


def options(*, interval: float, deadline: float, down_after: float, repair_after: float | None = None) -> WatchOptions:
    return WatchOptions(
        interval=timedelta(seconds=interval), deadline=timedelta(seconds=deadline),
        down_after=timedelta(seconds=down_after),
        repair_after=None if repair_after is None else timedelta(seconds=repair_after),
    )  # fmt: skip


def test_an_unreachable_destination_is_down_down_after_after_its_last_arrival_not_after_its_first_failure(
    tmp_path: Path,
) -> None:
    """The store goes unreachable (writes and reads fail) right after its last write. Nothing arrives from then
    on while an event waits: down ``--down-after`` after the last arrival, as a store that only stopped taking
    writes is. The watch once counted from the first failed request instead, which is its look at that very
    moment: down only ``--down-after`` later again (twice as late)."""
    box = Sandbox(tmp_path, options(interval=600, deadline=600, down_after=60))
    box.clock.now = T0 + 5
    first, waiting = box.event(0), box.event(10)
    box.arrive(first, 1)
    box.clock.now = T0 + 20
    box.watcher.poll()  # finds the first; the second waits
    assert box.watcher.wake_at() == T0 + 70
    box.store.down = True
    box.wait(T0 + 20)  # until the next poll, 10 min on
    (down,) = [a for a in box.alerts if a["alert"] == "destination_down"]
    assert box.kinds() == [("destination_down", 70.0)], box.kinds()
    assert "connection refused" in down["reason"], down
    assert waiting.event_id  # still awaited: no late before its deadline


def test_a_quiet_destination_that_lost_one_object_is_not_down_at_every_gap_between_its_events(
    tmp_path: Path,
) -> None:
    """An event every 5 minutes, each delivered a second after it ends, but the first one's object was lost
    (``late``, looked for again for days). Later objects arrive, so the destination takes writes: it is never
    down. The watch counted the lost event as waiting, so every gap longer than ``--down-after`` was an outage:
    ``destination_down`` a minute after each arrival, ``destination_up`` at the next, for as long as the lost
    event is awaited (7 days)."""
    box = Sandbox(tmp_path, options(interval=10, deadline=30, down_after=60))
    box.event(0)  # lost: never arrives

    def delivered(ended: float) -> None:
        box.arrive(box.event(ended), ended + 1)

    box.run_until(1300, {ended: (lambda ended=ended: delivered(ended)) for ended in (35, 335, 635, 935, 1235)})
    assert box.ledger.late_now() == 1
    assert box.kinds() == [], box.kinds()


def test_a_watch_started_on_old_events_is_not_down_for_an_object_lost_before_it_started(tmp_path: Path) -> None:
    """``--start`` a day back (or a restart): the events read are long delivered, but one of them was lost. The
    destination is quiet since; nothing arrived during the watch, and nothing it saw begin waits: not down. The
    watch called it down ``--down-after`` after its start."""
    box = Sandbox(tmp_path, options(interval=30, deadline=600, down_after=300))
    box.event(-86_400)  # lost
    for ended in (-86_000, -50_000, -3_600):
        box.arrive(box.event(ended), ended + 2)
    box.run_until(3600)
    assert box.ledger.late_now() == 1
    assert box.kinds() == [], box.kinds()


@pytest.mark.parametrize("every", [60, 1000], ids=["an event a minute", "one event"])
def test_repairs_sooner_than_down_after_do_not_hide_a_destination_that_takes_no_writes(
    tmp_path: Path, every: int
) -> None:
    """``--repair-after 30s --down-after 2min``: the firehose stops writing to the destination, events go on, and
    the watch writes each one itself 30 s after its end. Nothing the firehose wrote arrives: down 2 minutes after
    the last arrival, as without repairs (with one event only, nothing is left to look for by then: the watch
    decides without a request). A repair is not an arrival, but the watch counted only the events still
    awaited, none of which waits 2 minutes: the destination was never down."""
    box = Sandbox(tmp_path, options(interval=10, deadline=30, down_after=120, repair_after=30))
    box.arrive(box.event(-5), -4)  # the last the firehose wrote
    box.run_until(600, {ended: (lambda ended=ended: box.event(ended)) for ended in range(0, 600, every)})
    assert box.ledger.counts()[box.url]["repaired"] == len(range(0, 600, every))
    assert box.kinds() == [("destination_down", 120.0)], box.kinds()


class SlowApi(NoNewEvents):
    """An API whose reads of new events take ``seconds`` by the watch's clock, one after the other (a busy minute
    with tens of thousands of events after a quiet one)."""

    def __init__(self, clock: Clock, seconds: list[float]) -> None:
        self.clock, self.seconds = clock, seconds

    def iter_events(self, query: Any, max_events: int = 0) -> Iterator[dict[str, Any]]:
        self.clock.now += self.seconds.pop(0) if self.seconds else 0.0
        return iter(())


def test_late_comes_within_deadline_plus_interval_however_long_the_poll_reads_the_api(tmp_path: Path) -> None:
    """Polls 30 s apart; the first reads the API at once, the second takes 8 s. A pair whose deadline falls just
    after the first poll's look is decided at the second poll's start, within an interval of its deadline.
    Decided after the read, it came 37.5 s after its deadline."""
    box = Sandbox(tmp_path, options(interval=30, deadline=60, down_after=3600))
    box.watcher.api = SlowApi(box.clock, [0, 8])  # type: ignore[assignment]
    box.clock.now = T0 + 1
    lost = box.event(-58.5)  # its deadline T0 + 1.5, just after the first poll's look (T0 + 1)
    delivered: list[float] = []
    box.watcher.deliver = lambda alert: (box.alerts.append(alert), delivered.append(box.clock.now))  # type: ignore[assignment,func-returns-value]
    box.run_until(40)
    (late,) = [a for a in box.alerts if a["alert"] == "late"]
    said = datetime.fromisoformat(late["at"]).timestamp() - lost.deadline
    assert 0 <= said <= 30, said
    assert delivered[box.alerts.index(late)] - lost.deadline <= 30, "delivered once decided, not after the read"
