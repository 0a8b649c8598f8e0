"""A sliced audit's manifest, merged as it streams: each slice's lines kept in parts in the run state, the
merge a k-way merge of them, holding a part of each slice at a time, whatever the period holds."""

from __future__ import annotations

import hashlib
import random
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firehose.archive.local import LocalStore
from firehose.codec import encode_line
from firehose.errors import DataError
from firehose.evidence.slices import ManifestParts, merged_lines, slice_lines
from firehose.reconciliation.checkpoints import RunState

URL = "s3://archive"
SLICES = 7


def manifest(objects: int) -> list[dict[str, Any]]:
    """Lines as a pack's manifest holds them, in key order (a lead prefix first: slices of an event-id range
    interleave in key order)."""
    lines = [
        {"destination": URL, "credential_id": None, "key": f"lead-{n % 997:04d}/event-{n:08d}.json",
         "event_id": f"{n:024x}", "lead_id": f"{n % 997:024x}", "size": 900 + n % 300,
         "sha256": hashlib.sha256(str(n).encode()).hexdigest(), "version_id": None,
         "last_modified": "2026-11-02T10:00:00+00:00", "retention_mode": None, "retain_until": None}
        for n in range(objects)
    ]  # fmt: skip
    return sorted(lines, key=lambda line: line["key"])


def kept_in_slices(state: RunState, lines: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """``lines`` dealt at random to SLICES slices, each slice's kept in parts of 8 KiB: the parts' entries."""
    chance = random.Random(len(lines))
    writers = [ManifestParts(state, URL, part_bytes=8192) for _ in range(SLICES)]
    for line in lines:
        writers[chance.randrange(SLICES)].add(line)
    return [writer.finish() for writer in writers]


def merged_digest(state: RunState, parts: list[list[dict[str, Any]]]) -> tuple[str, int]:
    """The merged manifest's SHA-256 (written nowhere: a file's bytes would be the test's memory) and the peak
    of memory allocated while merging."""
    digest = hashlib.sha256()
    tracemalloc.start()
    try:
        for _, raw, _ in merged_lines(slice_lines(state, kept, URL) for kept in parts):
            digest.update(raw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return digest.hexdigest(), peak


def test_the_merge_writes_one_process_bytes_in_memory_that_does_not_grow_with_the_manifest(tmp_path: Path) -> None:
    peaks = []
    for objects in (1_500, 15_000):
        state = RunState(LocalStore(tmp_path / str(objects)), "run", kind="audit")
        lines = manifest(objects)
        parts = kept_in_slices(state, lines)
        assert min(len(kept) for kept in parts) > 5  # every slice's lines are in many parts
        digest, peak = merged_digest(state, parts)
        assert digest == hashlib.sha256(b"".join(map(encode_line, lines))).hexdigest()
        peaks.append(peak)
    # Ten times the lines (about 5 MB of manifest against 0.5 MB): the same memory, a part of each slice.
    assert peaks[1] < 1.3 * peaks[0], peaks
    assert peaks[1] < 200_000, peaks


def test_a_part_that_is_gone_or_changed_or_out_of_order_is_refused_never_merged(tmp_path: Path) -> None:
    state = RunState(LocalStore(tmp_path), "run", kind="audit")
    lines = manifest(300)
    parts = kept_in_slices(state, lines)

    def merged() -> Iterator[Any]:
        return merged_lines(slice_lines(state, kept, URL) for kept in parts)

    victim = tmp_path / "run" / "parts" / f"{parts[3][1]['sha256']}.ndjson"
    body = victim.read_bytes()
    victim.write_bytes(body.replace(b'"size":', b'"size":1', 1))
    with pytest.raises(DataError, match=f"{victim.name}: not the part its checkpoint names"):
        list(merged())
    victim.unlink()
    with pytest.raises(DataError, match=f"{victim.name}: a part a checkpoint names is gone"):
        list(merged())
    writer = ManifestParts(state, URL)
    writer.add(lines[1])
    with pytest.raises(DataError, match="out of key order"):
        writer.add(lines[0])
