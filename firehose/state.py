"""Local state in one embedded SQLite database: what a reconcile run has finished, so that an interrupted run
resumes where it stopped and a nightly run re-examines only new windows.

Writes are transactions per window: a window's findings and its "done" mark are committed together, so a
``kill -9`` between windows loses nothing and one inside a window only repeats that window. WAL mode lets a
reader (a report) look while a run writes.

Tables:

- ``runs``: one row per distinct set of run arguments (their fingerprint); resuming means the same fingerprint.
- ``windows``: the windows a run has finished, with their counts and request counts (JSON).
- ``findings``: every non-``match`` finding of finished windows (matches are only counted).
- ``replays``: the replay ledger, one row per source event ever replayed (``ReplayLedger``).
- ``repairs``: every object a ``--repair`` ever wrote, append-only: evidence, which a later run never replaces
  (a later ``--full`` run finds those objects present and would otherwise forget they were repaired).
- ``repair_intents``: a repair about to be written (a write-ahead record, with the SHA-256 of its bytes), moved
  into ``repairs`` once the store answers. A run killed after the store took the write but before the answer
  came back leaves the intent; the next run reads the key and, if it holds those bytes, records the repair.
  Each intent names its ``owner`` (one per ``StateDB`` that repairs), and only its owner, or anyone once the
  owner is gone, settles it: a watch and a reconcile on one database once cleared each other's intents, and a
  ``kill -9`` in that moment lost the record of a repair (``RepairOwner``).
- ``watch_cursor``, ``watch_seen``, ``watch_pending``, ``watch_counts``, ``watch_alerts``, ``watch_alert_sinks``:
  ``firehose watch``'s cursor, the event ids of its overlap (to count each once), the (event, destination) pairs
  it still waits for, its totals, the alerts decided but not yet delivered everywhere, and how far each place
  alerts go (stdout, each webhook and command) has taken them (``watching.ledger`` reads and writes them).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from firehose.codec import decode, encode
from firehose.errors import ConfigError
from firehose.findings import Finding, Verdict

SCHEMA_VERSION = 5
"""2 added ``findings.detail`` (the differing values kept with ``--include-pii``); 3 added ``replays.identity``
(hashes of the body sent, to find the lead an in-doubt request made), ``replays.claimed_by`` (the run) and
``replays.claimed_at`` (when the lead was last claimed: its request went out after that) and
``replays.request_sha256`` (the request's hash, indexed: one lead, one post, whichever event carries it); 4 added
``windows.lags`` (each destination's delivery-lag histogram, so a resumed run reports the lags of the windows it
reuses) and ``watch_pending.repair`` (how ``watch --repair-after`` last failed to repair a pair); 5 added
``repair_intents.owner`` to its key (two processes repairing one pair each keep their own intent) and the
``watch_pending`` indexes that let a poll read only the pairs it acts on (``watching.ledger``)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL UNIQUE,
    arguments TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT
);
CREATE TABLE IF NOT EXISTS windows (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    start TEXT NOT NULL,
    end TEXT NOT NULL,
    counts TEXT NOT NULL,
    requests TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    lags TEXT,
    PRIMARY KEY (run_id, start)
);
CREATE TABLE IF NOT EXISTS findings (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    window_start TEXT NOT NULL,
    verdict TEXT NOT NULL,
    event_id TEXT NOT NULL,
    destination TEXT NOT NULL,
    key TEXT NOT NULL,
    lead_id TEXT,
    type TEXT,
    expires_at TEXT,
    reason TEXT,
    fields TEXT NOT NULL,
    detail TEXT,
    PRIMARY KEY (run_id, event_id, destination)
);
CREATE TABLE IF NOT EXISTS replays (
    event_id TEXT PRIMARY KEY,
    lead_id TEXT,
    flow_id TEXT,
    target TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    http_status INTEGER,
    original_outcome TEXT,
    new_outcome TEXT,
    new_lead_id TEXT,
    reason TEXT,
    updated_at TEXT NOT NULL,
    identity TEXT,
    claimed_by TEXT,
    claimed_at TEXT,
    request_sha256 TEXT
);
CREATE INDEX IF NOT EXISTS replays_new_lead ON replays (new_lead_id);
CREATE TABLE IF NOT EXISTS repairs (
    event_id TEXT NOT NULL,
    destination TEXT NOT NULL,
    key TEXT NOT NULL,
    window_start TEXT NOT NULL,
    run_id INTEGER NOT NULL,
    repaired_at TEXT NOT NULL,
    PRIMARY KEY (event_id, destination)
);
CREATE INDEX IF NOT EXISTS repairs_window ON repairs (window_start, repaired_at);
CREATE TABLE IF NOT EXISTS repair_intents (
    event_id TEXT NOT NULL,
    destination TEXT NOT NULL,
    credential_id TEXT,
    key TEXT NOT NULL,
    window_start TEXT NOT NULL,
    run_id INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    intended_at TEXT NOT NULL,
    owner TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (event_id, destination, owner)
);
CREATE TABLE IF NOT EXISTS watch_cursor (source TEXT PRIMARY KEY, event_id TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS watch_seen (event_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS watch_pending (
    event_id TEXT NOT NULL,
    destination TEXT NOT NULL,
    credential_id TEXT,
    key TEXT NOT NULL,
    lead_id TEXT NOT NULL,
    ended REAL NOT NULL,
    deadline REAL NOT NULL,
    late INTEGER NOT NULL,
    next_check REAL NOT NULL,
    repair TEXT,
    PRIMARY KEY (event_id, destination)
);
CREATE TABLE IF NOT EXISTS watch_counts (
    destination TEXT NOT NULL,
    outcome TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (destination, outcome)
);
CREATE TABLE IF NOT EXISTS watch_alerts (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS watch_alert_sinks (sink TEXT PRIMARY KEY, delivered INTEGER NOT NULL);
"""
_INDEXES = """
CREATE INDEX IF NOT EXISTS replays_request ON replays (request_sha256);
DROP INDEX IF EXISTS watch_pending_due;
CREATE INDEX IF NOT EXISTS watch_pending_seconds
    ON watch_pending (destination, late, substr(lead_id, 1, 8), substr(event_id, 1, 8));
CREATE INDEX IF NOT EXISTS watch_pending_deadline ON watch_pending (destination, late, deadline);
CREATE INDEX IF NOT EXISTS watch_pending_recheck ON watch_pending (destination, late, next_check);
CREATE INDEX IF NOT EXISTS watch_pending_ended ON watch_pending (destination, ended);
INSERT OR IGNORE INTO repairs
    SELECT event_id, destination, key, window_start, run_id, window_start FROM findings WHERE verdict = 'repaired';
"""
"""After the migrations: indexes on columns a migration may have just added, and the repair record filled
from the findings of databases made before it existed (idempotent: the first record of a repair stands)."""


_MIGRATIONS = {
    1: (("findings", "detail"),),
    2: (("replays", "identity"), ("replays", "claimed_by"), ("replays", "claimed_at"), ("replays", "request_sha256")),
    3: (("windows", "lags"), ("watch_pending", "repair")),
    4: (),  # repair_intents made again with its owner in its key (``_INTENTS_BY_OWNER``)
}
"""The columns (all ``TEXT``) that take a database from schema N to N+1. A table the old schema did not have
at all was just made whole by ``_SCHEMA``, so a column already there is left alone."""

_INTENTS_BY_OWNER = (
    """
ALTER TABLE repair_intents RENAME TO repair_intents_4;
"""
    + _SCHEMA[_SCHEMA.index("CREATE TABLE IF NOT EXISTS repair_intents") :].split(";")[0]
    + """;
INSERT INTO repair_intents SELECT *, '' FROM repair_intents_4;
DROP TABLE repair_intents_4
"""
)
"""Schema 4 to 5: a primary key cannot be altered, so the table is made again; the intents it held keep the
owner ``''`` (a run of an older firehose: settled by the next run, as before)."""


@dataclass(frozen=True)
class WindowRecord:
    """A finished window of a run."""

    start: datetime
    end: datetime
    counts: Mapping[str, Any]
    requests: Mapping[str, Any]
    finished_at: datetime | None = None
    lags: Mapping[str, Any] = field(default_factory=dict)
    """Per destination, the delivery-lag histogram of the window's matched objects (``reconciliation.lags``)."""


@dataclass(frozen=True)
class RunSummary:
    """One run on record (``firehose runs``): its options, when, its windows, their counts, its repairs."""

    run_id: int
    arguments: Mapping[str, Any]
    started_at: datetime | None
    finished_at: datetime | None
    windows: int
    first_window: datetime | None
    last_window_end: datetime | None
    counts: Mapping[str, int]
    repairs: int


@dataclass(frozen=True)
class RepairIntent:
    """A repair about to be written: where, and the SHA-256 of the bytes (to know them again in the store)."""

    event_id: str
    destination: str
    """The destination's URL, as findings and the record of repairs name it."""
    credential_id: str | None
    key: str
    window_start: datetime
    run_id: int
    sha256: str
    owner: str = ""
    """Who intends it (``RepairOwner.token``); ``''`` for an intent of an older firehose."""


def utc_now() -> datetime:
    """The real clock, the default of ``StateDB(clock=...)``."""
    return datetime.now(UTC)


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment else None


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


BUSY_SECONDS = 30.0
"""How long a connection waits for another process's write before giving up."""

ROOM_BYTES = 1 << 20
"""Less free space than this beside the state database, when SQLite fails to write, is a full disk."""


def explain(path: Path, exc: sqlite3.Error) -> str:
    """SQLite's complaint, with what it means for the user when it is a full disk or a read-only file (SQLite
    says "disk I/O error" when the disk fills while it grows its shared-memory file). One line."""
    name = str(getattr(exc, "sqlite_errorname", ""))
    text = " ".join(str(exc).split())
    if name.startswith("SQLITE_READONLY") or "readonly database" in text:
        return f"{text}: the file, or its folder, is read-only; make both writable and run again"
    if name.startswith(("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_CANTOPEN")) or "disk" in text:
        free = _free_bytes(path)
        if free is not None and free < ROOM_BYTES:
            return f"{text} ({free:,} bytes free): {DISK_FULL}"
    return text


DISK_FULL = "its disk is full; free some space and run again (it resumes where it stopped)"


def os_why(exc: OSError) -> str:
    """An ``OSError`` on a file beside the state database, said as ``explain`` says SQLite's."""
    if exc.errno == errno.ENOSPC:
        return f"{exc.strerror}: {DISK_FULL}"
    if exc.errno == errno.EROFS:
        return f"{exc.strerror}: make it writable and run again"
    return str(exc.strerror or exc)


def _free_bytes(path: Path) -> int | None:
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        found = os.statvfs(folder)
    except OSError:
        return None
    return found.f_bavail * found.f_frsize


def _statements(script: str) -> list[str]:
    """A script's statements, to run one by one inside a transaction (``executescript`` commits first)."""
    return [statement.strip() for statement in script.split(";") if statement.strip()]


class StateDB:
    """The state database at ``path`` (created with its folder if absent). ``clock`` tells when a run started,
    a window was finished and a repair was made: what decides whether a window is settled (injected, so a test
    can move time on)."""

    def __init__(self, path: Path, *, clock: Callable[[], datetime] = utc_now) -> None:
        self.path = path
        self.clock = clock
        self._owner: RepairOwner | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"state database {path}: cannot create its folder ({exc.strerror})") from exc
        if path.is_dir():
            raise ConfigError(f"state database {path} is a folder; name a file (e.g. {path / 'state.sqlite'})")
        try:
            # Another run writing (a window's transaction, a replay's claim) holds the database for a moment:
            # wait for it rather than fail with "database is locked".
            self._db = sqlite3.connect(path, isolation_level=None, timeout=BUSY_SECONDS)  # explicit transactions
        except sqlite3.Error as exc:
            raise ConfigError(f"state database {path} cannot be opened: {explain(path, exc)}") from exc
        try:
            self._wal()
            self._db.execute("PRAGMA synchronous=NORMAL")
            # One process sets up or migrates the schema at a time: two runs starting together on a fresh file
            # both found no schema version and both inserted one ("UNIQUE constraint failed: meta.name").
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._schema(path)
                self._db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise
        except (sqlite3.Error, ConfigError, ValueError) as exc:
            self._db.close()
            if isinstance(exc, ConfigError):
                raise
            why = explain(path, exc) if isinstance(exc, sqlite3.Error) else exc
            raise ConfigError(f"state database {path} cannot be used: {why}") from exc

    def _wal(self) -> None:
        """WAL mode (readers never wait for the writer). Switching a fresh file to it needs the file alone for a
        moment, which SQLite does not always wait for: asked again until ``BUSY_SECONDS`` have passed."""
        deadline = time.monotonic() + BUSY_SECONDS
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _schema(self, path: Path) -> None:
        for statement in _statements(_SCHEMA):
            self._db.execute(statement)
        found = self._db.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
        if found is None:
            self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(found[0]) in _MIGRATIONS:  # columns added; older rows simply have none
            for version in range(int(found[0]), SCHEMA_VERSION):
                for table, column in _MIGRATIONS[version]:
                    have = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
                    if column not in have:
                        self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} TEXT")
            have = {row[1] for row in self._db.execute("PRAGMA table_info(repair_intents)")}
            if "owner" not in have:
                for statement in _statements(_INTENTS_BY_OWNER):
                    self._db.execute(statement)
            self._db.execute("UPDATE meta SET value = ? WHERE name = 'schema_version'", (str(SCHEMA_VERSION),))
        elif int(found[0]) != SCHEMA_VERSION:
            raise ConfigError(f"state database {path} has schema {found[0]}, this firehose reads {SCHEMA_VERSION}")
        for statement in _statements(_INDEXES):
            self._db.execute(statement)

    def close(self) -> None:
        if self._owner is not None:
            self._owner.release(self._db)
            self._owner = None
        self._db.close()

    @property
    def connection(self) -> sqlite3.Connection:
        """The connection (autocommit; ``BEGIN IMMEDIATE`` for a transaction), for a job that keeps tables of its
        own here (``watching.ledger``): one database, one file to back up."""
        return self._db

    def __enter__(self) -> StateDB:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def run(self, fingerprint: str, arguments: Mapping[str, Any]) -> int:
        """The id of the run with these arguments, made if new (the same arguments resume the same run)."""
        # Insert-if-absent, then read: two runs starting together once both found none and both inserted.
        with self.reading() as db:  # a write too: its failure (a full disk) said the same way
            db.execute(
                "INSERT OR IGNORE INTO runs (fingerprint, arguments, started_at) VALUES (?, ?, ?)",
                (fingerprint, encode(dict(arguments)).decode(), _iso(self.clock())),
            )
            found = db.execute("SELECT id FROM runs WHERE fingerprint = ?", (fingerprint,)).fetchone()
        return int(found[0])

    def finished_windows(self, run_id: int) -> list[WindowRecord]:
        rows = self._db.execute(
            "SELECT start, end, counts, requests, finished_at, lags FROM windows WHERE run_id = ? ORDER BY start",
            (run_id,),
        ).fetchall()
        return [
            WindowRecord(
                _time(s) or datetime.min, _time(e) or datetime.min, decode(c), decode(r), _time(f),
                decode(lags) if lags else {},  # a window saved before lags were kept has none
            )
            for s, e, c, r, f, lags in rows
        ]  # fmt: skip

    @staticmethod
    def _finding_row(run_id: int, window_start: datetime, f: Finding) -> tuple[Any, ...]:
        return (
            run_id,
            _iso(window_start),
            f.verdict.value,
            f.event_id,
            f.destination,
            f.key,
            f.lead_id,
            f.type,
            _iso(f.expires_at),
            f.reason,
            encode(list(f.fields)).decode(),
            encode(dict(f.values)).decode() if f.values is not None else None,
        )

    def save_window(self, run_id: int, window: WindowRecord, findings: Iterable[Finding]) -> None:
        """A window's non-match findings and its done mark, in one transaction."""
        rows = [self._finding_row(run_id, window.start, f) for f in findings if f.verdict != Verdict.MATCH]
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM findings WHERE run_id = ? AND window_start = ?", (run_id, _iso(window.start)))
            self._db.executemany("INSERT OR REPLACE INTO findings VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            self._db.executemany(  # the record of repairs only grows: the first word on an object stands
                "INSERT OR IGNORE INTO repairs VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (f.event_id, f.destination, f.key, _iso(window.start), run_id, _iso(self.clock()))
                    for f in findings
                    if f.verdict == Verdict.REPAIRED
                ],
            )
            self._db.execute(
                "INSERT OR REPLACE INTO windows (run_id, start, end, counts, requests, finished_at, lags) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    _iso(window.start),
                    _iso(window.end),
                    encode(dict(window.counts)).decode(),
                    encode(dict(window.requests)).decode(),
                    _iso(self.clock()),
                    encode(dict(window.lags)).decode(),
                ),
            )
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._db.execute("ROLLBACK")
            raise ConfigError(f"state database {self.path}: cannot save a window: {explain(self.path, exc)}") from exc

    @contextlib.contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The connection for a read (or a one-statement write) whose failure (a disk gone bad, or full under
        SQLite's shared memory) is one line naming the database, as a transaction's is (``watching.ledger`` reads
        through it too)."""
        try:
            yield self._db
        except sqlite3.Error as exc:
            raise ConfigError(f"state database {self.path}: {explain(self.path, exc)}") from exc

    @property
    def repair_owner(self) -> str:
        """This database's owner token for the repairs it intends, made (and its lock taken) at the first ask."""
        if self._owner is None:
            self._owner = RepairOwner.claim(self.path)
        return self._owner.token

    def intend_repair(self, intent: RepairIntent) -> None:
        """Say, before a repair's write goes out, what it will write (committed at once): whatever happens to
        the run after, the next one can tell whether the store took it. ``intent.owner`` is this database's
        ``repair_owner``: another process intending the same pair keeps an intent of its own."""
        try:
            with self._db:
                self._db.execute(
                    "INSERT OR REPLACE INTO repair_intents VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        intent.event_id,
                        intent.destination,
                        intent.credential_id,
                        intent.key,
                        _iso(intent.window_start),
                        intent.run_id,
                        intent.sha256,
                        _iso(self.clock()),
                        intent.owner,
                    ),
                )
        except sqlite3.Error as exc:
            raise ConfigError(f"state database {self.path}: cannot record a repair: {explain(self.path, exc)}") from exc

    def repair_intents(self) -> list[RepairIntent]:
        """Every repair a run said it would write and has not settled: in flight in a live process, or left by
        one that was killed in between."""
        with self.reading() as db:
            rows = db.execute(
                "SELECT event_id, destination, credential_id, key, window_start, run_id, sha256, owner "
                "FROM repair_intents"
            ).fetchall()
        return [RepairIntent(e, d, c, k, _time(w) or datetime.min, int(r), h, o) for e, d, c, k, w, r, h, o in rows]

    def forget_gone_owners(self) -> None:
        """Lock files of repairing processes gone with nothing left to settle (a run's start sweeps them)."""
        with contextlib.suppress(OSError, sqlite3.Error):
            RepairOwner.sweep(self.path, self._db)

    def unsettled_intents(self) -> list[RepairIntent]:
        """The intents this database may settle: its own, and those of owners gone (killed, or ended with an
        answer lost). Another live process's are in flight: its write may land after any look at its key."""
        mine = self._owner.token if self._owner is not None else None
        alive: dict[str, bool] = {}
        found = []
        for intent in self.repair_intents():
            if intent.owner != mine and intent.owner not in alive:
                alive[intent.owner] = RepairOwner.alive(self.path, intent.owner)
            if intent.owner == mine or not alive[intent.owner]:
                found.append(intent)
        return found

    def repair_in_flight(self, event_id: str, destination: str) -> bool:
        """Whether another live process has said it is writing this pair and not yet heard back."""
        mine = self._owner.token if self._owner is not None else None
        with self.reading() as db:
            owners = db.execute(
                "SELECT owner FROM repair_intents WHERE event_id = ? AND destination = ?", (event_id, destination)
            ).fetchall()
        return any(owner != mine and RepairOwner.alive(self.path, owner) for (owner,) in owners)

    def settle_repair(self, intent: RepairIntent, *, wrote: bool) -> None:
        """The end of an intended repair, in one transaction: the intent taken away and, if the store took the
        write, the object put in the record of repairs (at once: a run killed before its window is saved must
        not leave an object that no record holds; the window's save records it again, ignored). Only the one
        settler that takes the intent away records it: two settling a dead owner's intent at once, or one
        settling an intent its owner settled meanwhile, record nothing twice and nothing the owner did not."""
        try:
            with self._db:
                taken = self._db.execute(
                    "DELETE FROM repair_intents WHERE event_id = ? AND destination = ? AND owner = ?",
                    (intent.event_id, intent.destination, intent.owner),
                ).rowcount
                if wrote and taken:
                    self._db.execute(
                        "INSERT OR IGNORE INTO repairs VALUES (?, ?, ?, ?, ?, ?)",
                        (
                            intent.event_id,
                            intent.destination,
                            intent.key,
                            _iso(intent.window_start),
                            intent.run_id,
                            _iso(self.clock()),
                        ),
                    )
        except sqlite3.Error as exc:
            raise ConfigError(f"state database {self.path}: cannot record a repair: {explain(self.path, exc)}") from exc
        if intent.owner != (self._owner.token if self._owner is not None else None):
            RepairOwner.forget(self.path, intent.owner, self._db)

    def was_repaired(self, event_id: str, destination: str) -> bool:
        """Whether a repair (a reconcile's or a watch's) wrote this event's object in this destination."""
        with self.reading() as db:
            found = db.execute(
                "SELECT 1 FROM repairs WHERE event_id = ? AND destination = ?", (event_id, destination)
            ).fetchone()
        return found is not None

    def repaired_among(self, destination: str, event_ids: Iterable[str]) -> set[str]:
        """Which of ``event_ids`` a repair wrote in ``destination`` (a batch of ``was_repaired``)."""
        wanted = sorted(set(event_ids))
        found: set[str] = set()
        with self.reading() as db:
            for first in range(0, len(wanted), 500):
                chunk = wanted[first : first + 500]
                marks = ",".join("?" * len(chunk))
                query = f"SELECT event_id FROM repairs WHERE destination = ? AND event_id IN ({marks})"
                found.update(str(row[0]) for row in db.execute(query, (destination, *chunk)))
        return found

    def add_findings(self, run_id: int, extra: WindowRecord, findings: Sequence[Finding]) -> None:
        """More findings for a saved window (a destination first met in a later window), its counts raised by
        ``extra.counts`` and its requests by ``extra.requests`` (which names the destination checked, even with
        nothing found), in one transaction."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute(
                "SELECT counts, requests FROM windows WHERE run_id = ? AND start = ?", (run_id, _iso(extra.start))
            ).fetchone()
            counts: dict[str, dict[str, int]] = decode(row[0]) if row else {}
            requests: dict[str, dict[str, int]] = decode(row[1]) if row else {}
            for into, more in ((counts, extra.counts), (requests, extra.requests)):
                for destination, added in more.items():
                    mine = into.setdefault(destination, {})
                    for kind, number in added.items():
                        mine[kind] = mine.get(kind, 0) + number
            self._db.execute(
                "UPDATE windows SET counts = ?, requests = ? WHERE run_id = ? AND start = ?",
                (encode(counts).decode(), encode(requests).decode(), run_id, _iso(extra.start)),
            )
            self._db.executemany(
                "INSERT OR REPLACE INTO findings VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [self._finding_row(run_id, extra.start, f) for f in findings],
            )
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._db.execute("ROLLBACK")
            raise ConfigError(f"state database {self.path}: cannot save a window: {explain(self.path, exc)}") from exc

    def findings(self, run_id: int, windows: Iterable[datetime] | None = None) -> Iterator[Finding]:
        """The stored non-match findings of a run (of the given windows only, if any), soonest expiry first
        (unknown expiry first of all)."""
        wanted = {_iso(start) for start in windows} if windows is not None else None
        rows = self._db.execute(
            "SELECT verdict, event_id, key, destination, lead_id, type, expires_at, reason, fields, detail, "
            "window_start FROM findings WHERE run_id = ? "
            "ORDER BY expires_at IS NOT NULL, expires_at, event_id, destination, verdict",
            (run_id,),
        )
        for verdict, event_id, key, destination, lead_id, kind, expires, reason, fields, detail, window_start in rows:
            if wanted is not None and window_start not in wanted:
                continue
            yield Finding(
                Verdict(verdict),
                event_id,
                key,
                destination,
                lead_id,
                kind,
                _time(expires),
                reason,
                tuple(decode(fields)),
                decode(detail) if detail else None,
            )

    def repaired(self, start: datetime, end: datetime) -> Counter[tuple[str, str]]:
        """Objects any run's ``--repair`` ever wrote for events made in ``[start, end]``, per (day, destination),
        from the append-only record of repairs."""
        rows = self._db.execute(
            "SELECT event_id, destination FROM repairs WHERE window_start >= ? AND window_start <= ?",
            (_iso(start - timedelta(days=1)), _iso(end)),
        )
        counts: Counter[tuple[str, str]] = Counter()
        for event_id, destination in rows:
            made = datetime.fromtimestamp(int(event_id[:8], 16), tz=UTC)
            if start <= made <= end:
                counts[(f"{made:%Y-%m-%d}", destination)] += 1
        return counts

    def repaired_since(self, window_start: datetime, moment: datetime) -> bool:
        """Whether a repair wrote an object of this window after ``moment``: findings stored before it no longer
        tell the archive as it is."""
        found = self._db.execute(
            "SELECT 1 FROM repairs WHERE window_start = ? AND repaired_at > ? LIMIT 1",
            (_iso(window_start), _iso(moment)),
        ).fetchone()
        return found is not None

    def history(self) -> Iterator[RunSummary]:
        """Every reconcile or audit run on record, most recent first: what it checked, its windows and their
        counts summed, and the repairs it wrote."""
        rows = self._db.execute(
            "SELECT r.id, r.arguments, r.started_at, r.finished_at, COUNT(w.start), MIN(w.start), MAX(w.end), "
            "(SELECT COUNT(*) FROM repairs p WHERE p.run_id = r.id) "
            "FROM runs r LEFT JOIN windows w ON w.run_id = r.id GROUP BY r.id ORDER BY r.started_at DESC, r.id DESC"
        )
        for run_id, arguments, started, finished, windows, first, last, repairs in rows.fetchall():
            counts: Counter[str] = Counter()
            for (raw,) in self._db.execute("SELECT counts FROM windows WHERE run_id = ?", (run_id,)):
                for per_class in decode(raw).values():  # a window's counts are per destination
                    counts.update({name: n for name, n in per_class.items() if isinstance(n, int)})
            yield RunSummary(run_id, decode(arguments), _time(started), _time(finished), windows, _time(first),
                             _time(last), counts, repairs)  # fmt: skip

    def finish(self, run_id: int) -> None:
        with self.reading() as db:  # a write too, said the same way
            db.execute("UPDATE runs SET finished_at = ? WHERE id = ?", (_iso(self.clock()), run_id))


SENDING = "sending"
"""A ledger row's status between "about to send" and the answer: found after a crash, it means unknown."""
IN_DOUBT_AFTER_CRASH = "a run stopped while this request was in flight: the target may have taken it"


@dataclass(frozen=True)
class LedgerEntry:
    """What the ledger knows of one source event's replays."""

    event_id: str
    lead_id: str | None
    flow_id: str | None
    target: str
    """Where it went, redacted: no user info, credential query values ``***`` (every query value without PII)."""
    status: str  # sending | sent | failed | unknown | skipped
    attempts: int
    http_status: int | None = None
    original_outcome: str | None = None
    new_outcome: str | None = None
    new_lead_id: str | None = None
    reason: str | None = None
    updated_at: datetime | None = None
    identity: Mapping[str, str] | None = None
    """Hashes of what was sent (``body``: the bytes; ``fields``: the parsed fields), never the lead itself."""
    claimed_by: str | None = None
    """The run that claimed it (its id), so a run tells its own claims from another's."""
    claimed_at: datetime | None = None
    """When it was last claimed (set when written ``sending``, kept by the rows that follow)."""


def refusal(entry: LedgerEntry | None, *, force: bool, retry_unknown: bool) -> str | None:
    """Why a lead with this ledger entry must not be sent now, or None when it may be.

    Sent: only with ``force``. In doubt (``unknown``, or ``sending`` left by a run that stopped): only with
    ``retry_unknown`` or ``force``. Failed (nothing reached the flow, or it refused) and skipped: may be sent."""
    if entry is None:
        return None
    if entry.status == "sent" and not force:
        when = f"{entry.updated_at:%Y-%m-%d %H:%M}Z" if entry.updated_at else "an earlier run"
        return f"already sent ({when}, new lead {entry.new_lead_id}); --force sends again"
    if entry.status in ("unknown", SENDING) and not (retry_unknown or force):
        return f"sent before without an answer ({entry.reason}); --retry-unknown sends again"
    return None


def same_lead(twin: LedgerEntry) -> str:
    """Why a lead is not sent when another event with the same request was."""
    state = "sent" if twin.status == "sent" else "sent without an answer"
    return f"the same request as event {twin.event_id}, {state} ({twin.target}); --force sends again"


class ReplayLedger:
    """The replay ledger in the state database: per source event, its attempts and final status.

    A lead is *claimed* before its request goes out: one ``BEGIN IMMEDIATE`` transaction reads its row and, if
    nothing forbids sending, writes it ``sending`` with this run's id (``claim``). SQLite's lock makes that
    atomic across processes: two runs on one database never both claim a lead. The answer's row replaces it.
    A ``kill -9`` in between leaves ``sending``, which the next run reads as ``unknown``: the target may have
    taken the lead, so it is not posted again unless asked (or settled: ``replay.Settler``). Calls come from
    one thread (the replay's).
    """

    _COLUMNS = (
        "event_id, lead_id, flow_id, target, status, attempts, http_status, original_outcome, new_outcome, "
        "new_lead_id, reason, updated_at, identity, claimed_by, claimed_at, request_sha256"
    )

    def __init__(self, state: StateDB) -> None:
        self._db = state._db
        self._path = state.path

    def _entry(self, row: Sequence[Any]) -> LedgerEntry:
        event_id, lead_id, flow_id, target, status, attempts, http_status, outcome, new_outcome, new_lead = row[:10]
        entry = LedgerEntry(
            event_id, lead_id, flow_id, target, status, attempts, http_status, outcome, new_outcome, new_lead,
            row[10], _time(row[11]), decode(row[12]) if row[12] else None, row[13], _time(row[14]),
        )  # fmt: skip
        if entry.status == SENDING:
            return replace(entry, reason=IN_DOUBT_AFTER_CRASH)
        return entry

    def get(self, event_id: str) -> LedgerEntry | None:
        row = self._db.execute(f"SELECT {self._COLUMNS} FROM replays WHERE event_id = ?", (event_id,)).fetchone()
        return None if row is None else self._entry(row)

    def entries(self, status: str | None = None) -> Iterator[LedgerEntry]:
        """Every lead on the ledger (of one status, if given), most recently changed first."""
        where, values = ("WHERE status = ?", (status,)) if status else ("", ())
        rows = self._db.execute(f"SELECT {self._COLUMNS} FROM replays {where} ORDER BY updated_at DESC", values)
        for row in rows:  # one at a time: a ledger may hold every lead ever replayed
            yield self._entry(row)

    def in_doubt(self) -> list[LedgerEntry]:
        """Every lead whose request may or may not have reached its target (``unknown``, or ``sending``)."""
        rows = self._db.execute(
            f"SELECT {self._COLUMNS} FROM replays WHERE status IN ('unknown', ?) ORDER BY event_id", (SENDING,)
        )
        return [self._entry(row) for row in rows]

    def replayed_as(self, lead_id: str) -> str | None:
        """The event whose replay created lead ``lead_id``, if one did: its own source event is a replay, and
        selecting it again would post the same lead twice."""
        row = self._db.execute("SELECT event_id FROM replays WHERE new_lead_id = ?", (lead_id,)).fetchone()
        return str(row[0]) if row else None

    def lookup(self, entry: LedgerEntry) -> tuple[LedgerEntry | None, LedgerEntry | None, str | None]:
        """In one query: this event's row; another event's row with the same request that was sent or may have
        been (the same lead: a replay's own new source event carries the request it was made by, and a lead
        its vendor sent twice carries it twice); and the event whose replay made this event's lead, if any."""
        wanted = (entry.identity or {}).get("request") or ""
        rows = self._db.execute(
            f"SELECT 0, {self._COLUMNS} FROM replays WHERE event_id = ? "
            f"UNION ALL SELECT * FROM (SELECT 1, {self._COLUMNS} FROM replays WHERE request_sha256 = ? "
            "AND event_id != ? AND status IN ('sent', 'unknown', ?) ORDER BY status = 'sent' DESC LIMIT 1) "
            f"UNION ALL SELECT * FROM (SELECT 2, {self._COLUMNS} FROM replays WHERE new_lead_id = ? LIMIT 1)",
            (entry.event_id, wanted, entry.event_id, SENDING, entry.lead_id or ""),
        ).fetchall()
        found: dict[int, Sequence[Any]] = {row[0]: row[1:] for row in reversed(rows)}
        own = self._entry(found[0]) if 0 in found else None
        twin = self._entry(found[1]) if 1 in found else None
        return own, twin, (str(found[2][0]) if 2 in found else None)

    def made_by_replay(self) -> Callable[[str], bool]:
        """``replayed_as(lead) is not None`` for any thread: each thread that asks gets a read-only connection of
        its own (SQLite connections stay in the thread that made them)."""
        local = threading.local()

        def check(lead_id: str) -> bool:
            connection = getattr(local, "db", None)
            if connection is None:
                connection = local.db = sqlite3.connect(f"file:{self._path}?mode=ro", uri=True)
            return connection.execute("SELECT 1 FROM replays WHERE new_lead_id = ?", (lead_id,)).fetchone() is not None

        return check

    def claim(
        self, entry: LedgerEntry, finals: Sequence[LedgerEntry] = (), *, force: bool, retry_unknown: bool
    ) -> str | None:
        """Claim a lead for sending (``entry``, status ``sending``), after writing ``finals`` (the answers that
        came in since, of other leads).

        Returns None when claimed, else why not (another run sent it or has it in doubt since this run planned,
        or another event with the same request was sent). The claim is one conditional statement, which SQLite
        runs atomically under its write lock, across processes: it writes the row only if no row forbids it.
        (One statement, not a read then a write: each call gives up Python's lock to the sending threads, and
        this runs once per lead.)"""
        blocked = ["(event_id = ? AND claimed_by IS NOT ?"]
        if not force:
            statuses = "'sent', 'unknown', ?" if not retry_unknown else "'sent'"
            blocked[0] += f" AND status IN ({statuses}))"
            blocked.append("(request_sha256 = ? AND event_id != ? AND status IN ('sent', 'unknown', ?))")
        else:
            blocked[0] += " AND 0)"
        params: list[Any] = [entry.event_id, entry.claimed_by]
        if not force:
            params += [SENDING] if not retry_unknown else []
            params += [(entry.identity or {}).get("request") or "", entry.event_id, SENDING]
        # One statement, run by SQLite as one transaction: the answers' rows (unconditional) and this lead's
        # claim (only if nothing forbids it). A statement is also one hand-over of Python's lock to the sending
        # threads, which made three (begin, write, commit) cost more than the write itself.
        rows = [*finals, entry]
        values = ",".join([f"({','.join('?' * 16)})"] * len(rows))
        try:
            cursor = self._db.execute(
                f"INSERT INTO replays ({self._COLUMNS}) SELECT * FROM (VALUES {values}) "
                f"WHERE column5 != '{SENDING}' OR NOT EXISTS (SELECT 1 FROM replays WHERE {' OR '.join(blocked)}) "
                f"{self._ON_CONFLICT}",
                [value for row in self._rows(rows) for value in row] + params,
            )
            if cursor.rowcount == len(rows):
                return None
            current, twin, _ = self.lookup(entry)  # refused: say why (rare, so read only now)
        except sqlite3.Error as exc:
            raise ConfigError(
                f"state database {self._path}: cannot write the replay ledger: {explain(self._path, exc)}"
            ) from exc
        why = refusal(current, force=force, retry_unknown=retry_unknown) if current is not None else None
        if why is None and twin is not None:
            why = same_lead(twin)
        return f"claimed by another run meanwhile: {why or 'refused by the ledger'}"

    def write(self, entries: Sequence[LedgerEntry]) -> None:
        """Write several entries in one transaction."""
        if not entries:
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._upsert(entries)
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise ConfigError(
                f"state database {self._path}: cannot write the replay ledger: {explain(self._path, exc)}"
            ) from exc

    def _rows(self, entries: Sequence[LedgerEntry]) -> list[tuple[Any, ...]]:
        now = _iso(datetime.now(UTC))
        return [
            (
                e.event_id,
                e.lead_id,
                e.flow_id,
                e.target,
                e.status,
                e.attempts,
                e.http_status,
                e.original_outcome,
                e.new_outcome,
                e.new_lead_id,
                e.reason,
                now,
                encode(dict(e.identity)).decode() if e.identity else None,
                e.claimed_by,
                now if e.status == SENDING else _iso(e.claimed_at),
                (e.identity or {}).get("request"),
            )
            for e in entries
        ]

    # A row written ``sending`` records when it was claimed; the rows after it keep that time.
    _ON_CONFLICT = (
        "ON CONFLICT (event_id) DO UPDATE SET "
        + ", ".join(f"{name} = excluded.{name}" for name in _COLUMNS.split(", ")[1:] if name != "claimed_at")
        + ", claimed_at = COALESCE(excluded.claimed_at, replays.claimed_at)"
    )

    def _upsert(self, entries: Sequence[LedgerEntry]) -> None:
        if entries:
            self._db.executemany(
                f"INSERT INTO replays ({self._COLUMNS}) VALUES ({','.join('?' * 16)}) {self._ON_CONFLICT}",
                self._rows(entries),
            )


class RepairOwner:
    """Who intends repairs on a state database: a token, and an exclusive ``flock`` on
    ``<database>.repair-<token>.lock`` held while the process lives. The kernel drops the lock when the process
    ends, ``kill -9`` included: another process that can take the lock (shared, without waiting) knows the owner
    is gone and may settle its intents; one that cannot leaves them to their owner, whose write may still land.
    (A flock, not a pid: pids are reused, and flocks also tell two databases in one process apart.)"""

    def __init__(self, database: Path, token: str, handle: Any) -> None:
        self.database, self.token, self._handle = database, token, handle

    @staticmethod
    def _path(database: Path, token: str) -> Path:
        return database.with_name(f"{database.name}.repair-{token}.lock")

    @classmethod
    def claim(cls, database: Path) -> RepairOwner:
        token = uuid.uuid4().hex
        try:
            handle = cls._path(database, token).open("a+")
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
            handle.flush()
        except OSError as exc:
            raise ConfigError(f"state database {database}: cannot make its repair lock file ({exc.strerror})") from exc
        return cls(database, token, handle)

    @classmethod
    def alive(cls, database: Path, token: str) -> bool:
        if not token:  # an intent of a firehose before owners: its run has long ended
            return False
        try:
            handle = cls._path(database, token).open("r")
        except FileNotFoundError:
            return False
        except OSError:
            return True  # cannot tell: left alone (settled by its owner, or by a later run that can look)
        with handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return True
            return False

    @classmethod
    def forget(cls, database: Path, token: str, db: sqlite3.Connection) -> None:
        """A gone owner's lock file, once none of its intents is left."""
        if token and db.execute("SELECT 1 FROM repair_intents WHERE owner = ? LIMIT 1", (token,)).fetchone() is None:
            with contextlib.suppress(OSError):
                cls._path(database, token).unlink()

    @classmethod
    def sweep(cls, database: Path, db: sqlite3.Connection) -> None:
        """The lock files of owners gone with no intent left (a process killed between two repairs)."""
        for path in database.parent.glob(f"{glob.escape(database.name)}.repair-*.lock"):
            token = path.name[len(database.name) + len(".repair-") : -len(".lock")]
            if not cls.alive(database, token):
                cls.forget(database, token, db)

    def release(self, db: sqlite3.Connection) -> None:
        """At the end of the process's use: the lock dropped, and its file removed unless intents remain (an
        answer lost: a later run settles them, as a killed run's)."""
        with contextlib.suppress(sqlite3.Error):
            RepairOwner.forget(self.database, self.token, db)
        self._handle.close()


class RunLock:
    """One run of a kind at a time on a state database (``replay``; ``reconcile``, which audits share): an
    exclusive ``flock`` on ``<database>.<what>-lock``, taken without waiting. The kernel drops it when the
    process ends, ``kill -9`` included, so a crashed run never leaves it behind. The file says who holds it
    (pid, command, host, since when), for the message the second run prints."""

    def __init__(self, database: Path, what: str = "replay", command: str | None = None) -> None:
        self.database = database
        self.path = database.with_name(database.name + f".{what}-lock")
        self.what = what
        self.command = command or f"firehose {what}"
        self._handle: Any = None

    def __enter__(self) -> RunLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = self.path.open("a+")
        except OSError as exc:
            raise ConfigError(f"state database {self.database}: cannot make its lock file: {os_why(exc)}") from exc
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _holder(handle)
            handle.close()
            raise ConfigError(
                f"state database {self.database}: another {self.what} is using it ({holder}); "
                f"wait for it to finish, or give this one its own --state"
            ) from None
        since = f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S}Z"
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} ({self.command}) on {socket.gethostname()}, since {since}")
            handle.flush()
        except OSError as exc:  # a full disk: the run could not keep its state either
            with contextlib.suppress(OSError):
                handle.close()
            raise ConfigError(f"state database {self.database}: cannot write its lock file: {os_why(exc)}") from None
        self._handle = handle
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._handle is not None:
            self._handle.close()  # closing drops the lock
            self._handle = None


HOLDER_WAIT_SECONDS = 1.0
"""How long a refused run waits for the lock's holder to say who it is."""


def _holder(handle: Any) -> str:
    """Who holds a run lock, as it wrote it. The holder writes right after it takes the lock, so an empty file is
    read again for up to ``HOLDER_WAIT_SECONDS``: three reconciles started at once, one refused in that gap said
    "another process" where it could name the pid."""
    deadline = time.monotonic() + HOLDER_WAIT_SECONDS
    while True:
        handle.seek(0)
        text: str = handle.read().strip()
        if text or time.monotonic() >= deadline:
            return text or "another process"
        time.sleep(0.02)


def no_database_yet(path: Path) -> bool:
    """No state database at ``path`` yet, and nothing in the way of one. A path under a file is not "none yet":
    opening it is the state database's error to report, never an empty history or a dry run's blank ledger."""
    if path.exists():
        return False
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    return folder.is_dir()
