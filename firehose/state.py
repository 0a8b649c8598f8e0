"""Local state in one embedded SQLite database: what a reconcile run has finished, so that an interrupted run
resumes where it stopped and a nightly run re-examines only new windows.

Writes are transactions per window: a window's findings and its "done" mark are committed together, so a
``kill -9`` between windows loses nothing and one inside a window only repeats that window. WAL mode lets a
reader (a report) look while a run writes.

Tables:

- ``runs``: one row per distinct set of run arguments (their fingerprint); resuming means the same fingerprint.
- ``windows``: the windows a run has finished, with their counts and request counts (JSON).
- ``findings``: every non-``match`` finding of finished windows (matches are only counted).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
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

    def finish(self, run_id: int) -> None:
        self._db.execute("UPDATE runs SET finished_at = ? WHERE id = ?", (_iso(datetime.now(UTC)), run_id))
