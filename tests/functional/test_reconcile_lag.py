"""Issue 15 item 3: ``reconcile`` reports each destination's delivery lag (last-modified minus the event's end):
p50, p95, p99 and the maximum equal the delay the sandbox was told to apply to that destination's writes, in the
JSON report and the text summary."""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from firehose.archive import open_store
from firehose.cli import cli
from firehose.event import EventView
from firehose.sandbox.outages import Outage
from tests.conftest import AZURE_CREDENTIAL, S3_CREDENTIAL, stack_env, stack_sandbox

pytestmark = pytest.mark.usefixtures("stack")

DELAYS = {"s3": 2.0, "az": 5.0}
"""Seconds each scheme's writes land after their event's end."""


def test_lag_percentiles_are_the_delays_the_sandbox_applied(tmp_path: Path) -> None:
    with stack_sandbox(seed=47, leads=3, days=1) as live:
        live.sandbox.stream.set_outages(
            {f"{scheme}://{live.bucket}": Outage(delay_seconds=delay) for scheme, delay in DELAYS.items()}
        )
        start = datetime.now(UTC) - timedelta(seconds=5)
        made = live.sandbox.live.make(6)
        assert live.sandbox.stream.wait(60)
        end = datetime.now(UTC) + timedelta(minutes=2)  # made events end up to a minute ahead
        env = stack_env(live, tmp_path)
        report = tmp_path / "report.json"
        run = CliRunner().invoke(
            cli, ["reconcile", "--start", start.isoformat(), "--end", end.isoformat(), "--report", str(report)], env=env
        )
        assert run.exit_code == 0, run.stderr
        lags = json.loads(report.read_text())["delivery_lag"]
        pairs = Counter(d.url() for e in made for d in EventView(e).destinations())
        assert {url.split(":", 1)[0] for url in pairs} == set(DELAYS), "both stores, each with its own delay"
        assert {url: (lag["objects"], lag["unknown"]) for url, lag in lags.items()} == {
            url: (number, 0) for url, number in pairs.items()
        }
        exact = _exact_lags(live.bucket, made)
        for url, lag in lags.items():
            delay = DELAYS[url.split(":", 1)[0]]
            # Last-modified has whole seconds: a delay of D reads as more than D - 1; the write itself takes a
            # moment after its delay (more on a loaded machine).
            assert delay - 1 < lag["p50"] <= lag["p95"] <= lag["p99"] <= lag["max"] < delay + 3, (url, lag)
            lags_there = sorted(exact[url])
            assert lag["max"] == pytest.approx(lags_there[-1], abs=0.001), "the maximum is exact"
            for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):  # never under, at most a bucket over
                true = lags_there[math.ceil(q * len(lags_there)) - 1]
                assert true - 0.001 <= lag[name] <= true * 1.1 + 0.001, (name, lag, lags_there)
            assert f"delivery lag {url}: p50 {lag['p50']:.3g} s" in run.stderr, run.stderr


def _exact_lags(bucket: str, made: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Per destination URL, each made event's lag, from its object's last-modified in a listing."""
    where = {}
    for event in made:
        view = EventView(event)
        for d in view.destinations():
            where[(d.scheme, d.key(view.lead_id or "", view.id))] = (d.url(), view.ended)
    found: dict[str, list[float]] = {}
    for scheme in DELAYS:
        store = open_store(f"{scheme}://{bucket}", s3=S3_CREDENTIAL, azure=AZURE_CREDENTIAL)
        try:
            for info in store.list():
                if (scheme, info.key) in where:
                    url, ended = where[(scheme, info.key)]
                    found.setdefault(url, []).append(info.last_modified.timestamp() - ended)
        finally:
            store.close()
    return found
