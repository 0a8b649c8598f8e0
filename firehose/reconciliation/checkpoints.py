"""A sliced run's shared state, in the customer's own store (``--run-state s3://bucket/prefix``, ``az://``,
``file://``): one create-only object per finished slice, holding that slice's report, and the one report they
make together (``merge``).

A slice with a checkpoint is done: a rerun of it (a retried array job, a second driver) does nothing more. Two
machines that finish the same slice at once both write with a create-only write (S3 ``If-None-Match: *``,
Azure ``IfMissing``, an exclusive create on disk): one checkpoint stands, never replaced. A slice killed before
its checkpoint loses only itself; its own state database resumes its windows as for any run.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from firehose.archive import Store
from firehose.codec import decode, encode, encode_pretty
from firehose.errors import ArchiveNotFound, DataError, UsageError
from firehose.reconciliation.lags import lag_report, merged_lags
from firehose.reconciliation.run import ReconcileOptions

SCHEMA = "firehose.reconcile-slice/1"
REPORT_SCHEMA = "firehose.reconcile/1"
CHECKPOINT = re.compile(r"(?P<kind>[a-z]+-)?slice-(?P<index>\d{5})-of-(?P<count>\d{5})\.json")
"""A checkpoint's name: ``slice-00007-of-00064.json`` for reconcile (as it always was), ``audit-slice-…`` for an
audit, so that a run's slice count can be read from the folder."""
PARTS = "parts"
"""The run folder's subfolder of parts: what a slice keeps beside its checkpoint, too large to hold in it (an
audit slice's manifest lines), each named by its SHA-256."""


def run_identity(options: ReconcileOptions) -> dict[str, Any]:
    """What makes reconcile slices parts of one run: the whole window, how it is checked, how many slices."""
    return slice_identity(options.shard, options.sliced_from, options.fingerprint())


def slice_identity(
    shard: tuple[int, int] | None, sliced_from: tuple[datetime, datetime] | None, fingerprint: str, **more: Any
) -> dict[str, Any]:
    """A sliced run's identity, which every slice's checkpoint must carry: the whole window, how many slices, the
    fingerprint of what is checked and how (and ``more`` a job adds)."""
    if shard is None or sliced_from is None:
        raise UsageError("--run-state keeps the checkpoints of a sliced run: give --shards N and --shard I")
    start, end = sliced_from
    return {"start": start.isoformat(), "end": end.isoformat(), "shards": shard[1], "fingerprint": fingerprint, **more}


@dataclass(frozen=True)
class SliceDone:
    """A slice's report as its checkpoint holds it (or the report of them all, merged)."""

    document: Mapping[str, Any]
    recorded: bool = False
    """This process wrote the slice's checkpoint (False: it was there already, or another process won)."""
    reused: bool = False
    """The slice had a checkpoint already: nothing was checked again."""


class RunState:
    """The checkpoints of one sliced run, under ``prefix`` in ``store`` (a folder of its own: one run per folder).

    ``kind`` is the job the slices are of (``reconcile`` or ``audit``): each has its own checkpoint schema and
    names, so one job's checkpoint is never taken for another's. The checkpoint holds the slice's report as the
    job made it; merging the reports is the job's own (``merged`` here for reconcile)."""

    def __init__(self, store: Store, prefix: str, kind: str = "reconcile") -> None:
        self.store, self.prefix, self.kind = store, prefix.rstrip("/"), kind
        self.schema = f"firehose.{kind}-slice/1"

    @property
    def where(self) -> str:
        return f"{self.store.url}/{self.prefix}".rstrip("/")

    @property
    def _names_start(self) -> str:
        """How every checkpoint name of this kind starts."""
        return ("" if self.kind == "reconcile" else f"{self.kind}-") + "slice-"

    def _name(self, index: int, count: int) -> str:
        return f"{self._names_start}{index:05d}-of-{count:05d}.json"

    def _key(self, index: int, count: int) -> str:
        return f"{self.prefix}/{self._name(index, count)}".lstrip("/")

    def _read(self, index: int, count: int) -> dict[str, Any] | None:
        key = self._key(index, count)
        try:
            found = decode(self.store.read(key), where=f"{self.store.url}/{key}")
        except ArchiveNotFound:
            return None
        valid = isinstance(found, dict) and found.get("schema") == self.schema and isinstance(found.get("report"), dict)
        if not valid:
            raise DataError(f"{self.store.url}/{key}: not a firehose {self.kind} slice checkpoint")
        return found  # type: ignore[no-any-return]  # checked just above

    def done(self, shard: tuple[int, int], identity: Mapping[str, Any]) -> dict[str, Any] | None:
        """The report slice ``shard`` (index, count)'s checkpoint holds, if the slice is done; a ``UsageError`` when
        the folder holds a checkpoint of another run for it."""
        found = self._read(*shard)
        if found is None:
            return None
        if found.get("run") != identity:
            raise UsageError(
                f"--run-state {self.where}: it holds a checkpoint of another run (another window, depth or number of "
                "slices) for this slice; give each run a folder of its own"
            )
        report: dict[str, Any] = found["report"]
        return report

    def record(self, shard: tuple[int, int], identity: Mapping[str, Any], report: Mapping[str, Any]) -> bool:
        """Write this slice's checkpoint, never over one; False when another process wrote it first."""
        document = {"schema": self.schema, "run": dict(identity), "slice": shard[0], "report": dict(report)}
        # An audit's checkpoint holds its manifest lines (thousands): compact, not indented.
        body = encode_pretty(document) if self.kind == "reconcile" else encode(document)
        return self.store.write(self._key(*shard), body, if_absent=True)

    def keep_part(self, body: bytes) -> dict[str, Any]:
        """Keep ``body`` under the run's ``parts/``, create-only and named by its SHA-256 (a slice run twice, or
        by two machines at once, writes the same part once), before the checkpoint that names it: the entry the
        checkpoint holds for it."""
        digest = hashlib.sha256(body).hexdigest()
        self.store.write(self._part_key(digest), body, if_absent=True, content_type="application/x-ndjson")
        return {"sha256": digest, "bytes": len(body)}

    def part(self, entry: Mapping[str, Any]) -> bytes:
        """A part a checkpoint names (``keep_part``'s entry), checked against its SHA-256: a part that is gone
        or not what was written is a ``DataError`` naming it, never part of a pack."""
        key = self._part_key(str(entry["sha256"]))
        try:
            body = self.store.read(key)
        except ArchiveNotFound:
            raise DataError(f"{self.store.url}/{key}: a part a checkpoint names is gone") from None
        if hashlib.sha256(body).hexdigest() != entry["sha256"]:
            raise DataError(f"{self.store.url}/{key}: not the part its checkpoint names (its SHA-256 differs)")
        return body

    def _part_key(self, digest: str) -> str:
        return f"{self.prefix}/{PARTS}/{digest}.ndjson".lstrip("/")

    def count(self) -> int:
        """How many slices the run in this folder has, from its checkpoints' names (``merge`` without
        ``--shards``); a ``UsageError`` when there is none, or they disagree."""
        folder = f"{self.prefix}/" if self.prefix else ""
        counts = set()
        try:
            # Only names this kind's checkpoints may have: not the parts (thousands at 10^8 events, on their own).
            listed = list(self.store.list(folder + self._names_start))
        except ArchiveNotFound:  # a folder on disk nobody made yet
            listed = []
        for info in listed:
            name = CHECKPOINT.fullmatch(info.key[len(folder) :])  # this folder's own, not a folder below it
            if name and (name["kind"] or "reconcile-") == f"{self.kind}-":
                counts.add(int(name["count"]))
        if not counts:
            raise UsageError(f"--run-state {self.where}: no {self.kind} slice has a checkpoint there yet")
        if len(counts) > 1:
            raise UsageError(f"--run-state {self.where}: it holds checkpoints of runs cut {sorted(counts)} ways")
        return counts.pop()

    def reports(self, count: int | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Every slice's report, in slice order, and the run they are of; a ``UsageError`` naming the slices
        without a checkpoint, or when they are not of one run. ``count`` None: read from the folder."""
        count = self.count() if count is None else count
        found = [self._read(index, count) for index in range(count)]
        missing = [index for index, checkpoint in enumerate(found) if checkpoint is None]
        if missing:
            raise UsageError(f"--run-state {self.where}: no checkpoint yet for {named_slices(missing)} of {count}")
        done = [checkpoint for checkpoint in found if checkpoint is not None]
        if len({repr(sorted(checkpoint["run"].items())) for checkpoint in done}) != 1:
            raise UsageError(f"--run-state {self.where}: its checkpoints are of different runs")
        return [checkpoint["report"] for checkpoint in done], done[0]["run"]

    def merge(self, count: int | None = None) -> dict[str, Any]:
        """The one reconcile report of the run's slices, as one run over the whole window writes it."""
        reports, run = self.reports(count)
        return merged(reports, run)


def named_slices(indexes: list[int]) -> str:
    """``slice 3``, ``slices 0, 4, 5``, at most 20 named: for messages."""
    shown = ", ".join(map(str, indexes[:20])) + (f" and {len(indexes) - 20} more" if len(indexes) > 20 else "")
    return ("slice " if len(indexes) == 1 else "slices ") + shown


def merged(reports: Sequence[Mapping[str, Any]], run: Mapping[str, Any]) -> dict[str, Any]:
    """Slices' reports as one: counts and requests summed, findings in the order one run lists them (soonest
    expiry first, unknown first of all; then event, destination, verdict)."""
    counts = _summed(report["counts"] for report in reports)
    expiries = [report["earliest_expiry"] for report in reports if report.get("earliest_expiry")]
    findings = sorted((finding for report in reports for finding in report["findings"]), key=finding_order)
    first = reports[0]
    return {
        "schema": REPORT_SCHEMA,
        "window": {"start": run["start"], "end": run["end"]},
        "verify": first["verify"],
        "repair": first["repair"],
        "counts": counts,
        "at_risk": sum(report["at_risk"] for report in reports),
        "earliest_expiry": min(expiries) if expiries else None,
        "by_destination": _nested(report["by_destination"] for report in reports),
        "by_day": dict(sorted(_nested(report["by_day"] for report in reports).items())),
        "requests": dict(sorted(_nested(report["requests"] for report in reports).items())),
        # Histograms add up; percentiles do not: the merged percentiles are those of the summed histograms.
        "delivery_lag": lag_report(merged_lags(report.get("delivery_lag", {}) for report in reports)),
        "resumed_windows": sum(report["resumed_windows"] for report in reports),
        "shards": run["shards"],
        "findings": findings,
    }


def finding_order(finding: Mapping[str, Any]) -> tuple[bool, str, str, str, str]:
    """Where a finding stands in a report, as the state database lists a run's (soonest expiry first, unknown
    first of all; then event, destination, verdict): slices' findings merged read as one run's."""
    expires = finding["expires_at"]
    return (expires is not None, expires or "", finding["event_id"], finding["destination"], finding["verdict"])


def _summed(parts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for part in parts:
        total.update(part)
    return dict(total)


def _nested(parts: Iterable[Mapping[str, Mapping[str, int]]]) -> dict[str, dict[str, int]]:
    total: dict[str, Counter[str]] = {}
    for part in parts:
        for name, counts in part.items():
            total.setdefault(name, Counter()).update(counts)
    return {name: dict(counts) for name, counts in total.items()}
