"""``firehose sandbox --destinations N``: issue 15's outage is "over 3 destinations", the sandbox's flows have 5.
With N, its flows write to the first N of them only (3: Auto's S3, Home's S3 and Azure), the same flows by id."""

from __future__ import annotations

from pathlib import Path

import pytest

from firehose.event import EventView, destinations
from firehose.sandbox import FirehoseStream, Sandbox, Targets
from firehose.sandbox.generator import make_flows


def urls(flows: object) -> list[str]:
    return [d.url() for flow in flows for d in destinations(flow.firehose)]  # type: ignore[attr-defined]


def test_the_first_n_destinations_of_the_same_flows() -> None:
    every = make_flows(5, bucket="b")
    assert urls(every) == [
        "s3://b/events/auto", "s3://b/events/home", "az://b/events/home", "az://b", "s3://b/events/life",
    ]  # fmt: skip
    for wanted in range(1, 6):
        flows = make_flows(5, bucket="b", destinations=wanted)
        assert urls(flows) == urls(every)[:wanted]
        assert {flow.id for flow in flows} <= {flow.id for flow in every}
        assert any(flow.firehose["enabled"] is False for flow in flows), "the flow with its firehose off stays"
    assert [flow.name for flow in make_flows(5, destinations=3)] == ["Auto Insurance", "Home Insurance", "Solar Leads"]
    for wrong in (0, 6):
        with pytest.raises(ValueError, match="destinations"):
            make_flows(5, destinations=wrong)


def test_live_leads_go_to_those_destinations_only(tmp_path: Path) -> None:
    stream = FirehoseStream(Targets(directory=tmp_path, create_buckets=True))
    sandbox = Sandbox(api_key="k", stream=stream, seed=5, bucket="b", destinations=3)
    try:
        events = sandbox.live.make(60)
    finally:
        sandbox.live.close()
        stream.close()
    found = {d.url() for event in events for d in EventView(event).destinations()}
    assert found == {"s3://b/events/auto", "s3://b/events/home", "az://b/events/home"}
