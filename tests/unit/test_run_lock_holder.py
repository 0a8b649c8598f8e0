"""A run refused because another holds the state database's run lock names the holder, even when it is refused in
the moment between the holder taking the lock and writing who it is (three reconciles started at once)."""

from __future__ import annotations

import fcntl
import threading
import time
from pathlib import Path

import pytest

from firehose.errors import ConfigError
from firehose.state import RunLock


def test_a_run_refused_before_the_holder_wrote_its_name_still_names_it(tmp_path: Path) -> None:
    database = tmp_path / "state.sqlite"
    lock_file = database.with_name(database.name + ".reconcile-lock")
    with lock_file.open("a+") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # taken, nothing written yet

        def write_name() -> None:
            time.sleep(0.2)
            held.write("pid 4242 (firehose reconcile) on host, since 2026-12-01 13:00:00Z")
            held.flush()

        writer = threading.Thread(target=write_name)
        writer.start()
        with pytest.raises(ConfigError, match=r"another reconcile is using it \(pid 4242 \(firehose reconcile\)"):
            RunLock(database, "reconcile").__enter__()
        writer.join()


def test_a_holder_that_never_says_who_it_is_is_another_process_within_a_second(tmp_path: Path) -> None:
    database = tmp_path / "state.sqlite"
    lock_file = database.with_name(database.name + ".reconcile-lock")
    with lock_file.open("a+") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        started = time.monotonic()
        with pytest.raises(ConfigError, match=r"another reconcile is using it \(another process\)"):
            RunLock(database, "reconcile").__enter__()
        assert time.monotonic() - started < 3
