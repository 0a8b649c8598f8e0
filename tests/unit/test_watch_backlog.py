"""Issue 15: a firehose far behind leaves thousands of (event, destination) pairs awaited, and a poll must cost in
proportion to what it acts on (new events, objects its listings found, deadlines passed, rechecks due), not to
the backlog: polls of 38 s were seen at 25,000 pairs awaited. Counted, not timed: the pairs a poll reads out of
the state database (every ``Pair`` made), on a local store and a stand-in API. The times are
``scripts/bench_watch_backlog.py``'s."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firehose.archive import open_store
from firehose.codec import encode
from firehose.event import Destination
from firehose.state import StateDB
from firehose.watching import ledger as ledger_module
from firehose.watching.ledger import Pair, WatchLedger
from firehose.watching.options import WatchOptions
from firehose.watching.watcher import Watcher

WAITING = 3000
"""Pairs within their deadline, nothing arrived (a destination whose writes stopped)."""
LATE = 2000
"""Late pairs whose next recheck is an hour on."""
ARRIVED = 40
"""Objects of waiting pairs that arrive before the poll."""
DUE = 25
"""Pairs whose deadline passes at this poll."""


class NoNewEvents:
    def iter_events(self, query: Any, max_events: int = 0) -> Iterator[dict[str, Any]]:
        return iter(())


def test_a_poll_reads_the_pairs_it_acts_on_not_the_backlog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    now = time.time()
    (tmp_path / "store").mkdir()
    destination = Destination.from_url((tmp_path / "store").as_uri())
    store = open_store(destination.url())
    second = int(now) - 30
    pairs = []
    for number in range(WAITING + LATE):
        made = f"{second + number // 1000:08x}{number:016x}"
        late = number >= WAITING
        deadline = now - 1 if late or number < DUE else now + 600
        pairs.append(
            Pair(made, destination.url(), None, destination.key(made, made), made, float(second), deadline, late,
                 now + 3600 if late else 0.0)
        )  # fmt: skip
    arrived = pairs[DUE : DUE + ARRIVED]
    for pair in arrived:
        store.write(pair.key, encode({"id": pair.event_id}), if_absent=True)
    made_pairs = 0

    class Counted(Pair):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            nonlocal made_pairs
            made_pairs += 1
            super().__init__(*args, **kwargs)

    with StateDB(tmp_path / "state.sqlite") as state:
        ledger = WatchLedger(state, "api")
        ledger.record_events([p.event_id for p in pairs], pairs, pairs[WAITING - 1].event_id)
        watcher = Watcher(
            NoNewEvents(),  # type: ignore[arg-type]
            lambda _: store, ledger, WatchOptions(), deliver=lambda alert: None, stop=threading.Event(),
            api_name="api", clock=lambda: now,
        )  # fmt: skip
        monkeypatch.setattr(ledger_module, "Pair", Counted)
        poll = watcher.poll()
        monkeypatch.undo()
        counts = ledger.counts()[destination.url()]
    assert poll.settled == {"archived": ARRIVED, "late": DUE}, poll.settled
    assert counts == {"seen": WAITING + LATE, "archived": ARRIVED, "late": DUE}, counts
    # Each pair acted on is read once, and one made late once more (its new state); the 4,935 others, never.
    assert made_pairs <= ARRIVED + 2 * DUE, f"{made_pairs} pairs made for {ARRIVED + DUE} acted on"
