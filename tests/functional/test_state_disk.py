"""Issue 15: the state database on a full disk and as a read-only file, as a user meets them. A real small
filesystem (tmpfs, mounted here; skipped where mounting is not allowed) filled by a file to its last byte, and a
real read-only file (the database bind-mounted read-only onto itself: root ignores a file's mode). What the user
must see: one line naming the file and saying why, exit 3, no traceback, no secret; and once there is room
again, the watch resumes without missing or counting twice an event."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from firehose.event import EventView
from firehose.state import StateDB
from firehose.watching.ledger import WatchLedger
from tests.conftest import API_KEY, RunningSandbox, small_filesystem, stack_env, stack_sandbox
from tests.functional.clirun import Run, process_env, run_process, spawn

pytestmark = pytest.mark.usefixtures("stack")


@pytest.fixture()
def tiny(tmp_path: Path) -> Iterator[Path]:
    with small_filesystem(tmp_path / "tiny", "4m") as root:
        try:
            yield root
        finally:
            subprocess.run(["umount", str(root / "state.sqlite")], capture_output=True, check=False)  # a bind, if left


@pytest.fixture()
def live() -> Iterator[RunningSandbox]:
    with stack_sandbox(seed=47, leads=3, days=1) as running:
        yield running


@contextlib.contextmanager
def full(folder: Path) -> Iterator[None]:
    """The disk filled to its last byte, then given back."""
    filler = folder / "filler"
    handle = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(handle, b"x" * 65536)
        with contextlib.suppress(OSError):
            while True:
                os.write(handle, b"x" * 512)
    finally:
        os.close(handle)
    try:
        yield
    finally:
        filler.unlink()


def one_line_error(run: Run, database: Path, why: str) -> None:
    assert run.code == 3, (run.code, run.stderr)
    assert run.stdout == "", run.stdout
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("firehose: error: "), run.stderr
    assert str(database) in lines[0] and why in lines[0], lines[0]
    assert "Traceback" not in run.stderr and API_KEY not in run.stderr


def seen(database: Path) -> dict[str, dict[str, int]]:
    with StateDB(database) as state:
        return WatchLedger(state, "").counts()


def test_a_watch_on_a_full_disk_or_a_read_only_file_says_so_and_resumes_exactly(
    live: RunningSandbox, tiny: Path, tmp_path: Path
) -> None:
    database = tiny / "state.sqlite"
    env = process_env(**{**stack_env(live, tmp_path), "FIREHOSE_STATE": str(database)})
    start = (datetime.now(UTC) - timedelta(seconds=30)).isoformat()
    args = ["watch", "--deadline", "1h", "--interval", "0.2s", "--start", start]
    first = run_process([*args[:1], "--once", *args[1:]], env, tmp_path)
    assert first.code == 0, first.stderr
    watch = spawn(args, env, tmp_path)  # not --once: a watch running when the disk fills
    lock = tiny / "state.sqlite.watch-lock"
    deadline = time.monotonic() + 30
    while not (lock.exists() and "pid" in lock.read_text()):
        assert time.monotonic() < deadline and watch.poll() is None, watch.stderr
        time.sleep(0.05)
    time.sleep(0.5)  # a few polls with nothing new

    with full(tiny):
        made = live.sandbox.live.make(60, age_seconds=5)  # about 270 events, 500 (event, destination) pairs
        assert live.sandbox.stream.wait(30)
        out, err = watch.communicate(timeout=60)
        one_line_error(Run(watch.returncode, out, err), database, "its disk is full")
        reconcile = run_process(["reconcile", "--start", f"{datetime.now(UTC):%Y-%m-%d}"], env, tmp_path)
        one_line_error(reconcile, database, "its disk is full")  # the same state database code

    subprocess.run(["mount", "--bind", str(database), str(database)], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", str(database)], check=True)
    read_only = run_process([*args[:1], "--once", *args[1:]], env, tmp_path)
    reconcile = run_process(["reconcile", "--start", f"{datetime.now(UTC):%Y-%m-%d}"], env, tmp_path)
    subprocess.run(["umount", str(database)], check=True)
    one_line_error(read_only, database, "read-only")
    one_line_error(reconcile, database, "read-only")

    expected = Counter(d.url() for e in made for d in EventView(e).destinations())
    again = run_process([*args[:1], "--once", *args[1:]], env, tmp_path)
    assert again.code == 0, again.stderr
    counts = seen(database)
    assert {url: counts[url]["seen"] for url in expected} == dict(expected), "each pair seen once, none missed"
    for url in expected:  # every pair settled once: archived (the sandbox wrote them all)
        assert counts[url].get("archived", 0) == expected[url], counts[url]
