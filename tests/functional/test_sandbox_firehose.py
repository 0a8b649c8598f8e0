"""The sandbox's firehose writes events to S3 (SeaweedFS) and Azure Blob (Azurite) in LeadConduit's layout."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from firehose.archive import StoreUrl, open_store
from firehose.codec import decode
from firehose.event import EventView
from firehose.sandbox import Targets
from tests.conftest import AZURE_CREDENTIAL, S3_CREDENTIAL, RunningSandbox, start_sandbox, stop_sandbox

pytestmark = pytest.mark.usefixtures("stack")


@pytest.fixture(scope="module")
def streamed() -> Iterator[RunningSandbox]:
    targets = Targets(s3=S3_CREDENTIAL, azure=AZURE_CREDENTIAL, create_buckets=True)
    running, server = start_sandbox(targets, seed=21, leads=80, days=10, drop_rate=0.1)
    assert running.sandbox.stream.wait(120), "firehose writes did not finish"
    yield running
    stop_sandbox(server, running)


def keys(service: str, bucket: str) -> dict[str, bytes]:
    scheme = "s3" if service == "aws" else "az"
    store = open_store(StoreUrl(scheme, bucket, ""), s3=S3_CREDENTIAL, azure=AZURE_CREDENTIAL)
    try:
        return {info.key: store.read(info.key) for info in store.list()}
    finally:
        store.close()


def expected_keys(running: RunningSandbox) -> dict[str, set[str]]:
    wanted: dict[str, set[str]] = {"aws": set(), "azure": set()}
    for event in running.sandbox_events():
        view = EventView(event)
        for destination in view.destinations():
            assert view.lead_id
            wanted[destination.service].add(destination.key(view.lead_id, view.id))
    return wanted


def test_events_land_at_prefix_lead_event_json_with_gaps_from_the_drop_rate(streamed: RunningSandbox) -> None:
    wanted = expected_keys(streamed)
    status = streamed.sandbox.stream.status()
    assert status["failed"] == 0 and status["pending"] == 0
    written_total = 0
    for service in ("aws", "azure"):
        stored = keys(service, streamed.bucket)
        assert set(stored) <= wanted[service], "nothing is written where no enabled destination points"
        missing = wanted[service] - set(stored)
        assert missing, "a 10% drop rate leaves gaps"
        assert len(missing) < len(wanted[service]) * 0.25
        written_total += len(stored)
        for key, body in list(stored.items())[:50]:
            event = decode(body)
            assert key.endswith(f"/{event['id']}.json")
            assert key.split("/")[-2] == EventView(event).lead_id
    assert written_total == status["written"]


def test_each_firehose_shape_lands_where_it_says(streamed: RunningSandbox) -> None:
    aws = Counter(key.rsplit("/", 2)[0] for key in keys("aws", streamed.bucket))
    azure = Counter(key.rsplit("/", 2)[0] if key.count("/") > 1 else "" for key in keys("azure", streamed.bucket))
    assert set(aws) == {"events/auto", "events/home", "events/life"}  # legacy; services aws; aws-only
    assert set(azure) == {"events/home", ""}  # both services; azure-only with an empty prefix
    assert all("solar" not in k and "health" not in k for k in aws), "disabled destinations get nothing"


def test_submitted_leads_are_streamed_too(streamed: RunningSandbox) -> None:
    streamed.sandbox.stream.drop_rate = 0.0
    flow = streamed.sandbox.flows[1]  # aws and azure both enabled
    response = httpx.post(
        streamed.submit_url(1), json={"email": "z@example.com", "phone_1": "5125550199", "state": "TX"}
    )
    lead_id = response.json()["lead"]["id"]
    assert streamed.sandbox.stream.wait(60)
    for service in ("aws", "azure"):
        prefix = flow.firehose["services"][service]["prefix"].rstrip("/")
        mine = [k for k in keys(service, streamed.bucket) if k.startswith(f"{prefix}/{lead_id}/")]
        events = [e for e in streamed.sandbox_events() if e["vars"]["lead"]["id"] == lead_id]
        assert len(mine) == len(events) > 1
