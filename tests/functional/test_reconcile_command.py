"""`firehose reconcile` on the real local stack: gaps found, repaired once, found again nowhere; resume."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from firehose.archive import Store, StoreUrl, open_store
from firehose.cli import cli
from firehose.errors import ArchiveError, ExitCode
from firehose.event import Destination, EventView
from tests.conftest import (
    API_KEY,
    AZURE_CREDENTIAL,
    S3_CREDENTIAL,
    S3_ENDPOINT,
    UNTIL,
    RunningSandbox,
    stack_env,
    stack_sandbox,
)
from tests.functional.clirun import children, finish, process_env, run_process, spawn

pytestmark = pytest.mark.usefixtures("stack")
WINDOW = ["--start", (UNTIL.replace(day=UNTIL.day - 6)).strftime("%Y-%m-%d"), "--end", UNTIL.isoformat()]


@pytest.fixture()
def box() -> Iterator[RunningSandbox]:
    with stack_sandbox(seed=41, leads=60, days=6, drop_rate=0.05) as running:
        yield running


@pytest.fixture()
def env(tmp_path: Path, box: RunningSandbox) -> dict[str, str]:
    return stack_env(box, tmp_path)


def reconcile(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(cli, ["reconcile", *WINDOW, "--format", "ndjson", *args], env=env, catch_exceptions=False)


def dropped(box: RunningSandbox) -> set[tuple[str, str]]:
    """(destination URL, key) of every object the sandbox's firehose should have written but did not."""
    stores = {
        s: open_store(StoreUrl(s, box.bucket, ""), s3=S3_CREDENTIAL, azure=AZURE_CREDENTIAL) for s in ("s3", "az")
    }
    present = {s: {info.key for info in store.list()} for s, store in stores.items()}
    gaps = set()
    for event in box.sandbox_events():
        view = EventView(event)
        for destination in view.destinations():
            key = destination.key(view.lead_id, view.id)  # type: ignore[arg-type]
            if key not in present[destination.scheme]:
                gaps.add((destination.url(), key))
    return gaps


def test_finds_exactly_the_dropped_writes_repairs_them_once_and_then_finds_none(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path
) -> None:
    expected = dropped(box)
    assert expected, "a 5% drop rate leaves gaps"
    first = reconcile(env, "--report", str(tmp_path / "r1.json"))
    assert first.exit_code == ExitCode.DIFFERENCES, first.stderr
    missing = {
        (row["destination"], row["key"])
        for row in map(json.loads, first.stdout.splitlines())
        if row["verdict"] == "missing"
    }
    assert missing == expected
    report = json.loads((tmp_path / "r1.json").read_text())
    assert report["schema"] == "firehose.reconcile/1" and report["counts"]["missing"] == len(expected)
    assert report["counts"]["not_configured"] > 0  # the disabled flow's events are no gaps
    assert all(kinds["list"] > 0 for name, kinds in report["requests"].items() if name != "api")
    assert report["requests"]["api"]["events"] > 0 and "at risk" in first.stderr

    plan = reconcile({**env, "FIREHOSE_STATE": str(tmp_path / "plan.sqlite")}, "--repair", "--dry-run")
    assert plan.exit_code == ExitCode.DIFFERENCES
    assert f"would write {len(expected)} missing objects" in plan.stderr and "put_planned" in plan.stderr
    assert dropped(box) == expected, "a dry run writes nothing"

    repair_env = {**env, "FIREHOSE_STATE": str(tmp_path / "repair.sqlite")}
    repaired = reconcile(repair_env, "--repair")
    assert repaired.exit_code == ExitCode.OK, repaired.stderr
    rows = [json.loads(line) for line in repaired.stdout.splitlines()]
    assert {(r["destination"], r["key"]) for r in rows if r["verdict"] == "repaired"} == expected
    assert dropped(box) == set()

    again = reconcile({**env, "FIREHOSE_STATE": str(tmp_path / "again.sqlite")}, "--repair")
    assert again.exit_code == ExitCode.OK
    assert not [line for line in again.stdout.splitlines() if '"repaired"' in line], "a second repair writes nothing"


def test_content_mode_finds_an_object_that_differs_and_never_overwrites_it(
    box: RunningSandbox, env: dict[str, str]
) -> None:
    store = open_store(StoreUrl("s3", box.bucket, ""), s3=S3_CREDENTIAL)
    victim = next(info.key for info in store.list("events/auto/"))
    original = json.loads(store.read(victim))
    tampered = {**original, "outcome": "tampered"}
    store.write(victim, json.dumps(tampered).encode(), if_absent=False)
    result = reconcile(env, "--verify", "content", "--repair")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    differ = [r for r in rows if r["verdict"] == "differ"]
    assert [(r["key"], r["fields"]) for r in differ] == [(victim, "outcome")]
    assert result.exit_code == ExitCode.DIFFERENCES
    assert json.loads(store.read(victim))["outcome"] == "tampered", "repair never overwrites"


def test_differing_lead_data_is_shown_only_with_include_pii(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path
) -> None:
    store = open_store(StoreUrl("s3", box.bucket, ""), s3=S3_CREDENTIAL)
    victim, original = next(
        (info.key, body)
        for info in store.list("events/auto/")
        if (body := json.loads(store.read(info.key))).get("vars", {}).get("lead", {}).get("email")
    )
    email = original["vars"]["lead"]["email"]
    tampered = {
        **original,
        "vars": {**original["vars"], "lead": {**original["vars"]["lead"], "email": "x@example.org"}},
    }
    store.write(victim, json.dumps(tampered).encode(), if_absent=False)

    hidden = reconcile(env, "--verify", "content", "--report", str(tmp_path / "hidden.json"))
    assert hidden.exit_code == ExitCode.DIFFERENCES
    differ = [json.loads(line) for line in hidden.stdout.splitlines() if '"differ"' in line]
    assert [(r["key"], r["fields"]) for r in differ] == [(victim, "vars")]
    for text in (hidden.stdout, hidden.stderr, (tmp_path / "hidden.json").read_text()):
        assert email not in text and "x@example.org" not in text

    shown = reconcile(
        {**env, "FIREHOSE_STATE": str(tmp_path / "pii.sqlite")},
        "--verify",
        "content",
        "--include-pii",
        "--report",
        str(tmp_path / "shown.json"),
    )
    report = json.loads((tmp_path / "shown.json").read_text())
    [item] = [f for f in report["findings"] if f["verdict"] == "differ"]
    assert item["values"]["vars"]["archive"]["lead"]["email"] == "x@example.org"
    assert item["values"]["vars"]["api"]["lead"]["email"] == email
    assert email in shown.stdout


def test_a_crashed_run_resumes_and_reports_the_same(box: RunningSandbox, env: dict[str, str], tmp_path: Path) -> None:
    from firehose.api import LeadConduit
    from firehose.http import HttpClient
    from firehose.reconciliation.run import ReconcileOptions, Reconciler
    from firehose.state import StateDB

    whole = reconcile({**env, "FIREHOSE_STATE": str(tmp_path / "whole.sqlite")}, "--report", str(tmp_path / "a.json"))

    class Crashing(LeadConduit):
        """Dies part-way through the run, as a process would on a bug or an out-of-memory kill."""

        def iter_events(self, query, **kwargs):
            for number, event in enumerate(super().iter_events(query, **kwargs)):
                if number == 120:
                    raise RuntimeError("crash")
                yield event

    store_for = lambda d: open_store(StoreUrl(d.scheme, d.bucket, ""), s3=S3_CREDENTIAL, azure=AZURE_CREDENTIAL)  # noqa: E731
    options = ReconcileOptions(start=datetime.fromisoformat(WINDOW[1] + "T00:00:00+00:00"), end=UNTIL)
    with HttpClient(box.url, auth=("API", API_KEY)) as http, StateDB(Path(env["FIREHOSE_STATE"])) as state:
        with pytest.raises(RuntimeError, match="crash"):
            Reconciler(Crashing(http), store_for, state, options).run()
        assert state.finished_windows(state.run(options.fingerprint(), {})), "some windows finished before the crash"
    resumed = reconcile(env, "--report", str(tmp_path / "b.json"))
    assert "already done and settled" in resumed.stderr
    first, second = json.loads((tmp_path / "a.json").read_text()), json.loads((tmp_path / "b.json").read_text())
    assert second["resumed_windows"] > 0
    for name in ("counts", "by_destination", "by_day", "findings"):
        assert first[name] == second[name], name
    assert whole.exit_code == resumed.exit_code
    full = reconcile(env, "--full", "--report", str(tmp_path / "c.json"))
    assert json.loads((tmp_path / "c.json").read_text())["resumed_windows"] == 0 and "reused" not in full.stderr
    # Windows checked less than --recheck after their end are not settled: the next run looks again.
    unsettled = reconcile(env, "--recheck", "30d")
    assert "reused" not in unsettled.stderr and unsettled.exit_code == whole.exit_code


def test_an_unreachable_destination_is_error_for_its_events_and_the_others_go_on(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path
) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = Path(env["FIREHOSE_CONFIG"])
    config.write_text(config.read_text().replace(S3_ENDPOINT, f"http://127.0.0.1:{port}"))
    result = reconcile(env, "--report", str(tmp_path / "r.json"))
    assert result.exit_code == ExitCode.ARCHIVE
    report = json.loads((tmp_path / "r.json").read_text())
    s3 = {d: c for d, c in report["by_destination"].items() if d.startswith("s3://")}
    azure = {d: c for d, c in report["by_destination"].items() if d.startswith("az://")}
    assert s3 and all(set(counts) == {"error"} for counts in s3.values())
    assert azure and all("match" in counts and "error" not in counts for counts in azure.values())
    errors = [f for f in report["findings"] if f["verdict"] == "error"]
    assert errors and all("cannot reach the S3 endpoint" in f["reason"] for f in errors)


def test_two_repairs_at_once_write_each_object_once(box: RunningSandbox, tmp_path: Path) -> None:
    import threading
    from datetime import datetime

    from firehose.api import LeadConduit
    from firehose.findings import Verdict
    from firehose.http import HttpClient
    from firehose.progress import NO_PROGRESS
    from firehose.reconciliation.run import ReconcileOptions, Reconciler
    from firehose.state import StateDB
    from tests.progress import Recorded

    expected = dropped(box)

    def store_for(destination):
        return open_store(
            StoreUrl(destination.scheme, destination.bucket, ""), s3=S3_CREDENTIAL, azure=AZURE_CREDENTIAL
        )

    options = ReconcileOptions(start=datetime.fromisoformat(WINDOW[1] + "T00:00:00+00:00"), end=UNTIL, repair=True)
    results: dict[int, list] = {}
    progress = Recorded()

    def repair(number: int) -> None:
        with HttpClient(box.url, auth=("API", API_KEY)) as http, StateDB(tmp_path / f"s{number}.sqlite") as state:
            report = progress if number == 1 else NO_PROGRESS
            outcome = Reconciler(LeadConduit(http), store_for, state, options, progress=report).run()
            results[number] = list(state.findings(outcome.run_id, outcome.windows))

    threads = [threading.Thread(target=repair, args=(n,)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    written = [
        f
        for found in results.values()
        for f in found
        if f.verdict == Verdict.REPAIRED and f.reason == "written and read back"
    ]
    assert sorted((f.destination, f.key) for f in written) == sorted(expected), "each missing object written once"
    assert not [f for found in results.values() for f in found if f.verdict in (Verdict.DIFFER, Verdict.ERROR)]
    assert dropped(box) == set()
    windows = len(list(options.windows()))
    [task] = progress.named("reconcile windows")
    assert (task.total, task.count, task.finished) == (windows, windows, True), "advanced once per window"


def test_kill_9_mid_run_then_the_same_command_ends_with_the_same_report(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path
) -> None:
    import os
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    whole = reconcile({**env, "FIREHOSE_STATE": str(tmp_path / "whole.sqlite")}, "--report", str(tmp_path / "a.json"))
    state = tmp_path / "killed.sqlite"
    box.sandbox.faults.latency_ms = 150  # slow enough to be caught part-way
    command = [sys.executable, "-m", "firehose", "reconcile", *WINDOW, "--report", str(tmp_path / "never.json")]
    process = subprocess.Popen(
        command,
        env={**os.environ, **env, "FIREHOSE_STATE": str(state)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if state.exists():
                try:
                    with sqlite3.connect(state) as db:
                        if db.execute("SELECT count(*) FROM windows").fetchone()[0] >= 2:
                            break
                except sqlite3.Error:
                    pass
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        box.sandbox.faults.latency_ms = 0
    assert not (tmp_path / "never.json").exists(), "the run was killed before it finished"
    resumed = reconcile({**env, "FIREHOSE_STATE": str(state)}, "--report", str(tmp_path / "b.json"))
    assert "already done and settled" in resumed.stderr
    first, second = json.loads((tmp_path / "a.json").read_text()), json.loads((tmp_path / "b.json").read_text())
    for name in ("counts", "by_destination", "by_day", "findings"):
        assert first[name] == second[name], name
    assert resumed.exit_code == whole.exit_code


def test_after_a_repair_the_plain_nightly_run_reports_no_stale_gap_and_audits_keep_every_repair(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path
) -> None:
    """One state database, as a nightly job keeps it: find, repair, find again (the windows are old enough to be
    reused, and must not be reused with findings from before the repair), then a --full repair finds nothing to
    do, and the audit still counts every repair."""
    expected = dropped(box)
    assert expected
    found = reconcile(env)
    assert found.exit_code == ExitCode.DIFFERENCES and f"missing {len(expected)}," in found.stderr, found.stderr
    repaired = reconcile(env, "--repair")
    assert repaired.exit_code == ExitCode.OK, repaired.stderr
    after = reconcile(env, "--report", str(tmp_path / "after.json"))
    assert after.exit_code == ExitCode.OK, after.stderr
    assert json.loads((tmp_path / "after.json").read_text())["counts"].get("missing", 0) == 0

    def audit_repaired(name: str) -> int:
        out = tmp_path / name
        made = CliRunner().invoke(cli, ["audit", *WINDOW, "--out", str(out)], env=env, catch_exceptions=False)
        assert made.exit_code in (ExitCode.OK, ExitCode.DIFFERENCES), made.stderr
        rows = json.loads((out / "coverage.json").read_text())["coverage"]
        return sum(int(row["repaired"]) for row in rows)

    assert audit_repaired("pack1") == len(expected)
    full = reconcile(env, "--repair", "--full")
    assert full.exit_code == ExitCode.OK and '"repaired"' not in full.stdout
    assert audit_repaired("pack2") == len(expected), "the record of repairs is never replaced by a later run"


class _Died(BaseException):
    """The process ending between two statements (a kill -9): nothing after it runs, no handler catches it."""


@pytest.mark.parametrize(
    "after_the_write",
    [_Died("killed"), ArchiveError("the answer was lost on the way back")],
    ids=["killed", "answer-lost"],
)
def test_a_repair_the_store_took_is_recorded_even_if_the_run_never_heard_back(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path, after_the_write: BaseException
) -> None:
    """The store takes a repair's write, and then the run dies (or the answer never comes back): the object is
    there, but the run never saw its write succeed. The repair was said before it went out, so the next run
    finds the object holding those bytes and records it; the audit counts every repair, that one included."""
    from firehose.api import LeadConduit
    from firehose.http import HttpClient
    from firehose.reconciliation.run import ReconcileOptions, Reconciler
    from firehose.state import StateDB

    expected = dropped(box)
    assert len(expected) > 1
    writes: list[str] = []

    def store_for(destination: Destination) -> Store:
        store = open_store(
            StoreUrl(destination.scheme, destination.bucket, ""), s3=S3_CREDENTIAL, azure=AZURE_CREDENTIAL
        )
        real = store.write

        def write(key: str, data: bytes, **kwargs: Any) -> bool:
            real(key, data, **kwargs)
            writes.append(key)
            raise after_the_write

        store.write = write  # type: ignore[method-assign]
        return store

    options = ReconcileOptions(start=datetime.fromisoformat(WINDOW[1] + "T00:00:00+00:00"), end=UNTIL, repair=True)
    with (
        HttpClient(box.url, auth=("API", API_KEY)) as http,
        StateDB(Path(env["FIREHOSE_STATE"])) as state,
        contextlib.suppress(_Died),
    ):
        Reconciler(LeadConduit(http), store_for, state, options).run()
    assert writes, "the first repair's write went out"
    again = reconcile(env, "--repair")
    assert again.exit_code == ExitCode.OK, again.stderr
    out = tmp_path / "pack"
    made = CliRunner().invoke(cli, ["audit", *WINDOW, "--out", str(out)], env=env, catch_exceptions=False)
    assert made.exit_code == ExitCode.OK, made.stderr
    rows = json.loads((out / "coverage.json").read_text())["coverage"]
    assert sum(int(row["repaired"]) for row in rows) == len(expected), "every object a repair wrote is on record"


def test_a_repair_the_state_cannot_record_is_never_written(box: RunningSandbox, env: dict[str, str]) -> None:
    """A full disk (or a read-only state database) when a repair is about to be said: the run stops with the
    state database's error, and the store is never written to: no object without its record."""
    from firehose.api import LeadConduit
    from firehose.errors import ConfigError
    from firehose.http import HttpClient
    from firehose.reconciliation.run import ReconcileOptions, Reconciler
    from firehose.state import RepairIntent, StateDB

    class FullDisk(StateDB):
        def intend_repair(self, intent: RepairIntent) -> None:
            raise ConfigError(f"state database {self.path}: cannot record a repair: database or disk is full")

    expected = dropped(box)
    store_for = lambda d: open_store(StoreUrl(d.scheme, d.bucket, ""), s3=S3_CREDENTIAL, azure=AZURE_CREDENTIAL)  # noqa: E731
    options = ReconcileOptions(start=datetime.fromisoformat(WINDOW[1] + "T00:00:00+00:00"), end=UNTIL, repair=True)
    with (
        HttpClient(box.url, auth=("API", API_KEY)) as http,
        FullDisk(Path(env["FIREHOSE_STATE"])) as state,
        pytest.raises(ConfigError, match="disk is full"),
    ):
        Reconciler(LeadConduit(http), store_for, state, options).run()
    assert dropped(box) == expected, "nothing was written"


def test_the_summary_names_the_first_expiry_and_what_the_api_no_longer_holds(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """A tryout saw the earliest expiry only when a gap was at risk, and a blank summary for a window older than
    the API's 90 days."""
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {"LEADCONDUIT_API_KEY": API_KEY, "LEADCONDUIT_URL": sandbox.url, "FIREHOSE_STATE": str(tmp_path / "s.db")}
    day = f"{UNTIL - timedelta(days=3):%Y-%m-%d}"
    gaps = CliRunner().invoke(
        cli, ["reconcile", "--start", day, "--end", day, "--archive", empty.as_uri()], env=env, catch_exceptions=False
    )
    assert gaps.exit_code == ExitCode.DIFFERENCES, gaps.stderr
    first = gaps.stderr.splitlines()[0]
    assert first.startswith("firehose reconcile: 0 at risk") and "the first gap leaves the API at 2027-" in first
    old = CliRunner().invoke(
        cli, ["reconcile", "--start", "2026-01-01", "--end", "2026-02-01", "--archive", empty.as_uri()], env=env,
        catch_exceptions=False,
    )  # fmt: skip
    assert old.exit_code == ExitCode.OK, old.stderr
    assert "it no longer holds those made before" in old.stderr and "not checked against it" in old.stderr


@pytest.mark.parametrize("count", [3, 7])
def test_shards_of_a_window_find_together_what_the_whole_window_finds(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path, count: int
) -> None:
    whole = reconcile({**env, "FIREHOSE_STATE": str(tmp_path / "whole.sqlite")}, "--format", "json")
    assert whole.exit_code in (ExitCode.OK, ExitCode.DIFFERENCES), whole.stderr
    expected = json.loads(whole.stdout)
    counts: Counter[str] = Counter()
    found = []
    for index in range(count):
        # Each slice as an orchestrator runs it: its index from the environment, its own machine (state).
        shard_env = {
            **env,
            "FIREHOSE_STATE": str(tmp_path / f"shard{index}.sqlite"),
            "JOB_COMPLETION_INDEX": str(index),
        }
        run = reconcile(shard_env, "--format", "json", "--shards", str(count), "--shard-from-env")
        assert run.exit_code in (ExitCode.OK, ExitCode.DIFFERENCES), run.stderr
        document = json.loads(run.stdout)
        counts.update(document["counts"])
        found += document["findings"]
    assert +counts == +Counter(expected["counts"]), "every event in exactly one slice"
    key = lambda row: (row["verdict"], row["event_id"], row["destination"])  # noqa: E731
    assert sorted(map(key, found)) == sorted(map(key, expected["findings"]))


@pytest.mark.parametrize("count", [1, 7, 64])
def test_merged_slices_are_one_runs_report_whatever_the_slice_count(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, count: int
) -> None:
    """Each slice through the library (as an Airflow task calls it), in an order of its own; `reconcile merge`."""
    import random

    import firehose

    whole_file = tmp_path / "whole.json"
    reconcile({**env, "FIREHOSE_STATE": str(tmp_path / "whole.sqlite")}, "--report", str(whole_file))
    expected = json.loads(whole_file.read_text())
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = firehose.Settings.load(state_file=str(tmp_path / "slices.sqlite"))
    options = firehose.ReconcileOptions(start=datetime.fromisoformat(WINDOW[1]), end=datetime.fromisoformat(WINDOW[3]))
    run_state = (tmp_path / "run").as_uri()
    order = list(range(count))
    random.Random(count).shuffle(order)
    for index in order:
        assert firehose.reconcile_slice(options.sharded(index, count), settings, run_state).recorded
    merged = CliRunner().invoke(cli, ["reconcile", "merge", "--run-state", run_state, "--report",
                                      str(tmp_path / "merged.json")], env=env)  # fmt: skip
    assert merged.exit_code in (ExitCode.OK, ExitCode.DIFFERENCES), merged.stderr
    document = json.loads((tmp_path / "merged.json").read_text())
    assert document["shards"] == count
    assert expected["delivery_lag"] and all(lag["objects"] for lag in expected["delivery_lag"].values())
    names = ("window", "counts", "by_destination", "by_day", "findings", "at_risk", "earliest_expiry", "delivery_lag")
    for name in names:
        assert document[name] == expected[name], name


def test_shards_need_one_window_for_every_slice(env: dict[str, str]) -> None:
    result = CliRunner().invoke(cli, ["reconcile", "--shards", "4", "--shard", "1"], env=env)
    assert result.exit_code == ExitCode.USAGE and "--shards needs --start and --end" in result.stderr
    result = reconcile(env, "--shards", "4")
    assert result.exit_code == ExitCode.USAGE and "--shard I or --shard-from-env" in result.stderr
    result = reconcile(env, "--shards", "4", "--shard", "4")
    assert result.exit_code == ExitCode.USAGE and "--shard must be from 0 to 3" in result.stderr
    result = reconcile({k: v for k, v in env.items() if "INDEX" not in k}, "--shards", "4", "--shard-from-env")
    assert result.exit_code == ExitCode.USAGE and "JOB_COMPLETION_INDEX" in result.stderr


def test_slices_with_shared_checkpoints_merge_into_the_whole_windows_report(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path
) -> None:
    whole_file = tmp_path / "whole.json"
    whole = reconcile({**env, "FIREHOSE_STATE": str(tmp_path / "whole.sqlite")}, "--report", str(whole_file))
    expected = json.loads(whole_file.read_text())
    run_state = (tmp_path / "run").as_uri()
    count = 5

    def slice_(index: int, *extra: str) -> Result:
        state = str(tmp_path / f"slice{index}.sqlite")
        return reconcile({**env, "FIREHOSE_STATE": state}, "--format", "json", "--shards", str(count),
                         "--shard", str(index), "--run-state", run_state, *extra)  # fmt: skip

    for index in range(count - 1):
        assert slice_(index).exit_code in (ExitCode.OK, ExitCode.DIFFERENCES)
    early = reconcile(env, "--shards", str(count), "--merge", "--run-state", run_state)
    assert early.exit_code == ExitCode.USAGE and f"no checkpoint yet for slice {count - 1}" in early.stderr
    last = slice_(count - 1)
    assert "checkpoint written" in last.stderr, last.stderr
    again = slice_(count - 1)  # a retried array job: nothing checked again, the same report
    assert "done before, not checked again" in again.stderr and json.loads(again.stdout) == json.loads(last.stdout)
    report_file = tmp_path / "merged.json"
    merged = reconcile(env, "--shards", str(count), "--merge", "--run-state", run_state, "--report", str(report_file))
    assert merged.exit_code == whole.exit_code, merged.stderr
    document = json.loads(report_file.read_text())
    assert document["schema"] == "firehose.reconcile/1" and document["shards"] == count
    for name in ("window", "counts", "by_destination", "by_day", "findings"):
        assert document[name] == expected[name], name
    # `reconcile merge`, as the issue spells it: the same call, the same report and output (the count from the folder).
    as_command = CliRunner().invoke(cli, ["reconcile", "merge", "--run-state", run_state, "--format", "ndjson",
                                          "--report", str(tmp_path / "merged2.json")], env=env)  # fmt: skip
    assert as_command.exit_code == merged.exit_code and as_command.stdout == merged.stdout, as_command.stderr
    assert json.loads((tmp_path / "merged2.json").read_text()) == document
    other = reconcile(env, *WINDOW[:2], "--end", UNTIL.isoformat(), "--verify", "content", "--shards", str(count),
                      "--shard", "0", "--run-state", run_state)  # fmt: skip
    assert other.exit_code == ExitCode.USAGE and "another run" in other.stderr, "one run per folder"


def test_every_slice_on_local_workers_one_killed_merges_into_the_whole_windows_report(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path
) -> None:
    whole_file = tmp_path / "whole.json"
    reconcile({**env, "FIREHOSE_STATE": str(tmp_path / "whole.sqlite")}, "--report", str(whole_file))
    expected = json.loads(whole_file.read_text())
    report_file = tmp_path / "all.json"
    args = ["reconcile", *WINDOW, "--shards", "6", "--executor", "local:2", "--api-concurrency", "1",
            "--run-state", (tmp_path / "run").as_uri(),
            "--report", str(report_file), "--format", "ndjson"]  # fmt: skip
    process = spawn(args, process_env(**env), tmp_path)
    killed = None
    deadline = time.monotonic() + 60
    while killed is None and time.monotonic() < deadline and process.poll() is None:
        workers = [pid for pid in children(process.pid) if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        if workers:
            killed = workers[0]
            os.kill(killed, signal.SIGKILL)  # a worker dies mid-run: its slice is submitted again
        time.sleep(0.05)
    _, err = finish(process, 240)
    assert killed is not None, "no worker to kill"
    assert process.returncode == (ExitCode.DIFFERENCES if expected["counts"].get("missing") else ExitCode.OK), err
    document = json.loads(report_file.read_text())
    for name in ("window", "counts", "by_destination", "by_day", "findings"):
        assert document[name] == expected[name], name
    again = run_process(args, process_env(**env), tmp_path, timeout=120)  # every slice done: nothing run again
    assert again.code == process.returncode and json.loads(report_file.read_text()) == document


def test_every_slice_on_a_dask_cluster_one_worker_killed_merges_into_the_whole_windows_report(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    distributed = pytest.importorskip("distributed")
    whole_file = tmp_path / "whole.json"
    reconcile({**env, "FIREHOSE_STATE": str(tmp_path / "whole.sqlite")}, "--report", str(whole_file))
    expected = json.loads(whole_file.read_text())
    for name, value in env.items():  # the workers' own environment, as a cluster's machines would have it
        monkeypatch.setenv(name, value)
    # ":0": the scheduler's HTTP server (there even without a dashboard) on a free port, not 8787, which another
    # cluster on the machine may hold.
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        client = distributed.Client(cluster)
        address = cluster.scheduler_address.replace("tcp://", "dask://")
        report_file = tmp_path / "dask.json"
        args = ["reconcile", *WINDOW, "--shards", "6", "--executor", address, "--api-concurrency", "1", "--run-state",
                (tmp_path / "run").as_uri(), "--report", str(report_file), "--format", "ndjson"]  # fmt: skip
        process = spawn(args, process_env(**env), tmp_path)
        killed = None
        deadline = time.monotonic() + 60
        while killed is None and time.monotonic() < deadline and process.poll() is None:
            busy = [worker for worker, tasks in client.processing().items() if tasks]
            if busy:
                pids = client.run(os.getpid, workers=busy[:1])
                killed = next(iter(pids.values()))
                os.kill(killed, signal.SIGKILL)  # a worker dies with a slice on it: Dask runs it elsewhere
            time.sleep(0.02)
        _, err = process.communicate(timeout=240)
        client.close()
    assert killed is not None, "no busy worker to kill"
    assert process.returncode in (ExitCode.OK, ExitCode.DIFFERENCES), err
    document = json.loads(report_file.read_text())
    for name in ("window", "counts", "by_destination", "by_day", "findings"):
        assert document[name] == expected[name], name


def test_a_window_pages_the_api_inside_the_gate_it_is_given(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import firehose

    for name, value in env.items():
        monkeypatch.setenv(name, value)

    class Gate:
        held = entered = 0
        most = 0

        def __enter__(self) -> None:
            self.entered += 1
            self.held += 1
            self.most = max(self.most, self.held)

        def __exit__(self, *exc_info: object) -> None:
            self.held -= 1

    gate = Gate()
    options = firehose.ReconcileOptions(start=UNTIL - timedelta(days=3), end=UNTIL)
    result = firehose.reconcile(options, firehose.Settings.load(), api_gate=gate)
    assert gate.entered == len(result.outcome.windows) == len(list(options.windows())) and gate.most == 1
    assert result.outcome.requests["api"]["events"] > 0
    refused = reconcile(env, "--shards", "4", "--shard", "0", "--api-concurrency", "1")
    assert refused.exit_code == ExitCode.USAGE and "give --executor" in refused.stderr


def test_a_slice_that_could_not_check_a_store_keeps_no_checkpoint(env: dict[str, str], tmp_path: Path) -> None:
    run_state = (tmp_path / "run").as_uri()
    args = ["--shards", "2", "--shard", "0", "--run-state", run_state, "--archive", "s3://no-such-bucket-here"]
    first = reconcile(env, *args)
    assert first.exit_code == ExitCode.ARCHIVE, first.stderr
    assert "checkpoint written" not in first.stderr and not list((tmp_path / "run").glob("*.json"))
    again = reconcile(env, *args)
    assert again.exit_code == ExitCode.ARCHIVE and "done before" not in again.stderr, "checked again, not skipped"


def test_two_machines_finishing_one_slice_at_once_leave_one_checkpoint(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path
) -> None:
    run_state = (tmp_path / "run").as_uri()
    args = ["reconcile", *WINDOW, "--shards", "2", "--shard", "1", "--run-state", run_state, "--format", "ndjson"]
    both = [spawn(args, process_env(**{**env, "FIREHOSE_STATE": str(tmp_path / f"m{n}.sqlite")}), tmp_path)
            for n in (1, 2)]  # fmt: skip
    ends = [process.communicate(timeout=120) for process in both]
    assert all(process.returncode in (ExitCode.OK, ExitCode.DIFFERENCES) for process in both), ends
    assert len(list((tmp_path / "run").glob("*.json"))) == 1
    written = [err for _, err in ends if "checkpoint written" in err]
    assert len(written) <= 1, "a checkpoint is never written over another"
    later = reconcile(env, "--shards", "2", "--shard", "1", "--run-state", run_state, "--format", "ndjson")
    assert "done before" in later.stderr


def test_feedback_on_a_lead_the_run_listed_costs_no_listing_of_its_folder(
    box: RunningSandbox, env: dict[str, str], tmp_path: Path
) -> None:
    """A lead made more than the lead lookback before its event's window is listed by its folder, but one made
    since the run's listing began is already in that listing: only a folder whose event is not there (dropped,
    or written since) is listed again. On Azurite each folder listing scans the whole container."""
    from firehose.archive.listing import list_window
    from firehose.ids import seconds_of

    start = int(datetime.fromisoformat(WINDOW[1]).timestamp())
    gaps = {key for _, key in dropped(box)}
    folders: Counter[tuple[str, bool]] = Counter()  # (destination, its object dropped): older leads
    for event in box.sandbox_events():
        view = EventView(event)
        made, lead = seconds_of(view.id), str(view.lead_id)
        if not start - 3600 <= seconds_of(lead) < made - made % 86_400 - 3600:
            continue
        for destination in view.destinations():
            folders[destination.url(), destination.key(lead, view.id) in gaps] += 1
    assert any(n for (_, gap), n in folders.items() if not gap), "the sandbox writes feedback days after a lead"

    result = reconcile(env, "--report", str(tmp_path / "r.json"))
    assert result.exit_code == ExitCode.DIFFERENCES, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    for url, kinds in report["requests"].items():
        if url == "api":
            continue
        where = Destination.from_url(url)
        store = open_store(StoreUrl(where.scheme, where.bucket, ""), s3=S3_CREDENTIAL, azure=AZURE_CREDENTIAL)
        end = int(datetime.fromisoformat(WINDOW[3]).timestamp())
        sum(1 for _ in list_window(store, where.prefix, start_seconds=start - 3600, end_seconds=end))
        listing = store.requests.snapshot()["list"]
        # The run's one listing, and at most two per older lead whose event it lacks (both spellings).
        assert kinds["list"] <= listing + 2 * folders[url, True], (url, kinds, listing, folders)
