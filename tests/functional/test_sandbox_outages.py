"""Issue 15, item 5: the sandbox plays outages at runtime. Through ``PUT /_sandbox/faults`` a destination's
firehose writes stop (held) and resume (written then), or land a set time after each event's end; leads are
made live at a rate, or on demand with ids from the past. Against the local S3 and Azure servers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from firehose.archive import ObjectInfo, Store, StoreUrl, open_store
from firehose.event import Destination, EventView
from tests.conftest import API_KEY, AZURE_CREDENTIAL, S3_CREDENTIAL, RunningSandbox, stack_sandbox

pytestmark = pytest.mark.usefixtures("stack")


@pytest.fixture(scope="module")
def shared() -> Iterator[RunningSandbox]:
    with stack_sandbox(seed=31, leads=2, days=1) as running:
        yield running


@pytest.fixture()
def live(shared: RunningSandbox) -> Iterator[RunningSandbox]:
    yield shared
    shared.sandbox.live.set_rate(0)
    shared.sandbox.stream.set_outages(dict.fromkeys(shared.sandbox.stream.outages.status()["destinations"]))


def put_faults(running: RunningSandbox, body: dict[str, Any]) -> httpx.Response:
    return httpx.put(f"{running.url}/_sandbox/faults", auth=("API", API_KEY), json=body, timeout=10)


def make_leads(running: RunningSandbox, count: int, age_seconds: float = 0) -> list[dict[str, Any]]:
    response = httpx.post(
        f"{running.url}/_sandbox/leads", auth=("API", API_KEY), json={"count": count, "age_seconds": age_seconds}
    )
    assert response.status_code == 201, response.text
    ids = {row["id"] for row in response.json()["events"]}
    return [event for event in running.sandbox_events() if event["id"] in ids]


def placed(events: list[dict[str, Any]]) -> list[tuple[Destination, str, dict[str, Any]]]:
    """(destination, key, event) for every enabled destination of each event."""
    found: list[tuple[Destination, str, dict[str, Any]]] = []
    for event in events:
        view = EventView(event)
        assert view.lead_id
        found.extend((d, d.key(view.lead_id, view.id), event) for d in view.destinations())
    return found


STORES: dict[tuple[str, str], Store] = {}


def head(destination: Destination, key: str) -> ObjectInfo | None:
    name = (destination.scheme, destination.bucket)
    if name not in STORES:  # opening a client costs more than the request
        STORES[name] = open_store(StoreUrl(*name, ""), s3=S3_CREDENTIAL, azure=AZURE_CREDENTIAL)
    return STORES[name].head(key)


def test_a_stopped_destination_holds_its_writes_until_resumed(live: RunningSandbox) -> None:
    stopped = f"s3://{live.bucket}/events/auto"
    assert put_faults(live, {"destinations": {stopped: {"stopped": True}}}).status_code == 200
    events = make_leads(live, 12)
    assert live.sandbox.stream.wait(30)
    where = placed(events)
    held = [(d, k) for d, k, _ in where if d.url() == stopped]
    others = [(d, k) for d, k, _ in where if d.url() != stopped]
    assert held and others, "12 leads reach the legacy flow and others"
    assert all(head(d, k) is None for d, k in held), "nothing reaches a stopped destination"
    assert all(head(d, k) is not None for d, k in others), "the other destinations go on"
    status = live.get("/_sandbox/status").json()["firehose"]
    assert status["held"] == len(held) and status["destinations"] == {stopped: {"stopped": True, "delay_seconds": 0}}

    resumed_at = time.time()
    assert put_faults(live, {"destinations": {stopped: None}}).status_code == 200
    assert live.sandbox.stream.wait(30)
    for destination, key in held:
        info = head(destination, key)
        assert info is not None, "a resumed destination gets what was held"
        assert info.last_modified.timestamp() >= resumed_at - 1
    assert live.get("/_sandbox/status").json()["firehose"]["held"] == 0


def test_a_delayed_destination_gets_each_event_that_long_after_its_end(live: RunningSandbox) -> None:
    delayed = f"az://{live.bucket}"  # every Azure destination of the bucket
    assert put_faults(live, {"destinations": {delayed: {"delay_seconds": 3}}}).status_code == 200
    events = make_leads(live, 6)
    where = [(d, k, e) for d, k, e in placed(events) if d.scheme == "az"]
    assert where
    assert all(head(d, k) is None for d, k, _ in where), "not yet: the delay is 3 s"
    assert live.sandbox.stream.wait(30)
    for destination, key, event in where:
        info = head(destination, key)
        assert info is not None
        lag = info.last_modified.timestamp() - event["end_timestamp"] / 1000
        assert 2 <= lag <= 5, lag  # last-modified has whole seconds


def test_a_live_event_is_written_once_it_has_ended_never_before(live: RunningSandbox) -> None:
    """LeadConduit's firehose writes an event after it ends. A live event ends its `ms` after it began; written at
    once, its object's last-modified came before its end (a delivery lag reconcile and the watch call unknown)."""
    events = make_leads(live, 20)
    assert max(e["end_timestamp"] - e["start_timestamp"] for e in events) >= 1500, "some take seconds"
    assert live.sandbox.stream.wait(30)
    for destination, key, event in placed(events):
        info = head(destination, key)
        assert info is not None, key
        # last-modified has whole seconds: never in a second before the one the event ended in
        assert info.last_modified.timestamp() >= event["end_timestamp"] // 1000, (key, info, event["end_timestamp"])


def test_a_delayed_write_that_comes_due_after_its_destination_stopped_is_held(live: RunningSandbox) -> None:
    """A delay is time in LeadConduit's queue: a bucket that breaks meanwhile refuses the write when it comes due."""
    delayed = f"s3://{live.bucket}/events/auto"
    assert put_faults(live, {"destinations": {delayed: {"delay_seconds": 2}}}).status_code == 200
    events = make_leads(live, 12)
    assert put_faults(live, {"destinations": {delayed: {"stopped": True, "delay_seconds": 2}}}).status_code == 200
    deadline = time.monotonic() + 30
    while live.get("/_sandbox/status").json()["firehose"]["delayed"]:  # until every write has come due
        assert time.monotonic() < deadline
        time.sleep(0.2)
    held = [(d, k) for d, k, _ in placed(events) if d.url() == delayed]
    assert held, "12 leads reach the legacy flow"
    assert all(head(d, k) is None for d, k in held), "nothing reaches a destination stopped before its writes came due"
    assert live.get("/_sandbox/status").json()["firehose"]["held"] == len(held)
    assert put_faults(live, {"destinations": {delayed: None}}).status_code == 200
    assert live.sandbox.stream.wait(30)
    assert all(head(d, k) is not None for d, k in held), "written once resumed"


def test_leads_made_live_at_a_rate_and_with_older_ids(live: RunningSandbox) -> None:
    before = live.get("/_sandbox/status").json()
    assert put_faults(live, {"events_per_second": 40}).status_code == 200
    time.sleep(1.0)
    assert put_faults(live, {"events_per_second": 0}).status_code == 200
    after = live.get("/_sandbox/status").json()
    made = after["live"]["events"] - before["live"]["events"]
    assert 20 <= made <= 80, made
    assert after["events"] - before["events"] == made, "every event made is served"
    latest = max(live.all_ids())
    older = make_leads(live, 1, age_seconds=300)
    assert older and all(event["id"] < latest for event in older), "ids from five minutes ago"
    assert {event["id"] for event in older} <= set(live.all_ids()), "served once made"


@pytest.mark.parametrize(
    "body",
    [
        {"destinations": []},
        {"destinations": {"lc-archive": {"stopped": True}}},
        {"destinations": {"s3://b": {"stopped": "yes"}}},
        {"destinations": {"s3://b": {"delay_seconds": -1}}},
        {"destinations": {"s3://b": {"paused": True}}},
        {"events_per_second": "nan"},
        {"events_per_second": -1},
    ],
)
def test_a_bad_outage_is_refused_with_400(sandbox: RunningSandbox, body: dict[str, Any]) -> None:
    response = put_faults(sandbox, body)
    assert response.status_code == 400 and response.json()["error"]
    assert put_faults(sandbox, {"rate_5xx": 0, "drop_rate": 0}).status_code == 200, "the old fields still work"
