"""The audit jobs as library calls: ``audit(options, settings)`` checks a period's coverage against the API (a
full reconcile run, in the same state database), hashes every archived object and writes a signed pack;
``verify_pack(pack, settings)`` checks a pack later against the archive as it is, without the API."""

from __future__ import annotations

from collections import Counter
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from firehose.archive.base import IN_FLIGHT
from firehose.config import Settings
from firehose.connections import destination_opener
from firehose.errors import DataError, ExitCode, UsageError
from firehose.event import Destination
from firehose.evidence.pack import PackResult, check_outputs, write_pack
from firehose.evidence.seal import PageRenderer
from firehose.evidence.verify import Verification, check_pack
from firehose.findings import Finding
from firehose.progress import NO_PROGRESS, Progress
from firehose.reconciliation.job import run_and_collect
from firehose.reconciliation.run import Outcome, ReconcileOptions


@dataclass(frozen=True)
class AuditOptions:
    """What to audit and where the pack goes."""

    start: datetime
    end: datetime
    out: Path | None = None
    """A new folder for the pack (refused if it holds files); a slice (``sharded``) writes no pack, and needs none."""
    signing_key: Path | None = None
    """The Ed25519 private key (PEM) to sign with, made if absent; default ``<out>.signing-key.pem``."""
    required_days: int | None = None
    """Judge retention settings against this many days (None: not judged)."""
    verify: str = "presence"  # presence | content | sample
    sample_percent: float = 0.0
    archive: Destination | None = None
    """Audit this one destination instead of each event's own."""
    include_pii: bool = False
    """Keep the differing values of differing events in findings.ndjson (lead data)."""
    workers: int = IN_FLIGHT
    shard: tuple[int, int] | None = None
    """``(index, count)`` when this audit is one slice of a larger window (``sharded``)."""
    sliced_from: tuple[datetime, datetime] | None = None
    """The whole window a slice was cut from: what its checkpoint belongs to."""

    @property
    def key_file(self) -> Path:
        return self.signing_key or key_beside(self.pack_folder)

    @property
    def pack_folder(self) -> Path:
        if self.out is None:
            raise UsageError("an audit pack needs a folder to go into: give --out DIR")
        return self.out

    def coverage(self) -> ReconcileOptions:
        """The reconcile run that checks this audit's coverage: every window re-examined (``full``)."""
        return ReconcileOptions(
            start=self.start,
            end=self.end,
            verify=self.verify,
            sample_percent=self.sample_percent,
            archive=self.archive,
            workers=self.workers,
            full=True,
            include_pii=self.include_pii,
        )

    def sharded(self, index: int, count: int) -> AuditOptions:
        """Slice ``index`` of ``count`` (0-based) of this period, cut exactly as reconcile cuts a window
        (``ReconcileOptions.sharded``: by event-id seconds, each event in one slice)."""
        part = self.coverage().sharded(index, count)
        return replace(self, start=part.start, end=part.end, shard=(index, count), sliced_from=(self.start, self.end))

    @property
    def verify_label(self) -> str:
        return f"sample:{self.sample_percent:g}" if self.verify == "sample" else self.verify


def key_beside(out: Path) -> Path:
    """Where a pack's signing key is made when none is named: beside the pack, never inside it."""
    return out.with_name(out.name + ".signing-key.pem")


@dataclass(frozen=True)
class AuditResult:
    """A written pack: its folder, its summary (``summary.json``: schema ``firehose.audit/1``), and the signing
    key if this run made it."""

    pack: PackResult

    @property
    def out(self) -> Path:
        return self.pack.out

    @property
    def summary(self) -> dict[str, Any]:
        return self.pack.summary

    @property
    def key_created(self) -> Path | None:
        return self.pack.key_created

    def report(self) -> dict[str, Any]:
        """The versioned report: the pack's summary."""
        return self.summary

    @property
    def exit_code(self) -> ExitCode:
        """1 when coverage or retention fails, else 0."""
        failed = self.summary["coverage_verdict"] == "FAIL" or self.summary["retention_verdict"] == "FAIL"
        return ExitCode.DIFFERENCES if failed else ExitCode.OK


def audit(
    options: AuditOptions,
    settings: Settings,
    *,
    credential_id: str | None = None,
    progress: Progress = NO_PROGRESS,
    page: PageRenderer | None = None,
) -> AuditResult:
    """Check the period's coverage against the API, hash every archived object, and write the signed pack.

    The outputs are checked before anything is read (the pack folder new, the key's folder writable). The
    coverage run holds the state database's run lock, as a reconcile does, and counts every repair any run made
    for the period. ``progress`` gets a note at each stage and a task for the windows and for each destination
    hashed. ``page`` renders ``report.html`` (``firehose.audit`` passes ``firehose.report.html.render_report``;
    without one the pack has no page).
    """
    if options.shard is not None:
        raise UsageError("a slice of an audit is checkpointed, not packed: use audit_slice, then merge_audit")
    check_outputs(options.pack_folder, options.key_file)  # before the long coverage run, not after it
    outcome, findings, repaired = coverage_of(options, settings, credential_id=credential_id, progress=progress)
    pack = write_pack(
        options.pack_folder,
        start=options.start,
        end=options.end,
        outcome=outcome,
        repaired_before=repaired,
        findings=findings,
        open_store=destination_opener(settings, credential_id),
        destinations=audited(options, outcome),
        required_days=options.required_days,
        verify=options.verify_label,
        signing_key=options.key_file,
        workers=options.workers,
        progress=progress,
        older_leads=outcome.older_leads,
        page=page,
    )
    return AuditResult(pack)


def coverage_of(
    options: AuditOptions,
    settings: Settings,
    *,
    credential_id: str | None,
    progress: Progress,
    api_gate: AbstractContextManager[Any] | None = None,
) -> tuple[Outcome, list[dict[str, Any]], Counter[tuple[str, str]]]:
    """The period's coverage run (holding the state database's run lock, as a reconcile does): what it found,
    its findings as the pack's lines, and every repair any run made for the period, per (day, destination)."""
    repaired: Counter[tuple[str, str]] = Counter()

    def read_repairs(state: Any) -> None:
        repaired.update(state.repaired(options.start, options.end))

    outcome, findings = run_and_collect(
        options.coverage(),
        settings,
        credential_id=credential_id,
        holder="firehose audit",
        also=read_repairs,
        announce=lambda: progress.note("checking coverage against the API"),
        progress=progress,
        api_gate=api_gate,
    )
    return outcome, [_finding_line(f, options.include_pii) for f in findings], repaired


def audited(options: AuditOptions, outcome: Outcome) -> list[Destination]:
    """The destinations whose objects the manifest lists: ``archive``, or those coverage checked, by URL."""
    return [options.archive] if options.archive else sorted(outcome.destinations.values(), key=lambda d: d.url())


def _finding_line(finding: Finding, include_pii: bool) -> dict[str, Any]:
    """A finding as a line of the pack's findings.ndjson."""
    return {
        "verdict": finding.verdict.value,
        "event_id": finding.event_id,
        "lead_id": finding.lead_id,
        "type": finding.type,
        "destination": finding.destination,
        "key": finding.key,
        "expires_at": finding.expires_at.isoformat() if finding.expires_at else None,
        "reason": finding.reason,
        "fields": list(finding.fields),
        **({"values": finding.values} if include_pii and finding.values is not None else {}),
    }


def verify_pack(
    pack: Path | str,
    settings: Settings,
    *,
    trusted_key: bytes | Path | str | None = None,
    credential_id: str | None = None,
    workers: int = IN_FLIGHT,
    progress: Progress = NO_PROGRESS,
) -> Verification:
    """Check a pack: its signature (against ``trusted_key``, a PEM public key, when given; else the pack's own),
    every file's SHA-256, and every object its manifest lists against the stores now. Needs no API access.
    ``progress`` gets one task, the manifest's lines checked. A ``trusted_key`` given as a file is read and
    checked first: one that is no Ed25519 public key is a ``UsageError`` naming it, before any object is read."""
    if isinstance(trusted_key, Path | str):
        trusted_key = _trusted(Path(trusted_key))
    opener = destination_opener(settings, credential_id)
    return check_pack(Path(pack), opener, trusted_key=trusted_key, workers=workers, progress=progress)


def _trusted(path: Path) -> bytes:
    from firehose.signing import fingerprint

    try:
        key = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"--public-key {path}: cannot read it ({exc.strerror})") from None
    try:
        fingerprint(key)
    except DataError:
        raise UsageError(f"--public-key {path}: not a PEM Ed25519 public key") from None
    return key
