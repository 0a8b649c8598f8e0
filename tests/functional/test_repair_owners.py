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
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firehose.archive import open_store
from firehose.codec import encode
from firehose.reconciliation.repair import settle_intents
from firehose.state import RepairIntent, StateDB

EVENT_ID = "6b1f0a000000000000000001"
LEAD_ID = "6b1f0a000000000000000000"
KEY = f"events/{LEAD_ID}/{EVENT_ID}.json"
EVENT = {"id": EVENT_ID, "type": "source", "vars": {"lead": {"id": LEAD_ID}}}

REPAIRER = """
import os, signal, sys, time
from datetime import datetime, UTC
from pathlib import Path
from firehose.archive import open_store
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


class Actor:
    """A process repairing: its own connection and owner; at most one repair in flight, as the real ones."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.state = StateDB(path)
        self.intent: RepairIntent | None = None
        self.wrote: bool | None = None

    def kill(self) -> Actor:
        """Gone without a word, its connection and owner lock dropped as the kernel drops them; its restart."""
        owner = self.state._owner
        if owner is not None:
            owner._handle.close()
            self.state._owner = None
        self.state.close()
        return Actor(self.path)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
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
        actor = actors[who]
        if what == "intend" and actor.intent is None:
            event_id, key = PAIRS[which]
            body = encode({**EVENT, "id": event_id})
            actor.intent = RepairIntent(
                event_id, store.url, None, key, datetime(2027, 1, 1, tzinfo=UTC), who,
                hashlib.sha256(body).hexdigest(), actor.state.repair_owner,
            )  # fmt: skip
            actor.state.intend_repair(actor.intent)
        elif what == "write" and actor.intent is not None and actor.wrote is None:
            actor.wrote = store.write(actor.intent.key, encode({**EVENT, "id": actor.intent.event_id}), if_absent=True)
            writes[actor.intent.key] = writes.get(actor.intent.key, 0) + actor.wrote
        elif what == "settle" and actor.intent is not None and actor.wrote is not None:
            actor.state.settle_repair(actor.intent, wrote=actor.wrote)
            actor.intent, actor.wrote = None, None
        elif what == "kill":
            actors[who] = actor.kill()
        elif what == "start" and actor.intent is None:  # a run's start (a process repairs one thing at a time)
            settle_intents(actor.state, lambda destination: store)
    for actor in actors:
        actor.kill().state.close()
    with StateDB(path) as state:
        settle_intents(state, lambda destination: store)
        recorded = [key for (key,) in state.connection.execute("SELECT key FROM repairs ORDER BY key")]
        assert state.repair_intents() == []
    assert all(count <= 1 for count in writes.values()), "nothing written twice"
    assert recorded == sorted(key for key, count in writes.items() if count), "each repair recorded, once"


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
