"""The state database keeps finished windows and their findings across processes, for resuming."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from firehose.errors import ConfigError
from firehose.findings import Finding, Verdict
from firehose.state import StateDB, WindowRecord

DAY = datetime(2026, 11, 1, tzinfo=UTC)


def finding(event_id: str, verdict: Verdict, expires: datetime | None) -> Finding:
    return Finding(verdict, event_id, f"k/{event_id}.json", "s3://b/k", "lead", "source", expires, "why", ("vars",))


def test_a_finished_window_survives_a_new_process(tmp_path: Path) -> None:
    path = tmp_path / "state" / "firehose.sqlite"
    with StateDB(path) as db:
        run = db.run("fp1", {"start": "2026-11-01"})
        window = WindowRecord(DAY, DAY + timedelta(days=1), {"match": 3, "missing": 2}, {"list": 4, "head": 1})
        db.save_window(
            run,
            window,
            [
                finding("a" * 24, Verdict.MATCH, None),
                finding("b" * 24, Verdict.MISSING, DAY + timedelta(days=80)),
                finding("c" * 24, Verdict.DIFFER, DAY + timedelta(days=2)),
            ],
        )
    with StateDB(path) as again:
        assert again.run("fp1", {"start": "2026-11-01"}) == run
        assert again.run("fp2", {}) != run
        (stored,) = again.finished_windows(run)
        assert stored.start == DAY and stored.counts == {"match": 3, "missing": 2} and stored.requests["list"] == 4
        found = list(again.findings(run))
        assert [f.event_id for f in found] == ["c" * 24, "b" * 24]  # soonest expiry first, matches not kept
        assert found[0].fields == ("vars",) and found[0].expires_at == DAY + timedelta(days=2)


def test_saving_a_window_again_replaces_it(tmp_path: Path) -> None:
    with StateDB(tmp_path / "s.sqlite") as db:
        run = db.run("fp", {})
        window = WindowRecord(DAY, DAY + timedelta(days=1), {"missing": 1}, {})
        db.save_window(run, window, [finding("b" * 24, Verdict.MISSING, None)])
        db.save_window(run, window, [])
        assert list(db.findings(run)) == [] and len(db.finished_windows(run)) == 1


def test_an_unusable_or_foreign_database_is_a_config_error(tmp_path: Path) -> None:
    not_a_db = tmp_path / "junk.sqlite"
    not_a_db.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigError, match=r"junk\.sqlite cannot be used"):
        StateDB(not_a_db)
    newer = tmp_path / "newer.sqlite"
    StateDB(newer).close()
    with sqlite3.connect(newer) as raw:
        raw.execute("UPDATE meta SET value = '99' WHERE name = 'schema_version'")
    with pytest.raises(ConfigError, match="has schema 99"):
        StateDB(newer)


def test_a_version_1_database_gains_the_detail_column_and_keeps_its_findings(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with StateDB(path) as db:
        run = db.run("fp", {})
        db.save_window(run, WindowRecord(DAY, DAY, {}, {}), [finding("b" * 24, Verdict.MISSING, None)])
    with sqlite3.connect(path) as raw:  # make it what firehose 1 wrote: no detail column
        raw.execute("ALTER TABLE findings DROP COLUMN detail")
        raw.execute("UPDATE meta SET value = '1' WHERE name = 'schema_version'")
    with StateDB(path) as db:
        [old] = list(db.findings(run))
        assert old.event_id == "b" * 24 and old.values is None
        values = {"vars": {"archive": {"lead": {"email": "a@example.com"}}, "api": {"lead": {}}}}
        differ = Finding(Verdict.DIFFER, "c" * 24, "k", "s3://b/k", fields=("vars",), values=values)
        db.save_window(run, WindowRecord(DAY, DAY, {}, {}), [differ])
        assert [f.values for f in db.findings(run)] == [values]
