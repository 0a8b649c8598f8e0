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
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from firehose.codec import decode, encode
from firehose.errors import ConfigError
from firehose.reconcile import Finding, Verdict

SCHEMA_VERSION = 2
"""2 added ``findings.detail`` (the differing values kept with ``--include-pii``)."""

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
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS replays_new_lead ON replays (new_lead_id);
"""


@dataclass(frozen=True)
class WindowRecord:
    """A finished window of a run."""

    start: datetime
    end: datetime
    counts: Mapping[str, Any]
    requests: Mapping[str, Any]
    finished_at: datetime | None = None


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment else None


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


class StateDB:
    """The state database at ``path`` (created with its folder if absent)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"state database {path}: cannot create its folder ({exc.strerror})") from exc
        self._db = sqlite3.connect(path, isolation_level=None)  # explicit transactions below
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            found = self._db.execute("SELECT value FROM meta WHERE name = 'schema_version'").fetchone()
            if found is None:
                self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(found[0]) == 1:  # a column added; older rows simply have none
                self._db.execute("ALTER TABLE findings ADD COLUMN detail TEXT")
                self._db.execute("UPDATE meta SET value = ? WHERE name = 'schema_version'", (str(SCHEMA_VERSION),))
            elif int(found[0]) != SCHEMA_VERSION:
                raise ConfigError(f"state database {path} has schema {found[0]}, this firehose reads {SCHEMA_VERSION}")
        except (sqlite3.Error, ConfigError) as exc:
            self._db.close()
            if isinstance(exc, ConfigError):
                raise
            raise ConfigError(f"state database {path} cannot be used: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> StateDB:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def run(self, fingerprint: str, arguments: Mapping[str, Any]) -> int:
        """The id of the run with these arguments, made if new (the same arguments resume the same run)."""
        found = self._db.execute("SELECT id FROM runs WHERE fingerprint = ?", (fingerprint,)).fetchone()
        if found:
            return int(found[0])
        cursor = self._db.execute(
            "INSERT INTO runs (fingerprint, arguments, started_at) VALUES (?, ?, ?)",
            (fingerprint, encode(dict(arguments)).decode(), _iso(datetime.now(UTC))),
        )
        return int(cursor.lastrowid or 0)

    def finished_windows(self, run_id: int) -> list[WindowRecord]:
        rows = self._db.execute(
            "SELECT start, end, counts, requests, finished_at FROM windows WHERE run_id = ? ORDER BY start", (run_id,)
        ).fetchall()
        return [
            WindowRecord(_time(s) or datetime.min, _time(e) or datetime.min, decode(c), decode(r), _time(f))
            for s, e, c, r, f in rows
        ]

    def save_window(self, run_id: int, window: WindowRecord, findings: Iterable[Finding]) -> None:
        """A window's non-match findings and its done mark, in one transaction."""
        rows = [
            (
                run_id,
                _iso(window.start),
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
            for f in findings
            if f.verdict != Verdict.MATCH
        ]
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM findings WHERE run_id = ? AND window_start = ?", (run_id, _iso(window.start)))
            self._db.executemany("INSERT OR REPLACE INTO findings VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            self._db.execute(
                "INSERT OR REPLACE INTO windows VALUES (?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    _iso(window.start),
                    _iso(window.end),
                    encode(dict(window.counts)).decode(),
                    encode(dict(window.requests)).decode(),
                    _iso(datetime.now(UTC)),
                ),
            )
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._db.execute("ROLLBACK")
            raise ConfigError(f"state database {self.path}: cannot save a window: {exc}") from exc

    def findings(self, run_id: int, windows: Iterable[datetime] | None = None) -> Iterator[Finding]:
        """The stored non-match findings of a run (of the given windows only, if any), soonest expiry first
        (unknown expiry first of all)."""
        wanted = {_iso(start) for start in windows} if windows is not None else None
        rows = self._db.execute(
            "SELECT verdict, event_id, key, destination, lead_id, type, expires_at, reason, fields, detail, "
            "window_start FROM findings WHERE run_id = ? ORDER BY expires_at IS NOT NULL, expires_at, event_id",
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
        """Objects any run's ``--repair`` wrote for windows in ``[start, end]``, per (day, destination), each
        (event, destination) once however many runs saw it."""
        rows = self._db.execute(
            "SELECT DISTINCT event_id, destination, window_start FROM findings WHERE verdict = ? "
            "AND window_start >= ? AND window_start <= ?",
            (Verdict.REPAIRED.value, _iso(start - timedelta(days=1)), _iso(end)),
        )
        counts: Counter[tuple[str, str]] = Counter()
        seen: set[tuple[str, str]] = set()
        for event_id, destination, _ in rows:
            made = datetime.fromtimestamp(int(event_id[:8], 16), tz=UTC)
            if start <= made <= end and (event_id, destination) not in seen:
                seen.add((event_id, destination))
                counts[(f"{made:%Y-%m-%d}", destination)] += 1
        return counts

    def finish(self, run_id: int) -> None:
        self._db.execute("UPDATE runs SET finished_at = ? WHERE id = ?", (_iso(datetime.now(UTC)), run_id))


SENDING = "sending"
"""A ledger row's status between "about to send" and the answer: found after a crash, it means unknown."""


@dataclass(frozen=True)
class LedgerEntry:
    """What the ledger knows of one source event's replays."""

    event_id: str
    lead_id: str | None
    flow_id: str | None
    target: str
    status: str  # sending | sent | failed | unknown | skipped
    attempts: int
    http_status: int | None = None
    original_outcome: str | None = None
    new_outcome: str | None = None
    new_lead_id: str | None = None
    reason: str | None = None
    updated_at: datetime | None = None


class ReplayLedger:
    """The replay ledger in the state database: per source event, its attempts and final status.

    A row is written (and committed) as ``sending`` before its request goes out, and updated when the answer
    comes. A ``kill -9`` in between leaves ``sending``, which the next run reads as ``unknown``: the target may
    have taken the lead, so it is not posted again unless asked. Calls come from one thread (the replay's).
    """

    _COLUMNS = (
        "event_id, lead_id, flow_id, target, status, attempts, http_status, original_outcome, new_outcome, "
        "new_lead_id, reason, updated_at"
    )

    def __init__(self, state: StateDB) -> None:
        self._db = state._db
        self._path = state.path

    def get(self, event_id: str) -> LedgerEntry | None:
        row = self._db.execute(f"SELECT {self._COLUMNS} FROM replays WHERE event_id = ?", (event_id,)).fetchone()
        if row is None:
            return None
        entry = LedgerEntry(*row[:-1])
        entry = replace(entry, updated_at=_time(row[-1]))
        if entry.status == SENDING:
            return replace(
                entry,
                status="unknown",
                reason="a run stopped while this request was in flight: the target may have taken it",
            )
        return entry

    def replayed_as(self, lead_id: str) -> str | None:
        """The event whose replay created lead ``lead_id``, if one did: its own source event is a replay, and
        selecting it again would post the same lead twice."""
        row = self._db.execute("SELECT event_id FROM replays WHERE new_lead_id = ?", (lead_id,)).fetchone()
        return str(row[0]) if row else None

    def write(self, entries: Sequence[LedgerEntry]) -> None:
        """Write several entries in one transaction (one commit: replay writes a lead's ``sending`` row with
        the final rows of the answers that came in meanwhile)."""
        if not entries:
            return
        now = _iso(datetime.now(UTC))
        rows = [
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
            )
            for e in entries
        ]
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                f"INSERT OR REPLACE INTO replays ({self._COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows
            )
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise ConfigError(f"state database {self._path}: cannot write the replay ledger: {exc}") from exc
