"""A pool of local workers that breaks (a worker killed) must not hold the run for ever: every worker it knows is
ended, whatever it was doing, and the slices without a checkpoint are run again in a new pool."""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import firehose.reconciliation.fanout as fanout


@dataclass(frozen=True)
class DyingSlices:
    """On its first attempt slice 0 outlives SIGTERM (as a worker the pool spawned after its SIGTERMs went out
    does) and would take 30 s; slice 1's worker is killed on its first attempt. Each slice that finishes leaves a
    file (its checkpoint here)."""

    folder: str
    kind: str = "reconcile"

    def identity(self, index: int, shards: int) -> dict[str, Any]:
        return {"fingerprint": "x" * 12}

    def run(self, index: int, shards: int, settings: Any, run_state: str, credential_id: str | None, gate: Any) -> bool:
        first = Path(self.folder) / f"tried-{index}"
        if not first.exists():
            first.touch()
            if index == 0:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                time.sleep(30)
            else:
                time.sleep(0.5)
                os.kill(os.getpid(), signal.SIGKILL)
        (Path(self.folder) / f"done-{index}").touch()
        return True


def test_a_broken_pool_whose_other_worker_ignores_sigterm_ends_and_runs_what_is_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = DyingSlices(str(tmp_path))
    outcome: list[Any] = []

    def left_after(_job: Any, _settings: Any, _run_state: str, shards: int, _credential: Any) -> list[int]:
        return [index for index in range(shards) if not (tmp_path / f"done-{index}").exists()]

    monkeypatch.setattr(fanout, "_left", left_after)  # this test's checkpoints: its files
    arguments = (job, 2, None, "", None)
    runner = threading.Thread(
        target=lambda: outcome.append(fanout._on_processes(2, [0, 1], 3, arguments, lambda: None, None)), daemon=True
    )
    started = time.monotonic()
    runner.start()
    runner.join(60)
    assert not runner.is_alive(), "the run waited for ever on a worker of its broken pool"
    # A worker of the broken pool is not waited for: the old code waited out slice 0's 30 s (and, for a worker
    # spawned too late to get a SIGTERM or a stop from the pool, for ever).
    assert time.monotonic() - started < 15
    assert outcome == [[]], "every slice done once its pool was made again"
    assert all((tmp_path / f"done-{index}").exists() for index in (0, 1))
