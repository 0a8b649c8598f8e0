"""Issue 15, ``firehose watch --repair-after``: an event still missing from a destination the sandbox was told to
stop goes ``late``, then is written (the API's event, write-if-absent, read back) and ends ``repaired``, counted
in the state database and the metrics. Attacked: the object appearing between the look and the write (left
alone: ``recovered``), the event gone from the API (``repair_failed`` once, still late), a store refusing the
write (the same, naming the key, no secret), a ``kill -9`` after the write and before the ledger heard of it
(the restart writes nothing twice). Deadlines of seconds keep it quick: events made a minute ago are late and
due for repair at once."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

import firehose
from firehose.api import LeadConduit
from firehose.archive import open_store
from firehose.codec import canonical, decode, encode
from firehose.errors import UsageError
from firehose.event import EventView
from firehose.state import StateDB
from firehose.watching.ledger import WatchLedger
from tests.conftest import (
    API_KEY,
    AZURE_CONNECTION_STRING,
    AZURE_CREDENTIAL,
    S3_CREDENTIAL,
    RunningSandbox,
    stack_env,
    stack_sandbox,
    use_stack_env,
)
from tests.functional.clirun import process_env, run_process

pytestmark = pytest.mark.usefixtures("stack")

AGE = 60
"""Seconds old the leads are made: every event has ended, past a deadline and a repair time of seconds."""


@pytest.fixture()
def live() -> Iterator[RunningSandbox]:
    with stack_sandbox(seed=43, leads=3, days=1) as running:
        yield running
        running.sandbox.stream.set_outages({f"s3://{running.bucket}": None, f"az://{running.bucket}": None})


def stop(running: RunningSandbox, url: str) -> None:
    """The destination's writes held, through the sandbox's faults control (as the demo does it)."""
    answer = httpx.put(
        f"{running.url}/_sandbox/faults", json={"destinations": {url: {"stopped": True}}}, auth=("API", API_KEY)
    )
    assert answer.status_code == 200, answer.text


def made_for(running: RunningSandbox, url: str, count: int = 4) -> list[dict[str, Any]]:
    """Leads made ``AGE`` seconds ago until at least one event goes to ``url``; the events that do."""
    for _ in range(20):
        events = running.sandbox.live.make(count, age_seconds=AGE)
        wanted = [e for e in events if url in {d.url() for d in EventView(e).destinations()}]
        if wanted:
            return wanted
    raise AssertionError(f"no event for {url}")


def stopped_with_missing(
    running: RunningSandbox, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, list[dict[str, Any]]]:
    """One flow's S3 destination stopped, and the events made for it since: held, while the other destinations'
    writes land."""
    use_stack_env(running, folder, monkeypatch)
    stopped = f"s3://{running.bucket}/events/auto"
    stop(running, stopped)
    missing = made_for(running, stopped)
    assert running.sandbox.stream.wait(30)
    return stopped, missing


def options(**extra: Any) -> firehose.WatchOptions:
    values: dict[str, Any] = {
        "interval": timedelta(seconds=1),
        "deadline": timedelta(seconds=2),
        "repair_after": timedelta(seconds=3),
        "start": datetime.now(UTC) - timedelta(seconds=AGE + 30),
        "once": True,
    }
    return firehose.WatchOptions(**{**values, **extra})


def polls(watch: firehose.WatchOptions, alerts: list[dict[str, Any]], count: int) -> firehose.WatchResult:
    """``count`` polls, a watch process each (a restart between every two)."""
    result = None
    for _ in range(count):
        result = firehose.watch(watch, firehose.Settings.load(), on_alert=alerts.append)
    assert result is not None
    return result


def of(alerts: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [a for a in alerts if a["alert"] == kind]


def stored(running: RunningSandbox, url: str, key: str) -> bytes:
    scheme = url.split("://", 1)[0]
    store = open_store(f"{scheme}://{running.bucket}", s3=S3_CREDENTIAL, azure=AZURE_CREDENTIAL)
    try:
        return store.read(key)
    finally:
        store.close()


def due_now(folder: Path) -> None:
    with StateDB(folder / "state.sqlite") as state:
        state.connection.execute("UPDATE watch_pending SET next_check = 0")


def totals(folder: Path, running: RunningSandbox) -> dict[str, dict[str, int]]:
    with StateDB(folder / "state.sqlite") as state:
        return WatchLedger(state, running.url).counts()


def test_a_stopped_destination_goes_late_then_is_repaired_and_stays_so_after_a_restart(
    live: RunningSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    stopped, missing = stopped_with_missing(live, tmp_path, monkeypatch)
    metrics = tmp_path / "watch.prom"
    alerts: list[dict[str, Any]] = []
    watch = options(once=False, interval=timedelta(seconds=0.3), metrics_file=metrics)
    halt = threading.Event()
    results: list[firehose.WatchResult] = []
    watching = threading.Thread(
        target=lambda: results.append(
            firehose.watch(watch, firehose.Settings.load(), on_alert=alerts.append, stop=halt)
        )
    )
    watching.start()
    try:
        deadline = time.monotonic() + 20
        while len(of(alerts, "repaired")) < len(missing):
            assert time.monotonic() < deadline, f"not every pair repaired: {alerts}"
            time.sleep(0.1)
    finally:
        halt.set()
        watching.join(30)
    assert {a["event_id"] for a in of(alerts, "late")} == {e["id"] for e in missing}
    assert {a["destination"] for a in alerts if a["alert"] in ("late", "repaired")} == {stopped}, "no false alarm"
    for event in missing:
        (late,) = [a for a in of(alerts, "late") if a["event_id"] == event["id"]]
        (repaired,) = [a for a in of(alerts, "repaired") if a["event_id"] == event["id"]]
        assert alerts.index(late) < alerts.index(repaired), "late first, then repaired"
        assert "note" not in repaired
        # The API's event, in the firehose's own layout.
        body = stored(live, stopped, repaired["key"])
        assert repaired["key"].endswith(f"{event['vars']['lead']['id']}/{event['id']}.json")
        assert canonical(decode(body)) == canonical(api_event(live, event["id"]))
    assert not of(alerts, "recovered") and not of(alerts, "repair_failed")
    (result,) = results
    assert result.this_run["repaired"] == len(missing) and result.late == 0
    assert totals(tmp_path, live)[stopped]["repaired"] == len(missing)
    families = {f.name: f for f in text_string_to_metric_families(metrics.read_text())}
    samples = {
        (s.labels["destination"], s.labels["outcome"]): s.value for s in families["firehose_watch_events"].samples
    }
    assert samples[(stopped, "repaired")] == len(missing)

    # A restart: nothing is waited for, nothing is written or said again; the totals survive.
    again: list[dict[str, Any]] = []
    result = polls(options(), again, 1)
    assert not [a for a in again if a["alert"] in ("late", "repaired", "recovered")], again
    assert result.totals[stopped]["repaired"] == len(missing)
    # The firehose's held writes land later (they overwrite, as a redelivery does): the watch has no more to say.
    live.sandbox.stream.set_outages({stopped: None})
    assert live.sandbox.stream.wait(30)
    assert API_KEY not in json.dumps(alerts)


def api_event(running: RunningSandbox, event_id: str) -> dict[str, Any]:
    answer = running.get(f"/events/{event_id}")
    assert answer.status_code == 200
    event: dict[str, Any] = answer.json()
    return event


def _racing_get_event(write: Callable[[str, dict[str, Any]], None]) -> Callable[..., dict[str, Any]]:
    """``LeadConduit.get_event`` that first lets the firehose deliver the event (``write``): the object appears
    between the watch's look and its write."""
    original = LeadConduit.get_event

    def get_event(self: LeadConduit, event_id: str) -> dict[str, Any]:
        event = original(self, event_id)
        write(event_id, event)
        return event

    return get_event


@pytest.mark.parametrize("delivered", ["the same event", "other bytes"])
def test_an_object_that_appears_before_the_write_is_recovered_and_never_overwritten(
    live: RunningSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, delivered: str
) -> None:
    stopped, missing = stopped_with_missing(live, tmp_path, monkeypatch)
    alerts: list[dict[str, Any]] = []
    polls(options(), alerts, 1)  # late
    assert len(of(alerts, "late")) == len(missing)
    store = open_store(f"s3://{live.bucket}", s3=S3_CREDENTIAL)
    keys = {a["event_id"]: a["key"] for a in of(alerts, "late")}
    written: dict[str, bytes] = {}

    def deliver(event_id: str, event: dict[str, Any]) -> None:
        body = encode(event) if delivered == "the same event" else encode({**event, "outcome": "tampered"})
        store.write(keys[event_id], body, if_absent=False)
        written[keys[event_id]] = body

    monkeypatch.setattr(LeadConduit, "get_event", _racing_get_event(deliver))
    try:
        result = polls(options(), alerts, 1)
        assert set(written) == set(keys.values())
        for key, body in written.items():
            assert store.read(key) == body, "the repair wrote over an object"
    finally:
        store.close()
    assert not of(alerts, "repaired")
    recovered = of(alerts, "recovered")
    assert {a["event_id"] for a in recovered} == set(keys)
    if delivered == "other bytes":
        assert all("differs from the API's event" in a["note"] for a in recovered)
    else:
        assert all("note" not in a for a in recovered)
    assert result.this_run["recovered"] == len(keys) and not result.this_run.get("repaired") and result.late == 0
    assert "repaired" not in result.totals[stopped]


def test_an_event_gone_from_the_api_stays_late_and_is_reported_once(
    live: RunningSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, missing = stopped_with_missing(live, tmp_path, monkeypatch)
    alerts: list[dict[str, Any]] = []
    polls(options(), alerts, 1)  # late
    live.sandbox.clock = lambda: time.time() + 91 * 86_400  # past its 90 days: GET /events/{id} answers 404
    result = polls(options(), alerts, 1)
    due_now(tmp_path)  # looked for again at once, not at its (growing) recheck time
    result = polls(options(), alerts, 1)
    failed = of(alerts, "repair_failed")
    assert sorted(a["event_id"] for a in failed) == sorted(e["id"] for e in missing), "once each"
    assert all("no longer holds the event" in a["reason"] and a["key"] for a in failed)
    assert not of(alerts, "repaired") and result.late == len(missing)
    assert result.exit_code == firehose.ExitCode.DIFFERENCES


def test_a_store_refusing_the_write_leaves_the_pair_late_and_says_so_once_without_the_secret(
    live: RunningSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    use_stack_env(live, tmp_path, monkeypatch)
    stopped = f"az://{live.bucket}"
    container = open_store(stopped, azure=AZURE_CREDENTIAL)
    container.create()  # made at the firehose's first write, and every Azure write is held here
    container.close()
    stop(live, stopped)
    missing = _azure_events(live)
    assert live.sandbox.stream.wait(30)
    fields = dict(part.split("=", 1) for part in AZURE_CONNECTION_STRING.split(";") if part)
    token = generate_container_sas(  # reads and lists, writes nothing: a role without write access
        fields["AccountName"],
        live.bucket,
        account_key=fields["AccountKey"],
        permission=ContainerSasPermissions(read=True, list=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    config = tmp_path / "firehose.toml"
    config.write_text(
        config.read_text().replace('connection_string_env = "TEST_AZURE"', "")
        + f'account_url = "{fields["BlobEndpoint"]}"\nsas_token = "{token}"\n'
    )
    alerts: list[dict[str, Any]] = []
    polls(options(), alerts, 1)  # late
    polls(options(), alerts, 1)
    due_now(tmp_path)  # tried again at once, not at its (growing) recheck time
    result = polls(options(), alerts, 1)
    failed = of(alerts, "repair_failed")
    assert sorted(a["event_id"] for a in failed) == sorted(e["id"] for e in missing), "once each"
    for alert in failed:
        assert alert["key"] in alert["reason"] and "access denied" in alert["reason"], alert
    said = json.dumps(alerts)
    assert token.split("sig=")[1].split("&")[0] not in said and fields["AccountKey"] not in said
    assert not of(alerts, "repaired") and result.late == len(missing)


def _azure_events(running: RunningSandbox) -> list[dict[str, Any]]:
    """Leads made ``AGE`` seconds ago; their events that go to an Azure destination."""
    for _ in range(20):
        events = running.sandbox.live.make(4, age_seconds=AGE)
        wanted = [e for e in events if any(d.scheme == "az" for d in EventView(e).destinations())]
        if wanted:
            return wanted
    raise AssertionError("no event for Azure")


KILLED = """
import os, signal, sys
from firehose.state import StateDB
from firehose.watching.ledger import WatchLedger

where = sys.argv.pop(1)
settle_repair, settle = StateDB.settle_repair, WatchLedger.settle

def killed_after_the_write(self, intent, *, wrote):
    if wrote:  # the store took it; the state database has only the intent
        os.kill(os.getpid(), signal.SIGKILL)
    return settle_repair(self, intent, wrote=wrote)

intend_repair = StateDB.intend_repair

def killed_before_the_write(self, intent):
    intend_repair(self, intent)  # the intent committed, the write never sent
    os.kill(os.getpid(), signal.SIGKILL)

def killed_before_the_ledger(self, **outcomes):
    if any(outcome == "repaired" for _, outcome in outcomes["done"]):  # recorded as a repair, pair not settled
        os.kill(os.getpid(), signal.SIGKILL)
    return settle(self, **outcomes)

if where == "write":
    StateDB.settle_repair = killed_after_the_write
elif where == "intent":
    StateDB.intend_repair = killed_before_the_write
else:
    WatchLedger.settle = killed_before_the_ledger
from firehose.cli import cli
cli(sys.argv[1:], prog_name="firehose")
"""


@pytest.mark.parametrize("where", ["intent", "write", "ledger"])
def test_kill_9_between_the_write_and_the_ledger_never_writes_twice(
    live: RunningSandbox, tmp_path: Path, where: str
) -> None:
    env = process_env(**stack_env(live, tmp_path))
    stopped = f"s3://{live.bucket}/events/auto"
    stop(live, stopped)
    missing = made_for(live, stopped)
    assert live.sandbox.stream.wait(30)
    start = (datetime.now(UTC) - timedelta(seconds=AGE + 30)).isoformat()
    args = ["watch", "--interval", "0.2s", "--deadline", "2s", "--repair-after", "3s", "--start", start]

    killed = subprocess.run(
        [sys.executable, "-c", KILLED, where, *args], env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert killed.returncode == -9, killed.stderr
    first = [json.loads(line) for line in killed.stdout.splitlines()]
    assert not of(first, "repaired")
    assert totals(tmp_path, live)[stopped].get("repaired", 0) == 0
    with StateDB(tmp_path / "state.sqlite") as state:  # killed where it was meant to be
        intents = state.repair_intents()
        recorded = any(state.was_repaired(e["id"], stopped) for e in missing)
    assert (len(intents), recorded) == ((0, True) if where == "ledger" else (1, False)), (intents, recorded)

    restarted = run_process([*args[:1], "--once", *args[1:]], env, tmp_path)
    assert restarted.code == 0, restarted.stderr
    alerts = [json.loads(line) for line in restarted.stdout.splitlines()]
    assert sorted(a["event_id"] for a in of(alerts, "repaired")) == sorted(e["id"] for e in missing)
    assert not of(alerts, "recovered"), "a second write would have found the object there: recovered"
    counts = totals(tmp_path, live)[stopped]
    assert counts["repaired"] == len(missing) and "recovered" not in counts
    for event in missing:
        key = next(a["key"] for a in alerts if a["event_id"] == event["id"])
        assert canonical(decode(stored(live, stopped, key))) == canonical(api_event(live, event["id"]))
    with StateDB(tmp_path / "state.sqlite") as state:
        assert not state.repair_intents()
    assert API_KEY not in restarted.stdout + restarted.stderr + killed.stdout + killed.stderr


def test_repair_after_shorter_than_the_deadline_is_refused(live: RunningSandbox, tmp_path: Path) -> None:
    env = process_env(**stack_env(live, tmp_path))
    run = run_process(["watch", "--once", "--deadline", "10min", "--repair-after", "5min"], env, tmp_path)
    assert run.code == firehose.ExitCode.USAGE and run.stdout == ""
    (line,) = run.stderr.strip().splitlines()
    assert "--repair-after" in line and "--deadline" in line
    with pytest.raises(UsageError, match="--repair-after"):
        replace(options(), repair_after=timedelta(seconds=1))
