"""An evidence pack is whole or absent: built beside its folder and renamed once signed."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from firehose.archive import open_store
from firehose.errors import ArchiveError
from firehose.event import Destination
from firehose.evidence.pack import write_pack
from firehose.reconciliation.run import Outcome

START, END = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC)


def make(out: Path, archive: Path, key: Path) -> None:
    destination = Destination.from_url(f"file://{archive}")
    write_pack(out, start=START, end=END, outcome=Outcome(0), repaired_before=Counter(), findings=[],
               open_store=lambda d: open_store(f"file://{archive}"), destinations=[destination],
               required_days=None, verify="presence", signing_key=key)  # fmt: skip


def test_a_pack_that_fails_part_way_leaves_nothing_and_the_rerun_makes_it(tmp_path: Path) -> None:
    out, key = tmp_path / "evidence", tmp_path / "k.pem"
    with pytest.raises(ArchiveError):
        make(out, tmp_path / "no-such-archive", key)  # the store fails while the manifest is hashed
    assert not out.exists() and list(tmp_path.iterdir()) in ([], [key]), list(tmp_path.iterdir())
    (tmp_path / "archive").mkdir()
    make(out, tmp_path / "archive", key)
    names = {path.name for path in out.iterdir()}
    assert {"SHA256SUMS", "SHA256SUMS.sig", "summary.json", "manifest.ndjson"} <= names
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [], "no partial folder left"


def _event_id(moment: datetime, n: int) -> str:
    return f"{int(moment.timestamp()):08x}{n:016x}"


def test_two_stores_are_hashed_and_verified_at_once_and_read_as_one_serial_pack(tmp_path: Path) -> None:
    """Each store is hashed (and verified) at the same time as the others; the manifest and verify's findings
    still come in destination order, every line counted, whatever finishes first."""
    from firehose.evidence.verify import check_pack

    archives = [tmp_path / "a", tmp_path / "b"]
    keys: list[list[Path]] = []
    for number, archive in enumerate(archives):
        made = []
        for n in range(40 * (2 - number)):  # the first store has more, so it finishes last
            lead = _event_id(START.replace(hour=1), 1000 * number + n)
            event = _event_id(START.replace(hour=2), 1000 * number + n)
            path = archive / lead / f"{event}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b'{"id": "%s"}' % event.encode())
            made.append(path)
        keys.append(made)
    destinations = [Destination.from_url(f"file://{archive}") for archive in archives]
    out = tmp_path / "pack"
    write_pack(out, start=START, end=END, outcome=Outcome(0), repaired_before=Counter(), findings=[],
               open_store=lambda d: open_store(f"file://{d.bucket}"), destinations=destinations,
               required_days=None, verify="presence", signing_key=tmp_path / "k.pem", workers=4)  # fmt: skip
    lines = (out / "manifest.ndjson").read_text().splitlines()
    assert len(lines) == 120
    assert [line.split('"destination":"')[1].split('"')[0] for line in lines] == [destinations[0].url()] * 80 + [
        destinations[1].url()
    ] * 40, "the manifest holds one destination after the other"
    assert not list(out.glob(".manifest-*")), "the part files are joined and gone"

    keys[1][5].unlink()
    keys[0][79].write_bytes(b"changed")
    found = check_pack(out, lambda d: open_store(f"file://{d.bucket}"), workers=4)
    assert found.objects == 120
    assert [item["key"].rsplit("/", 1)[1] for item in found.changed] == [keys[0][79].name, keys[1][5].name]


def test_verify_opens_each_store_once_however_many_lines_are_checked_at_once(tmp_path: Path) -> None:
    """Verify checked lines on many threads, and each thread that found the store not yet open opened its own:
    with boto3 (a tenth of a second per client) that was most of verify's time, and the extra clients were
    never closed."""
    import threading
    import time

    from firehose.evidence.verify import check_pack

    archive = tmp_path / "a"
    for n in range(60):
        lead, event = _event_id(START.replace(hour=1), n), _event_id(START.replace(hour=2), n)
        (archive / lead).mkdir(parents=True, exist_ok=True)
        (archive / lead / f"{event}.json").write_bytes(b'{"id": "%s"}' % event.encode())
    destination = Destination.from_url(f"file://{archive}")
    opened: list[Any] = []
    lock = threading.Lock()

    def slow_open(d: Destination) -> Any:
        time.sleep(0.05)  # as long as a boto3 client takes to make
        store: Any = open_store(f"file://{d.bucket}")
        closed = store.close
        store.closed_calls = 0

        def close() -> None:
            store.closed_calls += 1
            closed()

        store.close = close
        with lock:
            opened.append(store)
        return store

    out = tmp_path / "pack"
    write_pack(out, start=START, end=END, outcome=Outcome(0), repaired_before=Counter(), findings=[],
               open_store=slow_open, destinations=[destination], required_days=None, verify="presence",
               signing_key=tmp_path / "k.pem", workers=16)  # fmt: skip
    assert len(opened) == 1 and opened[0].closed_calls == 1
    opened.clear()
    found = check_pack(out, slow_open, workers=16)
    assert found.objects == 60 and not found.changed
    assert len(opened) == 1, f"{len(opened)} stores opened for one destination"
    assert opened[0].closed_calls == 1
