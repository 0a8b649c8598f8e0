"""A repair on a full disk: every object is whole or absent (a zero-byte or cut object would be counted as
archived, and the event lost once the API forgets it). A real small filesystem (tmpfs), mounted here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from firehose.archive import open_store
from firehose.errors import ArchiveError
from tests.conftest import small_filesystem


@pytest.fixture()
def tiny(tmp_path: Path) -> Iterator[Path]:
    with small_filesystem(tmp_path / "tiny", "64k") as root:
        yield root


def test_writes_on_a_full_disk_leave_whole_objects_or_none(tiny: Path) -> None:
    store = open_store(f"file://{tiny}")
    body = b'{"id": "x", "pad": "' + b"z" * 9000 + b'"}'
    written, failed = [], 0
    for number in range(20):
        key = f"events/6b0000000000000000000000/6b00000000000000000000{number:02d}.json"
        try:
            assert store.write(key, body, if_absent=True)
            written.append(key)
        except ArchiveError as exc:
            failed += 1
            assert "No space left on device" in str(exc) and key in str(exc)
    assert written and failed, "the disk filled part-way"
    files = [path for path in tiny.rglob("*") if path.is_file()]
    assert sorted(str(path.relative_to(tiny)) for path in files) == sorted(written), "no partial file left"
    assert all(path.read_bytes() == body for path in files), "every object whole"
