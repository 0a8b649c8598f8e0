"""A sliced run's shared state, in the customer's own store (``--run-state s3://bucket/prefix``, ``az://``,
``file://``): one create-only object per finished slice, holding that slice's report, and the one report they
make together (``merge``).

A slice with a checkpoint is done: a rerun of it (a retried array job, a second driver) does nothing more. Two
machines that finish the same slice at once both write with a create-only write (S3 ``If-None-Match: *``,
Azure ``IfMissing``, an exclusive create on disk): one checkpoint stands, never replaced. A slice killed before
its checkpoint loses only itself; its own state database resumes its windows as for any run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from firehose.archive import Store
from firehose.codec import decode, encode_pretty
from firehose.errors import ArchiveNotFound, DataError, UsageError
from firehose.reconciliation.run import ReconcileOptions

SCHEMA = "firehose.reconcile-slice/1"
REPORT_SCHEMA = "firehose.reconcile/1"


def run_identity(options: ReconcileOptions) -> dict[str, Any]:
    """What makes slices parts of one run: the whole window, how it is checked, and how many slices."""
    if options.shard is None or options.sliced_from is None:
        raise UsageError("--run-state keeps the checkpoints of a sliced run: give --shards N and --shard I")
    start, end = options.sliced_from
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "shards": options.shard[1],
        "fingerprint": options.fingerprint(),
    }


class RunState:
    """The checkpoints of one sliced run, under ``prefix`` in ``store`` (a folder of its own: one run per folder)."""

    def __init__(self, store: Store, prefix: str) -> None:
        self.store, self.prefix = store, prefix.rstrip("/")

    def _key(self, index: int, count: int) -> str:
        return f"{self.prefix}/slice-{index:05d}-of-{count:05d}.json".lstrip("/")

    def _read(self, index: int, count: int) -> dict[str, Any] | None:
        key = self._key(index, count)
        try:
            found = decode(self.store.read(key), where=f"{self.store.url}/{key}")
        except ArchiveNotFound:
            return None
        if not isinstance(found, dict) or found.get("schema") != SCHEMA or not isinstance(found.get("report"), dict):
            raise DataError(f"{self.store.url}/{key}: not a firehose slice checkpoint")
        return found

    def done(self, options: ReconcileOptions) -> dict[str, Any] | None:
        """The report this slice's checkpoint holds, if the slice is done; a ``UsageError`` when the folder holds
        a checkpoint of another run for it."""
        identity = run_identity(options)
        assert options.shard is not None
        found = self._read(*options.shard)
        if found is None:
            return None
        if found.get("run") != identity:
            raise UsageError(
                f"--run-state {self.store.url}/{self.prefix}: it holds a checkpoint of another run (another window, "
                "depth or number of slices) for this slice; give each run a folder of its own"
            )
        report: dict[str, Any] = found["report"]
        return report

    def record(self, options: ReconcileOptions, report: Mapping[str, Any]) -> bool:
        """Write this slice's checkpoint, never over one; False when another process wrote it first."""
        identity = run_identity(options)
        assert options.shard is not None
        document = {"schema": SCHEMA, "run": identity, "slice": options.shard[0], "report": dict(report)}
        return self.store.write(self._key(*options.shard), encode_pretty(document), if_absent=True)

    def merge(self, count: int) -> dict[str, Any]:
        """The one report of the run's ``count`` slices, as one run over the whole window writes it; a
        ``UsageError`` naming the slices without a checkpoint, or when they are not of one run."""
        found = [self._read(index, count) for index in range(count)]
        missing = [str(index) for index, checkpoint in enumerate(found) if checkpoint is None]
        if missing:
            shown = ", ".join(missing[:20]) + (f" and {len(missing) - 20} more" if len(missing) > 20 else "")
            raise UsageError(f"--run-state {self.store.url}/{self.prefix}: no checkpoint yet for slice {shown}")
        done = [checkpoint for checkpoint in found if checkpoint is not None]
        if len({repr(sorted(checkpoint["run"].items())) for checkpoint in done}) != 1:
            raise UsageError(f"--run-state {self.store.url}/{self.prefix}: its checkpoints are of different runs")
        return merged([checkpoint["report"] for checkpoint in done], done[0]["run"])


def merged(reports: list[Mapping[str, Any]], run: Mapping[str, Any]) -> dict[str, Any]:
    """Slices' reports as one: counts and requests summed, findings in the order one run lists them (soonest
    expiry first, unknown first of all; then event, destination, verdict)."""
    counts = _summed(report["counts"] for report in reports)
    expiries = [report["earliest_expiry"] for report in reports if report.get("earliest_expiry")]
    findings = sorted(
        (finding for report in reports for finding in report["findings"]),
        key=lambda f: (
            f["expires_at"] is not None,
            f["expires_at"] or "",
            f["event_id"],
            f["destination"],
            f["verdict"],
        ),
    )
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
        "resumed_windows": sum(report["resumed_windows"] for report in reports),
        "shards": run["shards"],
        "findings": findings,
    }


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
