"""An evidence pack is whole or absent: built beside its folder and renamed once signed."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from firehose.archive import open_store
from firehose.audit import write_pack
from firehose.errors import ArchiveError
from firehose.event import Destination
from firehose.reconciler import Outcome

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
