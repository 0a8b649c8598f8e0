"""Fixtures of the replay tests: a seeded sandbox that is both LeadConduit's API and the replay target, and the
environment a user would set for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from firehose.sandbox import Targets
from tests.conftest import API_KEY, RunningSandbox, firehose_written, start_sandbox, stop_sandbox


@pytest.fixture()
def box(tmp_path: Path) -> Iterator[RunningSandbox]:
    running, server = start_sandbox(
        Targets(directory=tmp_path / "archive", create_buckets=True), seed=5, leads=60, days=6
    )
    firehose_written(running, 60)
    yield running
    stop_sandbox(server, running)


@pytest.fixture()
def env(tmp_path: Path, box: RunningSandbox) -> dict[str, str]:
    return {
        "LEADCONDUIT_API_KEY": API_KEY,
        "LEADCONDUIT_URL": box.url,
        "FIREHOSE_STATE": str(tmp_path / "state.sqlite"),
    }
