"""The watch lists awaited leads as few key ranges: one for leads close together, another past a gap."""

from __future__ import annotations

from firehose.watching.watcher import MERGE_GAP, _ranges


def test_close_leads_are_one_range_and_a_straggler_its_own() -> None:
    assert list(_ranges([])) == []
    assert list(_ranges([100])) == [(100, 100)]
    assert list(_ranges([100, 130, 100 + MERGE_GAP + 30])) == [(100, 100 + MERGE_GAP + 30)]
    far = 130 + MERGE_GAP + 1
    assert list(_ranges([100, 130, far, far + 5])) == [(100, 130), (far, far + 5)]
