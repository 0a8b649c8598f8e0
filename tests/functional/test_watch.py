"""Issue 15: ``firehose watch`` against the sandbox making leads live and the local S3 and Azure servers. A
stopped destination gives ``late`` within the deadline plus an interval (and nothing else is late), resuming it
gives ``recovered``; a ``kill -9`` and a restart neither miss an event nor count one twice, an event that
becomes visible after later ones included; SIGTERM stops cleanly. Short intervals and deadlines keep it quick."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import firehose
from firehose.event import EventView
from firehose.ids import seconds_of
from firehose.sandbox.outages import Outage
from firehose.state import StateDB
from firehose.watching.ledger import WatchLedger
from tests.conftest import API_KEY, RunningSandbox, stack_env, stack_sandbox, use_stack_env
from tests.functional.clirun import process_env, run_process, spawn

pytestmark = pytest.mark.usefixtures("stack")


@pytest.fixture()
def live() -> Iterator[RunningSandbox]:
    with stack_sandbox(seed=41, leads=3, days=1) as running:  # a few leads: the buckets are made
        yield running
        running.sandbox.live.set_rate(0)


def expected_pairs(running: RunningSandbox, since: int) -> Counter[str]:
    """(event, destination) pairs the sandbox has made since ``since`` (a second), per destination URL."""
    found: Counter[str] = Counter()
    for event in running.sandbox_events():
        if seconds_of(event["id"]) >= since:
            found.update(d.url() for d in EventView(event).destinations())
    return found


def wait_for(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {seconds} s"
        time.sleep(0.1)


def test_a_stopped_destination_is_late_within_the_deadline_and_recovers(
    live: RunningSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_stack_env(live, tmp_path, monkeypatch)
    stopped = f"s3://{live.bucket}/events/auto"
    options = firehose.WatchOptions(
        interval=timedelta(seconds=1),
        deadline=timedelta(seconds=4),
        down_after=timedelta(seconds=3),
        start=datetime.now(UTC) - timedelta(seconds=1),
    )
    alerts: list[dict[str, Any]] = []
    stop = threading.Event()
    results: list[firehose.WatchResult] = []
    watching = threading.Thread(
        target=lambda: results.append(
            firehose.watch(options, firehose.Settings.load(), on_alert=alerts.append, stop=stop)
        )
    )
    live.sandbox.live.set_rate(20)
    watching.start()
    try:
        time.sleep(2)
        live.sandbox.stream.set_outages({stopped: Outage(stopped=True)})
        wait_for(lambda: any(a["alert"] == "late" for a in alerts), 15, "late alert")
        wait_for(lambda: any(a["alert"] == "destination_down" for a in alerts), 10, "destination_down")
        live.sandbox.stream.set_outages({stopped: None})
        wait_for(lambda: any(a["alert"] == "recovered" for a in alerts), 10, "recovered alert")
        live.sandbox.live.set_rate(0)
        assert live.sandbox.stream.wait(30)
        late = {a["event_id"] for a in alerts if a["alert"] == "late"}
        wait_for(lambda: late <= {a["event_id"] for a in alerts if a["alert"] == "recovered"}, 15, "every recovery")
    finally:
        stop.set()
        watching.join(30)
    kinds = Counter(a["alert"] for a in alerts)
    assert {a["destination"] for a in alerts if a["alert"] in ("late", "recovered")} == {stopped}, "no false alarm"
    for alert in alerts:
        if alert["alert"] == "late":  # decided at the first poll past its deadline
            said = datetime.fromisoformat(alert["at"]) - datetime.fromisoformat(alert["deadline"])
            assert timedelta(0) <= said <= timedelta(seconds=1 + 1.5), alert
    assert kinds["destination_down"] == 1 and kinds["destination_up"] == 1, kinds
    down = next(a for a in alerts if a["alert"] == "destination_down")
    assert down["destination"] == stopped and "nothing has arrived" in down["reason"]
    recovered = [a for a in alerts if a["alert"] == "recovered"]
    assert all(a["lag_seconds"] >= 3 for a in recovered), "recovered past their deadline (last-modified has seconds)"
    (result,) = results
    assert result.late == 0 and result.exit_code == firehose.ExitCode.OK
    totals = result.totals[stopped]
    assert totals["late"] == totals["recovered"] == len(late)
    assert API_KEY not in json.dumps(alerts)


def test_kill_9_and_restart_neither_miss_nor_count_twice(live: RunningSandbox, tmp_path: Path) -> None:
    env = process_env(**stack_env(live, tmp_path))
    since = int(time.time()) - 1
    start = datetime.fromtimestamp(since, tz=UTC).isoformat()
    args = ["watch", "--interval", "1s", "--deadline", "1min", "--start", start]
    live.sandbox.live.set_rate(20)
    first = spawn(args, env, tmp_path)
    time.sleep(3)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    # Made while no watch runs, with ids three seconds old: older than events already read.
    older = live.sandbox.live.make(2, age_seconds=3)
    second = spawn(args, env, tmp_path)
    time.sleep(3)
    live.sandbox.live.set_rate(0)
    assert live.sandbox.stream.wait(30)
    time.sleep(2)
    second.send_signal(signal.SIGTERM)
    out, err = second.communicate(timeout=30)
    assert second.returncode == 0, err
    assert "Traceback" not in err and API_KEY not in out + err
    last = run_process(["watch", "--once", *args[1:]], env, tmp_path)
    assert last.code == 0, last.stderr
    assert all(json.loads(line)["alert"] not in ("late", "recovered") for line in (out + last.stdout).splitlines())

    with StateDB(tmp_path / "state.sqlite") as state:
        totals = WatchLedger(state, live.url).counts()
    wanted = expected_pairs(live, since)
    assert {url: counts["seen"] for url, counts in totals.items()} == dict(wanted), "each pair seen exactly once"
    assert {url: counts.get("archived", 0) for url, counts in totals.items()} == dict(wanted)
    assert {e["id"] for e in older} <= {e["id"] for e in live.sandbox_events()}


def test_metrics_parse_and_the_lag_histogram_holds_the_delay_the_sandbox_applied(
    live: RunningSandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    use_stack_env(live, tmp_path, monkeypatch)
    for scheme in ("s3", "az"):  # every destination: each write 2 s after its event's end
        live.sandbox.stream.set_outages({f"{scheme}://{live.bucket}": Outage(delay_seconds=2)})
    since = datetime.now(UTC) - timedelta(seconds=1)
    live.sandbox.live.make(5)
    assert live.sandbox.stream.wait(30)
    metrics = tmp_path / "watch.prom"
    options = firehose.WatchOptions(deadline=timedelta(minutes=1), start=since, once=True, metrics_file=metrics)
    result = firehose.watch(options, firehose.Settings.load())
    assert result.exit_code == firehose.ExitCode.OK and result.events > 0
    families = {family.name: family for family in text_string_to_metric_families(metrics.read_text())}
    events = Counter(
        {(s.labels["destination"], s.labels["outcome"]): s.value for s in families["firehose_watch_events"].samples}
    )
    for url, counts in result.totals.items():
        assert events[(url, "seen")] == events[(url, "archived")] == counts["seen"] > 0
    buckets: Counter[str] = Counter()
    for sample in families["firehose_watch_delivery_lag_seconds"].samples:
        if sample.name.endswith("_bucket"):
            buckets[sample.labels["le"]] += int(sample.value)
    archived = sum(counts["archived"] for counts in result.totals.values())
    # Last-modified has whole seconds: a 2 s delay reads as more than 1 s and under 3 s, p50 and p99 alike.
    assert buckets["1.0"] == 0 and buckets["3.0"] == archived, buckets
    assert "firehose_watch_cursor_age_seconds" in families and "firehose_watch_store_requests" in families
