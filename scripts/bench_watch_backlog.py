"""What one watch poll costs when a firehose has fallen far behind: N (event, destination) pairs awaited (a
destination whose writes stopped: nothing arrives), a few new events a poll. Light (no stack, no sandbox): the
pairs are put in a state database through the library (``WatchLedger.record_events``), the store is a folder,
and the API a stand-in that hands out ``--new`` events a poll. Prints, per backlog, the CPU seconds of a poll
(the median of ``--polls``), and with ``--profile`` cProfile's top entries of one poll.

    .venv/bin/python scripts/bench_watch_backlog.py --pairs 5000,20000,50000

Half the pairs are still within their deadline (looked for at every poll, as every pair whose deadline has not
passed is), half late and waiting for their next recheck (an hour on): what a stopped destination leaves after a
while. Every awaited lead falls in one listing range, as at 1,000 events/s."""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from firehose.archive import open_store
from firehose.event import Destination
from firehose.state import StateDB
from firehose.watching.ledger import Pair, WatchLedger
from firehose.watching.options import WatchOptions
from firehose.watching.watcher import Watcher


def event_id(second: int, number: int) -> str:
    return f"{second:08x}{number:016x}"


class QuietApi:
    """``GET /events``: ``new`` events a poll, each a second after the last, for one destination."""

    def __init__(self, destination: str, second: int, new: int) -> None:
        self.destination, self.second, self.new, self.number = destination, second, new, 10**9

    def iter_events(self, query: Any, max_events: int = 0) -> Iterator[dict[str, Any]]:
        self.second += 1
        for _ in range(self.new):
            self.number += 1
            made = event_id(self.second, self.number)
            yield {
                "id": made,
                "type": "source",
                "vars": {"lead": {"id": made}},
                "end_timestamp": self.second * 1000,
                "firehose": {"destinations": [{"url": self.destination, "enabled": True}]},
            }


def backlog(folder: Path, pairs: int, now: float, listed: int) -> tuple[Path, Destination]:
    """A state database holding ``pairs`` awaited pairs of one destination, made over the last ``pairs / 1000``
    seconds (1,000 events/s): the first half late, the second half within a 10-minute deadline; and ``listed``
    objects of other events (settled before) among their leads, which each poll's listing returns."""
    store_root = folder / "store"
    store_root.mkdir()
    destination = Destination.from_url(store_root.as_uri())
    store = open_store(destination.url())
    for number in range(listed):
        other = event_id(int(now) - pairs // 1000 + number * (pairs // 1000) // max(listed, 1), 10**8 + number)
        store.write(destination.key(other, other), b"{}", if_absent=True)
    database = folder / "state.sqlite"
    with StateDB(database) as state:
        ledger = WatchLedger(state, "bench")
        start = int(now) - pairs // 1000 - 1
        made: list[Pair] = []
        for number in range(pairs):
            second = start + number // 1000
            late = number < pairs // 2
            made_id = event_id(second, number)
            made.append(
                Pair(
                    made_id, destination.url(), None, destination.key(made_id, made_id), made_id, float(second),
                    now - 1 if late else now + 600, late, now + 3600 if late else 0.0,
                )
            )  # fmt: skip
        for first in range(0, pairs, 10_000):
            chunk = made[first : first + 10_000]
            ledger.record_events([p.event_id for p in chunk], chunk, chunk[-1].event_id)
    return database, destination


def measure(pairs: int, polls: int, new: int, profile: bool, listed: int) -> float:
    now = time.time()
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        database, destination = backlog(folder, pairs, now, listed)
        store = open_store(destination.url())
        with StateDB(database) as state:
            ledger = WatchLedger(state, "bench")
            api = QuietApi(destination.url(), int(now), new)
            watcher = Watcher(
                api,  # type: ignore[arg-type]
                lambda _: store, ledger, WatchOptions(), deliver=lambda alert: None, stop=threading.Event(),
                api_name="bench", clock=time.time,
            )  # fmt: skip
            watcher.poll()  # the first: intents settled, stores opened
            times = []
            for _ in range(polls):
                started = time.process_time()
                watcher.poll()
                times.append(time.process_time() - started)
            if profile:
                profiler = cProfile.Profile()
                profiler.runcall(watcher.poll)
                out = io.StringIO()
                pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(18)
                print(out.getvalue())
            watcher.close()
        return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", default="5000,20000,50000", help="pairs awaited, comma separated")
    parser.add_argument("--polls", type=int, default=5)
    parser.add_argument("--new", type=int, default=100, help="new events a poll")
    parser.add_argument("--listed", type=int, default=0, help="objects of other events among the awaited leads")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    print(f"{'pairs awaited':>14} {'CPU s a poll (median)':>22} {'per 1,000 pairs':>16}")
    for pairs in [int(n) for n in args.pairs.split(",")]:
        seconds = measure(pairs, args.polls, args.new, args.profile, args.listed)
        print(f"{pairs:>14,} {seconds:>22.3f} {seconds / pairs * 1000:>16.4f}", flush=True)


if __name__ == "__main__":
    main()
