"""``firehose watch``'s tables in the state database (made by ``state._SCHEMA``): what a restart, ``kill -9``
included, resumes from without missing or counting twice an event.

Each step is one transaction: a batch of new events (their ids, their pairs, their ``seen`` counts, the cursor),
then a poll's outcomes (pairs settled or made late, their counts, and the alerts they raise, in an outbox). An
alert leaves the outbox only once every place it goes (stdout, each ``--alert-url`` and ``--alert-command``) has
taken it, each place keeping its own mark, so a kill between the two repeats an alert, never loses one.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from firehose.codec import decode, encode
from firehose.errors import ConfigError
from firehose.state import StateDB, explain


@dataclass(frozen=True)
class Pair:
    """One (event, destination) the watch waits for: where its object should be, and by when."""

    event_id: str
    destination: str
    """The destination's URL (``s3://bucket/prefix``)."""
    credential_id: str | None
    key: str
    lead_id: str
    ended: float
    """The event's end (``end_timestamp``), Unix seconds: what the deadline and the delivery lag count from."""
    deadline: float
    late: bool = False
    next_check: float = 0.0
    repair: str | None = None
    """Why ``--repair-after`` could not write it (``EXPIRED``: the API no longer holds the event, so it is never
    tried again); None while no repair has failed. Kept so that a failure is reported once, not every recheck."""


EXPIRED = "expired"
_PAIR_COLUMNS = "event_id, destination, credential_id, key, lead_id, ended, deadline, late, next_check, repair"


class WatchLedger:
    """The watch's tables, for one ``source`` (the API's URL: its cursor is its own)."""

    def __init__(self, state: StateDB, source: str) -> None:
        self._state = state
        self._db = state.connection
        self.source = source

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise ConfigError(f"state database {self._state.path}: {explain(self._state.path, exc)}") from exc

    def cursor(self) -> str | None:
        with self._state.reading() as db:
            row = db.execute("SELECT event_id FROM watch_cursor WHERE source = ?", (self.source,)).fetchone()
        return str(row[0]) if row else None

    def seen_ids(self) -> set[str]:
        with self._state.reading() as db:
            return {str(row[0]) for row in db.execute("SELECT event_id FROM watch_seen")}

    def record_events(self, event_ids: Iterable[str], pairs: list[Pair], cursor: str | None) -> None:
        """New events seen: their ids (for de-duplication), the pairs to wait for, a ``seen`` count per
        destination, and the cursor, all at once."""
        seen = Counter(pair.destination for pair in pairs)
        with self._transaction() as db:
            db.executemany("INSERT OR IGNORE INTO watch_seen VALUES (?)", [(event_id,) for event_id in event_ids])
            db.executemany(
                f"INSERT OR IGNORE INTO watch_pending ({_PAIR_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [_row(pair) for pair in pairs],
            )
            _count(db, [(destination, "seen", number) for destination, number in seen.items()])
            if cursor is not None:
                db.execute(
                    "INSERT INTO watch_cursor VALUES (?, ?, ?) ON CONFLICT(source) DO UPDATE SET "
                    "event_id = excluded.event_id, updated_at = excluded.updated_at",
                    (self.source, cursor, datetime.now(UTC).isoformat()),
                )

    def forget_seen_below(self, event_id: str) -> None:
        """Ids below the overlap are never read again: no need to remember them."""
        with self._transaction() as db:
            db.execute("DELETE FROM watch_seen WHERE event_id < ?", (event_id,))

    # A poll reads only what it acts on (``Watcher._look``): the pairs whose objects its listings found, those
    # whose deadline has just passed and the late ones due for a recheck, each through an index; the pairs
    # still waiting within their deadline are read as the distinct seconds of their leads (the listings' ranges),
    # stepping through an index from one second to the next, never row by row. Loading every pair awaited made
    # a poll cost in proportion to the backlog (0.24 s of CPU at 50,000 pairs; see scripts/bench_watch_backlog.py).

    def destinations(self) -> list[str]:
        """The destinations with a pair awaited, one index step each."""
        found: list[str] = []
        with self._state.reading() as db:
            while row := db.execute(
                "SELECT destination FROM watch_pending WHERE destination > ? ORDER BY destination LIMIT 1",
                (found[-1] if found else "",),
            ).fetchone():
                found.append(str(row[0]))
        return found

    def looking(self, now: float) -> list[tuple[str, str | None]]:
        """The destinations (URL, and the credential its pairs name) with a pair to look for at ``now``: one not
        yet late, or a late one whose recheck has come."""
        found: list[tuple[str, str | None]] = []
        with self._state.reading() as db:
            for destination in self.destinations():
                row = db.execute(
                    "SELECT credential_id FROM watch_pending WHERE destination = ? AND late = 0 UNION ALL "
                    "SELECT credential_id FROM watch_pending WHERE destination = ? AND late = 1 AND next_check <= ? "
                    "LIMIT 1",
                    (destination, destination, now),
                ).fetchone()
                if row is not None:
                    found.append((destination, row[0]))
        return found

    def waiting_seconds(self, destination: str) -> list[tuple[str, str]]:
        """The distinct (lead id's first 8 digits, event id's first 8 digits) of the pairs of ``destination`` not
        yet late: whence the listings' ranges."""
        found: list[tuple[str, str]] = []
        where = "destination = ? AND late = 0"
        with self._state.reading() as db:
            lead = ""
            while row := db.execute(
                f"SELECT substr(lead_id, 1, 8) FROM watch_pending WHERE {where} AND substr(lead_id, 1, 8) > ? "
                "ORDER BY substr(lead_id, 1, 8) LIMIT 1",
                (destination, lead),
            ).fetchone():
                lead, event = str(row[0]), ""
                while row := db.execute(
                    f"SELECT substr(event_id, 1, 8) FROM watch_pending WHERE {where} AND substr(lead_id, 1, 8) = ? "
                    "AND substr(event_id, 1, 8) > ? ORDER BY substr(event_id, 1, 8) LIMIT 1",
                    (destination, lead, event),
                ).fetchone():
                    event = str(row[0])
                    found.append((lead, event))
        return found

    def pairs_found(self, destination: str, event_ids: Iterable[str], now: float) -> list[Pair]:
        """The pairs of ``destination`` to look for at ``now`` among ``event_ids`` (objects a listing found)."""
        wanted = sorted(set(event_ids))
        found: list[Pair] = []
        for first in range(0, len(wanted), _CHUNK):
            chunk = wanted[first : first + _CHUNK]
            where = f"destination = ? AND event_id IN ({','.join('?' * len(chunk))}) AND (late = 0 OR next_check <= ?)"
            found += self._pairs(where, destination, *chunk, now)
        return found

    def waiting_of_seconds(self, destination: str, seconds: Iterable[tuple[str, str]]) -> list[Pair]:
        """The pairs of ``destination`` not yet late with these (lead, event) first 8 digits."""
        where = "destination = ? AND late = 0 AND substr(lead_id, 1, 8) = ? AND substr(event_id, 1, 8) = ?"
        return [pair for lead, event in sorted(set(seconds)) for pair in self._pairs(where, destination, lead, event)]

    def turning_late_at(self, now: float) -> list[str]:
        """The destinations with a pair not yet late whose deadline has come: one index step each."""
        with self._state.reading() as db:
            return [
                destination
                for destination in self.destinations()
                if db.execute(
                    "SELECT 1 FROM watch_pending WHERE destination = ? AND late = 0 AND deadline <= ? LIMIT 1",
                    (destination, now),
                ).fetchone()
            ]

    def turning_late(self, destination: str, now: float) -> list[Pair]:
        """The pairs of ``destination`` not yet late whose deadline has come."""
        return self._pairs("destination = ? AND late = 0 AND deadline <= ?", destination, now)

    def rechecks(self, destination: str, now: float) -> list[Pair]:
        """The late pairs of ``destination`` whose recheck has come."""
        return self._pairs("destination = ? AND late = 1 AND next_check <= ?", destination, now)

    def newest_waiting(self, destination: str, limit: int) -> list[Pair]:
        """The newest ``limit`` pairs still awaited at ``destination``, due or not: what a look at a destination
        whose down is due reads when none of its pairs is (they are all late, their rechecks later)."""
        with self._state.reading() as db:
            rows = db.execute(
                f"SELECT {_PAIR_COLUMNS} FROM watch_pending WHERE destination = ? ORDER BY event_id DESC LIMIT ?",
                (destination, limit),
            ).fetchall()
        return [_pair(r) for r in rows]

    def _pairs(self, where: str, *values: Any) -> list[Pair]:
        with self._state.reading() as db:
            rows = db.execute(f"SELECT {_PAIR_COLUMNS} FROM watch_pending WHERE {where}", values).fetchall()
        return [_pair(r) for r in rows]

    def waiting_since(self, after: Callable[[str], float]) -> dict[str, float]:
        """Per destination, the end of the oldest event still waited for that ended after ``after(destination)``
        (none: left out)."""
        found: dict[str, float] = {}
        with self._state.reading() as db:
            for destination in self.destinations():  # MIN per destination: one index step each
                (ended,) = db.execute(
                    "SELECT MIN(ended) FROM watch_pending WHERE destination = ? AND ended > ?",
                    (destination, after(destination)),
                ).fetchone()
                if ended is not None:
                    found[destination] = float(ended)
        return found

    def settle(
        self,
        *,
        done: list[tuple[Pair, str]],
        made_late: list[Pair],
        rechecked: list[Pair],
        alerts: list[dict[str, Any]],
    ) -> None:
        """A poll's outcomes: pairs ``done`` (``archived``, ``recovered``, ``repaired`` or ``forgotten``: no longer
        waited for), pairs ``made_late`` (counted) and ``rechecked`` (late ones, looked at again at their
        ``next_check``, with how their repair last failed), counts, and the alerts to deliver."""
        counts: Counter[tuple[str, str]] = Counter((pair.destination, outcome) for pair, outcome in done)
        counts.update((pair.destination, "late") for pair in made_late)
        with self._transaction() as db:
            db.executemany(
                "DELETE FROM watch_pending WHERE event_id = ? AND destination = ?",
                [(pair.event_id, pair.destination) for pair, _ in done],
            )
            db.executemany(
                "UPDATE watch_pending SET late = ?, next_check = ?, repair = ? WHERE event_id = ? AND destination = ?",
                [(int(p.late), p.next_check, p.repair, p.event_id, p.destination) for p in [*made_late, *rechecked]],
            )
            _count(db, [(destination, outcome, n) for (destination, outcome), n in counts.items()])
            db.executemany("INSERT INTO watch_alerts (body) VALUES (?)", [(encode(a).decode(),) for a in alerts])

    def open_sinks(self, sinks: Iterable[str]) -> None:
        """The places alerts go this run (``stdout``, ``webhook:...``, ``command:...``), each with how far it has
        taken the outbox. A place new to the database starts at the alerts still waiting; one no longer named is
        forgotten, so the alerts only it still wanted go."""
        names = sorted(set(sinks))
        with self._transaction() as db:
            marks = ", ".join("?" * len(names))
            db.execute(f"DELETE FROM watch_alert_sinks WHERE sink NOT IN ({marks})", names)
            (oldest,) = db.execute("SELECT MIN(id) FROM watch_alerts").fetchone()
            if oldest is None:  # nothing waits: from the last id ever given (ids are never reused)
                found = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'watch_alerts'").fetchone()
                start = int(found[0]) if found else 0
            else:
                start = int(oldest) - 1
            db.executemany("INSERT OR IGNORE INTO watch_alert_sinks VALUES (?, ?)", [(n, start) for n in names])
            _prune(db)

    def undelivered(self, sink: str = "stdout", limit: int = 1000) -> list[tuple[int, dict[str, Any]]]:
        """Alerts ``sink`` has not taken yet, oldest first, each with its ``id``: the outbox row's number, never
        reused in this database, the same at every delivery of the alert (a receiver de-duplicates on it)."""
        with self._state.reading() as db:
            rows = db.execute(
                "SELECT id, body FROM watch_alerts WHERE id > COALESCE("
                "(SELECT delivered FROM watch_alert_sinks WHERE sink = ?), 0) ORDER BY id LIMIT ?",
                (sink, limit),
            ).fetchall()
        return [(int(number), {"id": int(number), **decode(body, where="watch_alerts")}) for number, body in rows]

    def delivered(self, number: int, sink: str = "stdout") -> None:
        """``sink`` has taken (or given up for good on) every alert up to ``number``; an alert every place has
        taken leaves the outbox."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO watch_alert_sinks VALUES (?, ?) ON CONFLICT(sink) DO UPDATE SET "
                "delivered = MAX(delivered, excluded.delivered)",
                (sink, number),
            )
            _prune(db)

    def waiting(self, sink: str) -> int:
        """Alerts ``sink`` has not taken yet."""
        with self._state.reading() as db:
            (number,) = db.execute(
                "SELECT COUNT(*) FROM watch_alerts WHERE id > COALESCE("
                "(SELECT delivered FROM watch_alert_sinks WHERE sink = ?), 0)",
                (sink,),
            ).fetchone()
        return int(number)

    @property
    def state(self) -> StateDB:
        """The state database (a repair records its intent and its write there, as reconcile's do)."""
        return self._state

    def counts(self) -> dict[str, dict[str, int]]:
        """Totals per destination and outcome (``seen``, ``archived``, ``late``, ``recovered``, ``repaired``,
        ``forgotten``)."""
        found: dict[str, dict[str, int]] = defaultdict(dict)
        with self._state.reading() as db:
            rows = db.execute("SELECT destination, outcome, count FROM watch_counts").fetchall()
        for destination, outcome, number in rows:
            found[str(destination)][str(outcome)] = int(number)
        return dict(found)

    def late_now(self) -> int:
        """Pairs late and still missing."""
        with self._state.reading() as db:
            return int(db.execute("SELECT COUNT(*) FROM watch_pending WHERE late = 1").fetchone()[0])


_CHUNK = 500
"""Event ids a query asks for at once (SQLite takes 32,766 parameters; a statement of 500 is quick to make)."""


def _pair(r: Any) -> Pair:
    return Pair(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7]), r[8], r[9])


def _row(pair: Pair) -> tuple[Any, ...]:
    return (
        pair.event_id,
        pair.destination,
        pair.credential_id,
        pair.key,
        pair.lead_id,
        pair.ended,
        pair.deadline,
        int(pair.late),
        pair.next_check,
        pair.repair,
    )


def _prune(db: sqlite3.Connection) -> None:
    db.execute("DELETE FROM watch_alerts WHERE id <= (SELECT MIN(delivered) FROM watch_alert_sinks)")


def _count(db: sqlite3.Connection, rows: list[tuple[str, str, int]]) -> None:
    db.executemany(
        "INSERT INTO watch_counts VALUES (?, ?, ?) "
        "ON CONFLICT(destination, outcome) DO UPDATE SET count = count + excluded.count",
        rows,
    )
