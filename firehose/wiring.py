"""Jobs with the renderers they write through, wired in: a job never imports ``firehose.report``
(architecture.md §3), so what it writes with a renderer is handed one here, for the command line and the
public API alike: the audit pack's ``report.html``, for a pack made in one process or merged from slices."""

from __future__ import annotations

from pathlib import Path

from firehose.config import Settings
from firehose.evidence import job
from firehose.progress import NO_PROGRESS, Progress
from firehose.report.html import render_report


def audit(
    options: job.AuditOptions,
    settings: Settings,
    *,
    credential_id: str | None = None,
    progress: Progress = NO_PROGRESS,
) -> job.AuditResult:
    """``firehose.evidence.job.audit`` with the pack's page (``report.html``, ``firehose.report.html``)."""
    return job.audit(options, settings, credential_id=credential_id, progress=progress, page=render_report)


def merge_audit(
    run_state: str,
    settings: Settings,
    *,
    out: Path,
    signing_key: Path | None = None,
    shards: int | None = None,
    credential_id: str | None = None,
) -> job.AuditResult:
    """``firehose.evidence.slices.merge_audit`` with the pack's page."""
    from firehose.evidence import slices

    return slices.merge_audit(run_state, settings, out=out, signing_key=signing_key, shards=shards,
                              credential_id=credential_id, page=render_report)  # fmt: skip


def audit_all_slices(
    options: job.AuditOptions,
    settings: Settings,
    run_state: str,
    shards: int,
    *,
    workers: int | str,
    credential_id: str | None = None,
    attempts: int = 3,
    api_concurrency: int | None = None,
    progress: Progress = NO_PROGRESS,
) -> job.AuditResult:
    """``firehose.evidence.slices.audit_all_slices`` with the pack's page."""
    from firehose.evidence import slices

    return slices.audit_all_slices(options, settings, run_state, shards, workers=workers, credential_id=credential_id,
                                   attempts=attempts, api_concurrency=api_concurrency, progress=progress,
                                   page=render_report)  # fmt: skip
