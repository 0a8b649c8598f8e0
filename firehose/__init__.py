"""firehose: read, reconcile, repair and replay LeadConduit firehose archives on S3 and Azure Blob.

The public API, one call per job, each returning a result with its report and exit code::

    import firehose

    settings = firehose.Settings.load()  # flags' names as keywords: url=..., state_file=...
    options = firehose.ReconcileOptions(start=..., end=..., repair=True)
    result = firehose.reconcile(options, settings)
    result.counts, result.at_risk, result.report(), result.exit_code

Names are loaded on first use, so ``import firehose`` stays cheap (the command line starts from it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_PUBLIC = {
    "Settings": "firehose.config",
    "open_store": "firehose.connections",
    "events": "firehose.feed",
    "EventQuery": "firehose.api",
    "ReconcileOptions": "firehose.reconciliation.run",
    "ReconcileResult": "firehose.reconciliation.job",
    "reconcile": "firehose.reconciliation.job",
    "reconcile_slice": "firehose.reconciliation.job",
    "merge_slices": "firehose.reconciliation.job",
    "reconcile_all_slices": "firehose.reconciliation.fanout",
    "parse_executor": "firehose.reconciliation.fanout",
    "SlicedReport": "firehose.reconciliation.job",
    "LocateResult": "firehose.whereabouts",
    "locate": "firehose.whereabouts",
    "AuditOptions": "firehose.evidence.job",
    "AuditResult": "firehose.evidence.job",
    "audit": "firehose.wiring",
    "verify_pack": "firehose.evidence.job",
    "audit_slice": "firehose.evidence.slices",
    "AuditSlice": "firehose.evidence.slices",
    "merge_audit": "firehose.wiring",
    "audit_all_slices": "firehose.wiring",
    "Verification": "firehose.evidence.verify",
    "ReplayOptions": "firehose.replaying.plan",
    "ReplayResult": "firehose.replaying.job",
    "LeadResult": "firehose.replaying.plan",
    "replay": "firehose.replaying.job",
    "Target": "firehose.replaying.request",
    "Edits": "firehose.replaying.request",
    "Selection": "firehose.replaying.selection",
    "list_archive": "firehose.archive.browse",
    "ArchiveList": "firehose.archive.browse",
    "read_archive": "firehose.archive.browse",
    "Unreadable": "firehose.archive.browse",
    "past_runs": "firehose.history",
    "History": "firehose.history",
    "replay_ledger": "firehose.history",
    "WatchOptions": "firehose.watching.options",
    "WatchResult": "firehose.watching.job",
    "watch": "firehose.watching.job",
    "Finding": "firehose.findings",
    "Verdict": "firehose.findings",
    "Destination": "firehose.event",
    "ExitCode": "firehose.errors",
    "FirehoseError": "firehose.errors",
}
"""Each public name and the module it lives in."""

__all__ = [
    "ArchiveList",
    "AuditOptions",
    "AuditResult",
    "AuditSlice",
    "Destination",
    "Edits",
    "EventQuery",
    "ExitCode",
    "Finding",
    "FirehoseError",
    "History",
    "LeadResult",
    "LocateResult",
    "ReconcileOptions",
    "ReconcileResult",
    "ReplayOptions",
    "ReplayResult",
    "Selection",
    "Settings",
    "SlicedReport",
    "Target",
    "Unreadable",
    "Verdict",
    "Verification",
    "WatchOptions",
    "WatchResult",
    "__version__",
    "audit",
    "audit_all_slices",
    "audit_slice",
    "events",
    "list_archive",
    "locate",
    "merge_audit",
    "merge_slices",
    "open_store",
    "parse_executor",
    "past_runs",
    "read_archive",
    "reconcile",
    "reconcile_all_slices",
    "reconcile_slice",
    "replay",
    "replay_ledger",
    "verify_pack",
    "watch",
]

if TYPE_CHECKING:
    from firehose.api import EventQuery
    from firehose.archive.browse import ArchiveList, Unreadable, list_archive, read_archive
    from firehose.config import Settings
    from firehose.connections import open_store
    from firehose.errors import ExitCode, FirehoseError
    from firehose.event import Destination
    from firehose.evidence.job import AuditOptions, AuditResult, verify_pack
    from firehose.evidence.slices import AuditSlice, audit_slice
    from firehose.evidence.verify import Verification
    from firehose.feed import events
    from firehose.findings import Finding, Verdict
    from firehose.history import History, past_runs, replay_ledger
    from firehose.reconciliation.fanout import parse_executor, reconcile_all_slices
    from firehose.reconciliation.job import ReconcileResult, SlicedReport, merge_slices, reconcile, reconcile_slice
    from firehose.reconciliation.run import ReconcileOptions
    from firehose.replaying.job import ReplayResult, replay
    from firehose.replaying.plan import LeadResult, ReplayOptions
    from firehose.replaying.request import Edits, Target
    from firehose.replaying.selection import Selection
    from firehose.watching.job import WatchResult, watch
    from firehose.watching.options import WatchOptions
    from firehose.whereabouts import LocateResult, locate
    from firehose.wiring import audit, audit_all_slices, merge_audit


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'firehose' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access is a plain lookup
    return value
