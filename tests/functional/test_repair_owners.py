"""Issue 15: a ``watch --repair-after`` and a ``reconcile --repair`` on ONE state database, each a process of its
own. Each says what it will write (an intent) before writing; once, each could clear the other's intent (a start's
``settle_intents`` found the key still absent and let a live process's intent go; a pair's second intent replaced
the first, and the first owner's settling deleted the second's), and a ``kill -9`` in that moment lost the record
of a repair (the object in the store, no record: the watch then calls it ``recovered``, the nightly reconcile a
plain match). Here real processes are killed between intent, write and record, on a local store; then a restart
must record each repair exactly once, and nothing is ever written twice.

The random interleavings (hypothesis) run in one process: each "process" is a ``StateDB`` of its own on the one
file, and a kill drops its connection and its owner's lock without a word, as the kernel does."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from firehose.archive import Store, open_store
from firehose.codec import encode
from firehose.event import Destination
from firehose.ids import seconds_of
from firehose.reconciliation.repair import settle_intents
from firehose.state import RepairIntent, StateDB
from firehose.watching.ledger import Pair, WatchLedger
from firehose.watching.options import WatchOptions
from firehose.watching.watcher import Watcher

EVENT_ID = "6b1f0a000000000000000001"
LEAD_ID = "6b1f0a000000000000000000"
KEY = f"events/{LEAD_ID}/{EVENT_ID}.json"
EVENT = {"id": EVENT_ID, "type": "source", "vars": {"lead": {"id": LEAD_ID}}}

REPAIRER = """
import os, signal, sys, time
from datetime import datetime, UTC
from pathlib import Path
from firehose.archive import Store, open_store
from firehose.reconciliation.repair import settle_intents, write_missing
from firehose.state import StateDB

database, root, folder, what = sys.argv[1:5]
folder = Path(folder)
store = open_store(Path(root).as_uri())
state = StateDB(Path(database))
if what == "start":  # a run's start: what a reconcile --repair and a watch's first poll do
    settle_intents(state, lambda destination: store)
    sys.exit(0)

write, settle = store.write, StateDB.settle_repair

def held_write(key, data, **kwargs):  # the intent is committed; the write waits for the test's word
    (folder / (what + ".intended")).touch()
    while not (folder / (what + ".go")).exists():
        time.sleep(0.01)
    return write(key, data, **kwargs)

def killed_after_the_write(self, intent, *, wrote):
    if "kill" in what:
        os.kill(os.getpid(), signal.SIGKILL)  # the store answered; the record never made
    return settle(self, intent, wrote=wrote)

store.write = held_write
StateDB.settle_repair = killed_after_the_write
event = {"id": sys.argv[5], "type": "source", "vars": {"lead": {"id": sys.argv[6]}}}
written = write_missing(
    store, state, event, event_id=sys.argv[5], destination=Path(root).as_uri(), credential_id=None, key=sys.argv[7],
    window_start=datetime(2027, 1, 1, tzinfo=UTC), run_id=int(sys.argv[8]),
)
print("wrote" if written.wrote else "found")
"""


class Repairer:
    """One process repairing ``EVENT`` into ``root``, its write held until ``go``."""

    def __init__(self, tmp_path: Path, what: str, run_id: int) -> None:
        self.tmp_path, self.what = tmp_path, what
        self.process = subprocess.Popen(
            [sys.executable, "-c", REPAIRER, *_places(tmp_path), what, EVENT_ID, LEAD_ID, KEY, str(run_id)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        _wait_for(lambda: (tmp_path / f"{what}.intended").exists() or self.process.poll() is not None)
        assert self.process.poll() is None, self.process.communicate()

    def go(self) -> tuple[int, str]:
        (self.tmp_path / f"{self.what}.go").touch()
        out, err = self.process.communicate(timeout=30)
        return self.process.returncode, out.strip() or err


def _places(tmp_path: Path) -> list[str]:
    root = tmp_path / "store"
    root.mkdir(exist_ok=True)
    return [str(tmp_path / "state.sqlite"), str(root), str(tmp_path)]


def _wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _start(tmp_path: Path) -> None:
    """A run's start in a process of its own: it settles the intents it may."""
    started = subprocess.run(
        [sys.executable, "-c", REPAIRER, *_places(tmp_path), "start"], capture_output=True, text=True, timeout=60
    )
    assert started.returncode == 0, started.stderr


def _recorded(tmp_path: Path) -> tuple[list[tuple[str, str]], list[RepairIntent]]:
    with StateDB(tmp_path / "state.sqlite") as state:
        rows = state.connection.execute("SELECT event_id, destination FROM repairs").fetchall()
        return rows, state.repair_intents()


def test_a_start_leaves_a_live_processs_intent_and_the_restart_records_its_repair(tmp_path: Path) -> None:
    """The watch has said it will write and is writing; a reconcile starts meanwhile and finds the key absent:
    that is not "the write never landed". The watch is then killed -9 right after the store took its write."""
    watch = Repairer(tmp_path, "watch-kill", 0)
    _start(tmp_path)  # the reconcile's start, while the watch's write is in flight
    assert len(_recorded(tmp_path)[1]) == 1, "the live watch's intent was let go"
    assert watch.go()[0] == -9
    _start(tmp_path)  # any restart: the watch is gone, its key holds its bytes
    rows, intents = _recorded(tmp_path)
    assert rows == [(EVENT_ID, (tmp_path / "store").as_uri())] and intents == []
    assert (tmp_path / "store" / KEY).read_bytes() == encode(EVENT)
    assert not list(tmp_path.glob("state.sqlite.repair-*.lock")), "a gone owner's lock file is cleared with it"


def test_two_processes_repairing_one_pair_keep_their_own_intents(tmp_path: Path) -> None:
    """Both say they will write the same object; the reconcile's write lands and it is killed -9 before it
    records it; the watch's write then finds the object there (nothing written twice) and settles its own
    intent, not the reconcile's. The restart records the reconcile's repair, once."""
    watch = Repairer(tmp_path, "watch", 0)
    reconcile = Repairer(tmp_path, "reconcile-kill", 1)
    assert reconcile.go()[0] == -9
    assert watch.go() == (0, "found"), "the object was there: not written again"
    assert _recorded(tmp_path)[0] == [], "the watch did not write it: not its record"
    _start(tmp_path)
    rows, intents = _recorded(tmp_path)
    assert rows == [(EVENT_ID, (tmp_path / "store").as_uri())] and intents == []


PAIRS = [(f"6b1f0a00000000000000000{n}", f"events/{LEAD_ID}/6b1f0a00000000000000000{n}.json") for n in range(1, 4)]


def _killed(state: StateDB) -> None:
    """A process's end without a word: its connection and its owner lock dropped as the kernel drops them (its
    intents left as they are)."""
    owner = state._owner
    if owner is not None:
        owner._handle.close()
        state._owner = None
    state.close()


class Actor:
    """A process repairing: its own connection and owner; at most one repair in flight, as the real ones."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.state = StateDB(path)
        self.intent: RepairIntent | None = None
        self.wrote: bool | None = None

    def kill(self) -> Actor:
        """Gone without a word; its restart."""
        _killed(self.state)
        return Actor(self.path)

    def step(self, what: str, pair: tuple[str, str], store: Store, writes: dict[str, int]) -> Actor:
        """One step of a ``reconcile --repair`` of ``pair`` (event id, key): this actor, or its restart."""
        if what == "intend" and self.intent is None:
            event_id, key = pair
            body = encode({**EVENT, "id": event_id})
            self.intent = RepairIntent(
                event_id, store.url, None, key, datetime(2027, 1, 1, tzinfo=UTC), 1,
                hashlib.sha256(body).hexdigest(), self.state.repair_owner,
            )  # fmt: skip
            self.state.intend_repair(self.intent)
        elif what == "write" and self.intent is not None and self.wrote is None:
            self.wrote = store.write(self.intent.key, encode({**EVENT, "id": self.intent.event_id}), if_absent=True)
            if not isinstance(store, CountingStore):  # which counts them itself
                writes[self.intent.key] = writes.get(self.intent.key, 0) + self.wrote
        elif what == "settle" and self.intent is not None and self.wrote is not None:
            self.state.settle_repair(self.intent, wrote=self.wrote)
            self.intent, self.wrote = None, None
        elif what == "kill":
            return self.kill()
        elif what == "start" and self.intent is None:  # a run's start (a process repairs one thing at a time)
            settle_intents(self.state, lambda destination: store)
        return self


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["intend", "write", "settle", "kill", "start"]), st.integers(0, 2), st.integers(0, 2)
        ),
        max_size=30,
    )
)
def test_any_interleaving_of_repairs_on_one_database_records_each_written_object_once(
    tmp_path_factory: object, steps: list[tuple[str, int, int]]
) -> None:
    folder = tmp_path_factory.mktemp("owners")  # type: ignore[attr-defined]
    path = folder / "state.sqlite"
    store = open_store((folder / "store").as_uri())
    (folder / "store").mkdir()
    actors = [Actor(path) for _ in range(3)]  # a watch and two reconciles, say
    writes: dict[str, int] = {}
    for what, who, which in steps:
        actors[who] = actors[who].step(what, PAIRS[which], store, writes)
    for actor in actors:
        actor.kill().state.close()
    with StateDB(path) as state:
        settle_intents(state, lambda destination: store)
        recorded = [key for (key,) in state.connection.execute("SELECT key FROM repairs ORDER BY key")]
        assert state.repair_intents() == []
    assert all(count <= 1 for count in writes.values()), "nothing written twice"
    assert recorded == sorted(key for key, count in writes.items() if count), "each repair recorded, once"
    assert not list(folder.glob("state.sqlite.repair-*.lock")), "no lock file of a gone owner left behind"


def test_a_schema_4_intent_is_kept_as_a_gone_owners_and_settled(tmp_path: Path) -> None:
    """A database of the firehose before owners, left with an intent by a killed run: the table is made again
    with owners in its key, the intent kept (owner ``''``) and settled by the next run, as before."""
    path = tmp_path / "state.sqlite"
    StateDB(path).close()
    with sqlite3.connect(path) as raw:  # what schema 4 made, with an intent left in it
        raw.execute("DROP TABLE repair_intents")
        raw.execute(
            "CREATE TABLE repair_intents (event_id TEXT NOT NULL, destination TEXT NOT NULL, credential_id TEXT, "
            "key TEXT NOT NULL, window_start TEXT NOT NULL, run_id INTEGER NOT NULL, sha256 TEXT NOT NULL, "
            "intended_at TEXT NOT NULL, PRIMARY KEY (event_id, destination))"
        )
        body = encode(EVENT)
        raw.execute(
            "INSERT INTO repair_intents VALUES (?, ?, NULL, ?, '2027-01-01T00:00:00+00:00', 3, ?, 'x')",
            (EVENT_ID, "file:///store", KEY, hashlib.sha256(body).hexdigest()),
        )
        raw.execute("UPDATE meta SET value = '4' WHERE name = 'schema_version'")
    store = open_store((tmp_path / "store").as_uri())
    (tmp_path / "store").mkdir()
    store.write(KEY, body, if_absent=True)  # the killed run's write had landed
    with StateDB(path) as state:
        [intent] = state.repair_intents()
        assert (intent.owner, intent.run_id, intent.key) == ("", 3, KEY)
        settle_intents(state, lambda destination: store)
        assert state.was_repaired(EVENT_ID, "file:///store") and state.repair_intents() == []


class RepairingApi:
    """``GET /events``: nothing new; ``GET /events/{id}``: the event, as the repairs write it."""

    def iter_events(self, query: object, max_events: int = 0) -> Iterator[dict[str, object]]:
        return iter(())

    def get_event(self, event_id: str) -> dict[str, object]:
        return {**EVENT, "id": event_id}


class CountingStore:
    """The store, counting the writes that put an object there, per key."""

    def __init__(self, store: Store, writes: dict[str, int]) -> None:
        self._store, self.writes = store, writes

    def write(self, key: str, data: bytes, **options: Any) -> bool:
        wrote = self._store.write(key, data, **options)
        self.writes[key] = self.writes.get(key, 0) + wrote
        return wrote

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class Watch:
    """A ``watch --deadline 1s --repair-after 1s`` on the database, whose clock moves an hour and more a poll
    (every late pair is due again at each)."""

    def __init__(self, path: Path, store: Any, clock: list[float]) -> None:
        self.path, self.store, self.clock = path, store, clock
        self.state = StateDB(path)
        options = WatchOptions(deadline=timedelta(seconds=1), repair_after=timedelta(seconds=1))
        self.watcher = Watcher(
            RepairingApi(), lambda _: store, WatchLedger(self.state, "api"), options,  # type: ignore[arg-type]
            deliver=lambda alert: None, stop=threading.Event(), api_name="api", clock=lambda: clock[0],
        )  # fmt: skip

    def poll(self) -> None:
        self.clock[0] += 4000
        self.watcher.poll()

    def kill(self) -> Watch:
        _killed(self.state)
        return Watch(self.path, self.store, self.clock)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(steps=[("intend", 0, 0), ("write", 0, 0), ("poll", 0, 0), ("settle", 0, 0), ("poll", 0, 0)])  # in flight
@example(steps=[("intend", 0, 1), ("write", 0, 1), ("kill", 0, 1), ("poll", 0, 0)])  # its owner gone
@example(steps=[("poll", 0, 0), ("intend", 0, 2), ("write", 0, 2), ("poll", 0, 0), ("poll", 0, 0)])  # late
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["poll", "poll", "kill-watch", "intend", "write", "settle", "kill", "start"]),
            st.integers(0, 1),
            st.integers(0, 2),
        ),
        max_size=25,
    )
)
def test_watch_polls_and_reconcile_repairs_on_one_database_repair_each_missing_event_once(
    tmp_path_factory: object, steps: list[tuple[str, int, int]]
) -> None:
    """Three events missing from a destination; a watch with ``--repair-after`` polls, is killed and restarted,
    while two ``reconcile --repair`` processes intend, write, settle, are killed and start, in any order. In the
    end each object is written once, recorded once, and the watch counts each pair ``repaired``, never
    ``recovered`` or ``archived`` (an object a repair wrote, taken for the firehose's: both were seen, a
    reconcile's write found while its intent was in flight, or before the pair was late)."""
    folder = tmp_path_factory.mktemp("watch")  # type: ignore[attr-defined]
    path = folder / "state.sqlite"
    (folder / "store").mkdir()
    writes: dict[str, int] = {}
    store = CountingStore(open_store((folder / "store").as_uri()), writes)
    destination = Destination.from_url(store.url)
    assert destination.url() == store.url
    ended = float(seconds_of(LEAD_ID))
    missing = [
        Pair(event_id, store.url, None, destination.key(LEAD_ID, event_id), LEAD_ID, ended, ended + 1)
        for event_id in (f"6b1f0a00000000000000001{n}" for n in range(3))
    ]
    with StateDB(path) as state:
        WatchLedger(state, "api").record_events([p.event_id for p in missing], missing, None)
    clock = [ended + 10]
    watch = Watch(path, store, clock)
    actors = [Actor(path) for _ in range(2)]
    for what, who, which in steps:
        if what == "poll":
            watch.poll()
        elif what == "kill-watch":
            watch = watch.kill()
        else:
            actors[who] = actors[who].step(what, (missing[which].event_id, missing[which].key), store, writes)
    for actor in actors:
        actor.kill().state.close()
    watch = watch.kill()
    for _ in range(3):
        watch.poll()
    counts = watch.watcher.ledger.counts()[store.url]
    recorded = sorted(key for (key,) in watch.state.connection.execute("SELECT key FROM repairs"))
    intents = watch.state.repair_intents()
    watch.kill().state.close()
    assert writes == {pair.key: 1 for pair in missing}, "each object written once"
    assert recorded == sorted(pair.key for pair in missing) and intents == [], "each repair recorded once"
    late = counts.pop("late", 0)  # a reconcile may repair a pair before the watch finds it late
    assert counts == {"seen": 3, "repaired": 3} and late <= 3, counts
