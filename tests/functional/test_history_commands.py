"""`firehose runs` and `firehose ledger`: past runs and the replay ledger, read without opening SQLite."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from firehose.state import LedgerEntry, ReplayLedger, StateDB
from tests.conftest import API_KEY, UNTIL, RunningSandbox
from tests.functional.clirun import invoke


def test_runs_lists_each_reconcile_with_its_counts_and_repairs(sandbox: RunningSandbox, tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite"
    env = {"LEADCONDUIT_API_KEY": API_KEY, "LEADCONDUIT_URL": sandbox.url, "FIREHOSE_STATE": str(state)}
    empty = invoke(["runs"], env)
    assert empty.code == 0 and "no state database" in empty.stderr and not state.exists()
    nothing = invoke(["runs", "--format", "json"], env)
    assert json.loads(nothing.stdout) == {"schema": "firehose.runs/1", "runs": []} and not state.exists()
    archive = tmp_path / "archive"
    archive.mkdir()
    day = f"{UNTIL - timedelta(days=3):%Y-%m-%d}"
    repaired = invoke(["reconcile", "--start", day, "--end", day, "--archive", archive.as_uri(), "--repair"], env)
    assert repaired.code == 0, repaired.stderr
    invoke(["reconcile", "--start", day, "--end", day, "--archive", archive.as_uri(), "--verify", "content"], env)
    listed = invoke(["runs", "--format", "json"], env)
    assert listed.code == 0, listed.stderr
    runs = json.loads(listed.stdout)["runs"]
    assert [run["verify"] for run in runs] == ["content", "presence"], "most recent first"
    repair_run = runs[1]
    assert repair_run["repair"] is True and repair_run["windows"] == 1
    assert repair_run["repairs"] == repair_run["counts"]["repaired"] > 0
    assert runs[0]["counts"]["match"] == repair_run["counts"]["repaired"], "the content run found them all"
    text = invoke(["runs"], env)
    assert text.stdout.splitlines()[0].split()[:3] == ["run", "started_at", "verify"]


def test_ledger_lists_leads_by_status_without_credentials(tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite"
    now = datetime(2026, 11, 30, tzinfo=UTC)
    with StateDB(state) as db:
        ReplayLedger(db).write([
            LedgerEntry("6ae18ae9a55055783f30ae4c", "6ae18ae9a55055783f30ae4b", "f1",
                        "https://app.leadconduit.com/flows/f1/sources/s1/submit?api_key=***", "sent", 1, 201,
                        "error", "success", "6b0000000000000000000001", None, now),
            LedgerEntry("6ae18ae9a55055783f30ae4d", "6ae18ae9a55055783f30ae4e", "f1",
                        "https://app.leadconduit.com/flows/f1/sources/s1/submit", "unknown", 1, None, "error",
                        None, None, "no answer after sending", now + timedelta(minutes=1)),
        ])  # fmt: skip
    env = {"FIREHOSE_STATE": str(state)}
    doubt = invoke(["ledger", "--status", "unknown", "--format", "ndjson"], env)
    rows = [json.loads(line) for line in doubt.stdout.splitlines()]
    assert [row["event_id"] for row in rows] == ["6ae18ae9a55055783f30ae4d"] and rows[0]["reason"]
    as_json = json.loads(invoke(["ledger", "--format", "json"], env).stdout)  # its rows were lost to a count once
    assert len(as_json["leads"]) == as_json["count"] == 2
    every = invoke(["ledger", "--format", "csv"], env)
    assert every.code == 0 and len(every.stdout.splitlines()) == 3, every.stdout
    assert "api_key=***" in every.stdout
