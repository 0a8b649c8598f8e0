"""A sliced audit, for many machines: ``audit_slice`` checks one slice of the period (``AuditOptions.sharded``)
and keeps its part of the pack as one create-only checkpoint in the run state (``--run-state``), and
``merge_audit`` makes the one pack of them all; ``audit_all_slices`` runs every slice on an executor
(``local:N`` or Dask, reconcile's ``run_all_slices``) and merges.

A slice's part is what the pack holds for its events: its coverage rows (per day and destination), its findings,
each destination's manifest lines (in key order) and each destination's retention settings as the slice read
them. The manifest lines (about 435 bytes an object: 43 GB at 10^8) are not in the checkpoint: the slice writes
them as it hashes, in parts of about ``PART_BYTES`` under the run state's ``parts/`` (``RunState.keep_part``), and
its checkpoint names the parts. The merge sums the coverage rows, sorts the findings as one run's state database
lists them, and merges each destination's lines from every slice's parts in key order (``heapq.merge``, one part
of each slice read at a time), writing them as it goes: its memory is a part per slice, whatever the period
holds. The pack is the one a single process makes of the same period, byte for byte but for when it was made
(``created_at``; so ``report.html``, ``SHA256SUMS`` and its signature) and the slice count in ``summary.json``
(``shards``). Retention settings are the lowest-numbered slice's reading of them.
"""

from __future__ import annotations

import heapq
import io
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from firehose.codec import decode, encode_line
from firehose.config import Settings
from firehose.connections import destination_opener
from firehose.errors import DataError, ExitCode
from firehose.evidence.job import AuditOptions, AuditResult, audited, coverage_of, key_beside
from firehose.evidence.pack import PackResult, check_outputs, coverage_rows, hash_all
from firehose.evidence.seal import (
    COVERAGE_FIELDS,
    PageRenderer,
    Tally,
    retention_entry,
    seal,
    summary_of,
    whole_or_absent,
    write_tables,
)
from firehose.progress import NO_PROGRESS, Progress
from firehose.reconciliation.checkpoints import RunState, SliceDone, finding_order, slice_identity
from firehose.reconciliation.fanout import run_all_slices, slice_settings
from firehose.reconciliation.job import open_run_state


def audit_identity(options: AuditOptions) -> dict[str, Any]:
    """What makes audit slices parts of one run: the whole period, how coverage is checked, the retention
    required, and how many slices."""
    fingerprint = options.coverage().fingerprint()
    return slice_identity(options.shard, options.sliced_from, fingerprint, require_retention=options.required_days)


@dataclass(frozen=True)
class AuditSlice(SliceDone):
    """One slice's part of a pack, as its checkpoint holds it: a summary like ``summary.json``'s (for this
    slice's events) and, under ``parts``, its coverage rows, findings, manifest lines and retention settings."""

    def report(self) -> dict[str, Any]:
        """The slice's summary (its parts left out: a manifest's lines are no task result)."""
        return {name: value for name, value in self.document.items() if name != "parts"}

    @property
    def counts(self) -> Mapping[str, int]:
        """Coverage totals, as ``summary.json`` has them."""
        return dict(self.document["coverage"])

    @property
    def exit_code(self) -> ExitCode:
        """As the pack's: 1 when coverage or retention fails, else 0."""
        failed = "FAIL" in (self.document["coverage_verdict"], self.document["retention_verdict"])
        return ExitCode.DIFFERENCES if failed else ExitCode.OK


def audit_slice(
    options: AuditOptions,
    settings: Settings,
    run_state: str,
    *,
    credential_id: str | None = None,
    progress: Progress = NO_PROGRESS,
    api_gate: AbstractContextManager[Any] | None = None,
    repairs_from: Path | None = None,
) -> AuditSlice:
    """One slice of a sliced audit (``options.sharded(i, n)``), its part of the pack checkpointed in
    ``run_state`` (a store URL, one folder per run): a slice done before is not checked again; a finished one is
    recorded, never over another's record. ``repairs_from``: a second state database whose record of repairs
    counts too (an executor's worker has a database of its own, and the repairs are in the settings' one)."""
    identity = audit_identity(options)
    assert options.shard is not None
    with open_run_state(run_state, settings, credential_id, kind="audit", create=True) as state:
        earlier = state.done(options.shard, identity)
        if earlier is not None:
            return AuditSlice(earlier, reused=True)
        document = _examine(options, settings, credential_id, progress, api_gate, repairs_from, state)
        return AuditSlice(document, recorded=state.record(options.shard, identity, document))


def _examine(
    options: AuditOptions,
    settings: Settings,
    credential_id: str | None,
    progress: Progress,
    api_gate: AbstractContextManager[Any] | None,
    repairs_from: Path | None,
    state: RunState,
) -> dict[str, Any]:
    """A slice's coverage run and hashing, as ``audit`` does them for a whole period: its manifest lines kept in
    ``state``'s parts as they come, the rest in memory (a slice's coverage rows and findings)."""
    outcome, findings, repaired = coverage_of(options, settings, credential_id=credential_id, progress=progress,
                                              api_gate=api_gate)  # fmt: skip
    if repairs_from is not None and repairs_from != settings.state_file and repairs_from.exists():
        from firehose.state import StateDB

        with StateDB(repairs_from) as other:
            repaired.update(other.repaired(options.start, options.end))
    destinations = audited(options, outcome)
    lines = [ManifestParts(state, d.url()) for d in destinations]
    opener = destination_opener(settings, credential_id)
    hashed = hash_all(destinations, [kept.add for kept in lines], open_store=opener, start=options.start,
                      end=options.end, workers=options.workers, progress=progress, outcome=outcome,
                      older_leads=outcome.older_leads)  # fmt: skip
    retention = [
        retention_entry(d.url(), d.prefix, kept, options.required_days)
        for d, (_, kept) in zip(destinations, hashed, strict=True)
    ]
    coverage = coverage_rows(outcome, repaired)
    urls = [d.url() for d in destinations]
    summary = summary_of(start=options.start, end=options.end, verify=options.verify_label,
                         required_days=options.required_days, coverage=coverage, tallies=[t for t, _ in hashed],
                         retention=retention, destinations=urls)  # fmt: skip
    assert options.shard is not None
    return {
        **summary,
        "shard": {"index": options.shard[0], "of": options.shard[1]},
        "parts": {
            "coverage": coverage,
            "findings": findings,
            "manifest_parts": {url: kept.finish() for url, kept in zip(urls, lines, strict=True)},
            "retention": retention,
        },
    }


def merge_audit(
    run_state: str,
    settings: Settings,
    *,
    out: Path,
    signing_key: Path | None = None,
    shards: int | None = None,
    credential_id: str | None = None,
    page: PageRenderer | None = None,
) -> AuditResult:
    """The one pack of a sliced audit's checkpoints in ``run_state`` (``shards`` of them; None: as many as the
    folder's checkpoints say), written to ``out`` as ``audit`` writes one: a ``UsageError`` naming the slices not
    done yet, and nothing written."""
    key = signing_key or key_beside(out)
    check_outputs(out, key)
    with open_run_state(run_state, settings, credential_id, kind="audit") as state:
        reports, run = state.reports(shards)
        return AuditResult(_merged_pack(out, reports, run, key, page, state))


def _merged_pack(
    out: Path,
    reports: Sequence[Mapping[str, Any]],
    run: Mapping[str, Any],
    key: Path,
    page: PageRenderer | None,
    state: RunState,
) -> PackResult:
    parts = [report["parts"] for report in reports]
    urls = sorted({url for report in reports for url in report["destinations"]})
    # Each destination's settings as the lowest-numbered slice that hashed it read them.
    retention = [next(e for p in parts for e in p["retention"] if e["destination"] == url) for url in urls]
    with whole_or_absent(out) as building:
        created = datetime.now(UTC)
        coverage = _summed_rows(row for p in parts for row in p["coverage"])
        write_tables(building, coverage, sorted((f for p in parts for f in p["findings"]), key=finding_order))
        tallies = []
        with (building / "manifest.ndjson").open("wb") as sink:
            for url in urls:  # each destination's lines in key order, as one process lists them
                tally = Tally()
                kept = (slice_lines(state, p["manifest_parts"].get(url, ()), url) for p in parts)
                for _, raw, line in merged_lines(kept):
                    sink.write(raw)
                    tally.add(line)
                tallies.append(tally)
        start, end = (datetime.fromisoformat(run[name]) for name in ("start", "end"))
        summary = summary_of(start=start, end=end, verify=reports[0]["verify"], required_days=run["require_retention"],
                             coverage=coverage, tallies=tallies, retention=retention, destinations=urls,
                             created_at=created)  # fmt: skip
        summary["shards"] = run["shards"]
        made = seal(building, summary, coverage, retention, key, page)
    return PackResult(out, summary, key if made else None)


PART_BYTES = 1 << 20
"""About how much of a slice's manifest one part holds: the merge holds one part of each slice at a time (64 MiB
for 64 slices, 512 MiB for 512), and a pack of 10^8 objects (43 GB of lines) is about 41,000 parts, a PUT when
made and a GET when merged (about $0.2 each way at S3's list prices)."""

Line = tuple[str, bytes, dict[str, Any]]
"""A manifest line as the merge handles it: its key, its bytes as the slice wrote them, and its fields."""


class ManifestParts:
    """One destination's manifest lines of one slice, kept in the run state as they come (in key order, from
    the destination's hashing thread), in parts of about ``part_bytes``: a slice holds one part of a
    destination's lines at a time, not its whole manifest."""

    def __init__(self, state: RunState, url: str, part_bytes: int | None = None) -> None:
        self._state, self._url, self._part_bytes = state, url, part_bytes or PART_BYTES
        self._buffer = bytearray()
        self._lines = 0
        self._last = ""
        self._parts: list[dict[str, Any]] = []

    def add(self, line: Mapping[str, Any]) -> None:
        key = str(line["key"])
        if key < self._last:  # the merge relies on it: a slice's lines come in key order (manifest_lines)
            raise DataError(f"{self._url}: manifest line {key!r} came after {self._last!r}, out of key order")
        self._last = key
        self._buffer += encode_line(line)
        self._lines += 1
        if len(self._buffer) >= self._part_bytes:
            self._keep()

    def finish(self) -> list[dict[str, Any]]:
        """The parts kept, in key order, for the checkpoint: each its SHA-256, bytes and lines."""
        self._keep()
        return self._parts

    def _keep(self) -> None:
        if self._buffer:
            self._parts.append({**self._state.keep_part(bytes(self._buffer)), "lines": self._lines})
            self._buffer.clear()
            self._lines = 0


def slice_lines(state: RunState, kept: Iterable[Mapping[str, Any]], url: str) -> Iterator[Line]:
    """One slice's manifest lines for ``url`` from the parts ``kept`` names, a part read at a time, each line
    checked to come in key order."""
    last = ""
    for entry in kept:
        for raw in io.BytesIO(state.part(entry)):
            line = decode(raw, where=f"{state.where}: a manifest part of {url}")
            key = str(line["key"])
            if key < last:
                raise DataError(f"{state.where}: a slice's manifest of {url} is out of key order at {key!r}")
            last = key
            yield key, raw, line


def merged_lines(slices: Iterable[Iterator[Line]]) -> Iterator[Line]:
    """Every slice's lines of one destination (each in key order) as one sequence in key order: a k-way merge
    holding a line (and a part) of each slice; lines of equal keys in slice order, as a stable sort leaves them."""
    return heapq.merge(*slices, key=lambda line: line[0])


def _summed_rows(rows: Any) -> list[dict[str, Any]]:
    """Coverage rows of the same (day, destination) added up, in (day, destination) order: every count in a row
    is a sum over events, and each event is in one slice."""
    total: dict[tuple[str, str], Counter[str]] = {}
    for row in rows:
        total.setdefault((row["day"], row["destination"]), Counter()).update(
            {name: row[name] for name in COVERAGE_FIELDS[2:]}
        )
    return [
        {"day": day, "destination": destination, **{name: counts[name] for name in COVERAGE_FIELDS[2:]}}
        for (day, destination), counts in sorted(total.items())
    ]


@dataclass(frozen=True)
class AuditSlices:
    """An audit's slices, for ``run_all_slices``: each worker checks its slice with a state database of its own
    and counts the repairs recorded in the settings' one."""

    options: AuditOptions
    kind: str = "audit"

    def identity(self, index: int, shards: int) -> dict[str, Any]:
        return audit_identity(self.options.sharded(index, shards))

    def run(
        self, index: int, shards: int, settings: Settings, run_state: str, credential_id: str | None, gate: Any
    ) -> bool:
        audit_slice(self.options.sharded(index, shards), slice_settings(settings, index, shards), run_state,
                    credential_id=credential_id, api_gate=gate, repairs_from=settings.state_file)  # fmt: skip
        return True  # a finished slice always keeps its part: errors it met are in the pack, as in one process's


def audit_all_slices(
    options: AuditOptions,
    settings: Settings,
    run_state: str,
    shards: int,
    *,
    workers: int | str,
    credential_id: str | None = None,
    attempts: int = 3,
    api_concurrency: int | None = None,
    progress: Progress = NO_PROGRESS,
    page: PageRenderer | None = None,
) -> AuditResult:
    """Audit every slice of ``options``' period (``shards`` of them) in ``workers`` local processes, or on the Dask
    scheduler at ``workers`` (``tcp://host:port``), each checkpointed in ``run_state``, and write the one pack to
    ``options.out``. Slices done before are not run again; ``api_concurrency`` as for ``reconcile_all_slices``."""
    out = options.pack_folder
    check_outputs(out, options.key_file)  # before the slices run, not after
    run_all_slices(AuditSlices(options), settings, run_state, shards, workers=workers, credential_id=credential_id,
                   attempts=attempts, api_concurrency=api_concurrency, progress=progress)  # fmt: skip
    return merge_audit(run_state, settings, out=out, signing_key=options.key_file, shards=shards,
                       credential_id=credential_id, page=page)  # fmt: skip
