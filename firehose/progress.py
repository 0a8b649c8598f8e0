"""How a job says how far it has got, without knowing who listens: the jobs take a ``Progress`` (the bottom
layer: it imports nothing of firehose) and call it; the command line passes a live bar on a terminal
(``firehose.report.progress``), everyone else gets ``NO_PROGRESS``, which does nothing.

A job starts a task per piece of long work and advances it as items are done::

    task = progress.start("reading s3://lc-archive", total=len(keys))   # total None: counted, no ETA
    try:
        for key in keys:
            ...
            task.advance()          # safe from any thread: reads run on many
    finally:
        task.done()

``expect(n)`` grows a task's total, for work that learns its size as it goes; ``note(text)`` is a stage worth a
line of its own ("checking coverage against the API").
"""

from __future__ import annotations

from typing import Protocol


class Task(Protocol):
    """One piece of long work: items done so far, out of a total when it is known."""

    def advance(self, n: int = 1) -> None:
        """``n`` more items done. Safe to call from several threads at once."""

    def expect(self, n: int) -> None:
        """``n`` more items to do: the total grows (an unknown total becomes ``n``), for work that learns its
        size as it goes (a run's reads, window after window)."""

    def done(self) -> None:
        """The work is over (finished or given up); later calls are ignored."""


class Progress(Protocol):
    """Where a job reports its progress."""

    def start(self, task: str, total: int | None = None) -> Task:
        """A new task named ``task`` (shown as is), of ``total`` items when known."""
        ...

    def note(self, text: str) -> None:
        """A stage of the job, worth a line of its own."""


class _NoTask:
    def advance(self, n: int = 1) -> None:
        pass

    def expect(self, n: int) -> None:
        pass

    def done(self) -> None:
        pass


class _NoProgress:
    """Progress that nobody watches: the default of every job."""

    def start(self, task: str, total: int | None = None) -> Task:
        return _NoTask()

    def note(self, text: str) -> None:
        pass


NO_PROGRESS: Progress = _NoProgress()
