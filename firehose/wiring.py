"""Jobs with the renderers they write through, wired in: a job never imports ``firehose.report``
(architecture.md §3), so what it writes with a renderer is handed one here, for the command line and the
public API alike. Today one: the audit pack's ``report.html``."""

from __future__ import annotations

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
