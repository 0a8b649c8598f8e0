"""What the state database remembers, as library calls: ``past_runs`` (reconcile and audit runs, most recent first)
and ``replay_ledger`` (each source event replayed and what became of it). Each is a ``with`` block whose rows are
report rows; ``exists`` says whether there is a state database at all (none yet is an empty history, not an
error).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from firehose.config import Settings
from firehose.errors import UsageError
from firehose.secret import redact_url

if TYPE_CHECKING:  # the state database (sqlite3) is loaded when a listing opens it, not at start
    from firehose.state import LedgerEntry, RunSummary, StateDB

RUN_FIELDS = ("run", "started_at", "verify", "repair", "windows", "from", "to", "counts", "repairs")
LEDGER_FIELDS = (
    "event_id", "status", "lead_id", "flow_id", "target", "attempts", "http_status", "original_outcome",
    "new_outcome", "new_lead_id", "reason", "updated_at",
)  # fmt: skip
LEDGER_STATUSES = ("sent", "failed", "unknown", "sending", "skipped")


class History:
    """Rows read from the state database, which is opened on entering (before anything is written: one that
    cannot be read is the caller's one error, not a half-written listing) and closed on leaving."""

    RUN_FIELDS = RUN_FIELDS
    LEDGER_FIELDS = LEDGER_FIELDS
    LEDGER_STATUSES = LEDGER_STATUSES

    def __init__(self, path: Path, rows: Callable[[StateDB], Iterator[dict[str, Any]]]) -> None:
        from firehose.state import no_database_yet

        self.path = path
        self.exists = not no_database_yet(path)
        self._rows = rows
        self._stack = contextlib.ExitStack()
        self._state: StateDB | None = None

    def __enter__(self) -> History:
        from firehose.state import StateDB

        if self.exists:
            self._state = self._stack.enter_context(StateDB(self.path))
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self._state is not None:
            yield from self._rows(self._state)
        elif self.exists:  # iterated outside a with block: opened for this iteration alone
            from firehose.state import StateDB

            with StateDB(self.path) as state:
                yield from self._rows(state)


def past_runs(settings: Settings) -> History:
    """The reconcile and audit runs ``settings.state_file`` remembers, most recent first: what each checked, its
    windows, their counts summed, and the repairs it wrote."""
    return History(settings.state_file, lambda state: (run_row(run) for run in state.history()))


def replay_ledger(settings: Settings, status: str | None = None) -> History:
    """The replay ledger of ``settings.state_file``, most recently changed first (only ``status``, if given);
    targets with their credentials hidden."""
    if status is not None and status not in LEDGER_STATUSES:
        raise UsageError(f"--status {status!r} is not one of {', '.join(LEDGER_STATUSES)}")
    from firehose.state import ReplayLedger

    return History(settings.state_file, lambda state: map(ledger_row, ReplayLedger(state).entries(status)))


def run_row(run: RunSummary) -> dict[str, Any]:
    arguments = run.arguments if isinstance(run.arguments, dict) else {}  # as stored: each value as text
    verify = str(arguments.get("verify", ""))
    if verify == "sample":
        verify = f"sample:{float(arguments.get('sample_percent') or 0):g}"
    return {
        "run": run.run_id,
        "started_at": run.started_at,
        "verify": verify,
        "repair": str(arguments.get("repair")) == "True",
        "windows": run.windows,
        "from": run.first_window,
        "to": run.last_window_end,
        "counts": dict(sorted(run.counts.items())),
        "repairs": run.repairs,
    }


def ledger_row(entry: LedgerEntry) -> dict[str, Any]:
    row = {name: getattr(entry, name) for name in LEDGER_FIELDS}
    row["target"] = redact_url(entry.target) if entry.target else entry.target
    return row
