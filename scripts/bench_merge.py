"""How much memory `firehose audit merge` takes as the pack grows: the merge's peak RSS at two or more sizes of
manifest, the same slice count, and their ratio (flat: a part of each slice held at a time, whatever the period
holds).

Writes a sliced audit's checkpoints straight into a `file://` run state (no servers: what is measured is the
merge), --shards slices of one destination, each object's manifest line as `audit pack` writes it, dealt to the
slices at random (an event-id range's keys interleave in key order), then runs `firehose audit merge` on them as
a process of its own and reads its peak RSS (through a fresh wrapper process: a child forked from this one, which
holds the lines it wrote, would count this one's pages too). With --compare-with PATH (another build's `firehose`, one
from before the merge streamed, e.g. main's before this change) the same checkpoints are also written with their
lines inline, as that build kept them, and merged by it.

usage: scripts/bench merge [--objects 100000,1000000] [--shards 64] [--compare-with PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench_support import peak_rss_mib

from firehose.archive.base import RetentionSettings
from firehose.archive.local import LocalStore
from firehose.evidence.seal import retention_entry, summary_of
from firehose.evidence.slices import ManifestParts
from firehose.reconciliation.checkpoints import RunState

ROOT = Path(__file__).resolve().parent.parent
URL = "s3://archive"
START = datetime(2026, 10, 1, tzinfo=UTC)
END = START + timedelta(days=31, seconds=-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", default="100000,1000000", help="manifest sizes, comma-separated")
    parser.add_argument("--shards", type=int, default=64)
    parser.add_argument("--compare-with", help="another build's firehose executable (lines kept inline)")
    args = parser.parse_args()
    sizes = [int(size) for size in args.objects.split(",")]
    builds = {"this build": (str(ROOT / ".venv" / "bin" / "firehose"), False)}
    if args.compare_with:
        builds["--compare-with"] = (args.compare_with, True)
    print(f"audit merge of {args.shards} slices, one destination: peak RSS of the merging process")
    for name, (firehose, inline) in builds.items():
        peaks = []
        for objects in sizes:
            with tempfile.TemporaryDirectory() as tmp:
                work = Path(tmp)
                written = _checkpoints(work / "run", objects, args.shards, inline=inline)
                rss, seconds, manifest = _merge(firehose, work)
                peaks.append(rss)
                print(f"  {name:14} {objects:>10,} objects ({written / 2**20:,.0f} MiB of lines)   peak RSS "
                      f"{rss / 2**20:7.1f} MiB   {seconds:6.1f} s   manifest {manifest}")  # fmt: skip
        print(f"  {name:14} peak RSS at {sizes[-1]:,} / at {sizes[0]:,} objects: {peaks[-1] / peaks[0]:.2f}x")


def _lines(objects: int) -> Iterator[dict[str, Any]]:
    """Manifest lines in key order, as `audit pack` writes them."""
    keys = sorted(f"lead-{n % 99991:05d}/{n:024x}.json" for n in range(objects))
    for n, key in enumerate(keys):
        yield {"destination": URL, "credential_id": None, "key": key, "event_id": key[11:35],
               "lead_id": f"{n % 99991:024x}", "size": 1500 + n % 900,
               "sha256": hashlib.sha256(key.encode()).hexdigest(), "version_id": None,
               "last_modified": "2026-10-02T10:00:00+00:00", "retention_mode": None,
               "retain_until": None}  # fmt: skip


def _checkpoints(folder: Path, objects: int, shards: int, *, inline: bool) -> int:
    """The run state of a finished sliced audit of ``objects`` objects; the bytes of its manifest lines."""
    state = RunState(LocalStore(folder), "", kind="audit")
    chance = random.Random(objects)
    if inline:
        kept: list[Any] = [[] for _ in range(shards)]
        add = [lines.append for lines in kept]
    else:
        kept = [ManifestParts(state, URL) for _ in range(shards)]
        add = [parts.add for parts in kept]
    counts = [0] * shards
    written = 0
    for line in _lines(objects):
        index = chance.randrange(shards)
        add[index](line)
        counts[index] += 1
        written += len(line["key"]) + 330
    retention = [retention_entry(URL, "", RetentionSettings(kind="s3"), None)]
    run = {"start": START.isoformat(), "end": END.isoformat(), "shards": shards, "fingerprint": "bench",
           "require_retention": None}  # fmt: skip
    for index in range(shards):
        coverage = [{"day": "2026-10-02", "destination": URL, "api_events": counts[index], "archived": counts[index],
                     "missing": 0, "differing": 0, "repaired": 0, "archive_only": 0, "errors": 0,
                     "not_configured": 0}]  # fmt: skip
        summary = summary_of(start=START, end=END, verify="presence", required_days=None, coverage=coverage,
                             tallies=[], retention=retention, destinations=[URL])  # fmt: skip
        lines = {"manifest": {URL: kept[index]}} if inline else {"manifest_parts": {URL: kept[index].finish()}}
        parts = {"coverage": coverage, "findings": [], "retention": retention, **lines}
        report = {**summary, "shard": {"index": index, "of": shards}, "parts": parts}
        state.record((index, shards), run, report)
    return written


def _merge(firehose: str, work: Path) -> tuple[float, float, str]:
    """Run the merge as a process of its own: its peak RSS in bytes, its time, the manifest's size."""
    command = [firehose, "audit", "merge", "--run-state", (work / "run").as_uri(), "--out", str(work / "pack"),
               "--signing-key", str(work / "key.pem")]  # fmt: skip
    (work / "firehose.toml").write_text("")  # no settings of the machine it runs on
    env = {**os.environ, "FIREHOSE_STATE": str(work / "state.sqlite"), "FIREHOSE_CONFIG": str(work / "firehose.toml")}
    started = time.perf_counter()
    rss = peak_rss_mib(command, env) * 2**20
    seconds = time.perf_counter() - started
    manifest = work / "pack" / "manifest.ndjson"
    if not manifest.exists():
        raise SystemExit(f"bench: {firehose} audit merge made no pack: {' '.join(command)}")
    return rss, seconds, f"{manifest.stat().st_size / 2**20:,.0f} MiB"


if __name__ == "__main__":
    main()
