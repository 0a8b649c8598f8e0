"""``firehose.progress.Progress`` for people: live bars on a terminal (rich), or a job's notes as lines.

``LiveProgress`` draws one bar per task on its console (the command line's stderr): the task's name, a bar, the
count done out of the total (``?`` when the total is unknown), the rate, the time left and the time taken. It
is a context manager: the display starts on entering and ends, drawn once more as it stands, on leaving. A
task's ``advance`` may be called from any thread (rich's progress holds a lock; a finished task ignores
later calls).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as Bars
from rich.progress import Task as BarTask
from rich.text import Text

from firehose.progress import NO_PROGRESS, Task


class _Rate(ProgressColumn):
    """Items per second, as a count."""

    def render(self, task: BarTask) -> Text:
        speed = task.finished_speed or task.speed
        if speed is None and task.finished and task.elapsed:
            speed = task.completed / task.elapsed
        return Text("" if speed is None else f"{speed:,.0f}/s", style="progress.data.speed")


class _LiveTask:
    def __init__(self, bars: Bars, task_id: TaskID) -> None:
        self._bars, self._id = bars, task_id
        self._lock = threading.Lock()
        self._done = False

    def advance(self, n: int = 1) -> None:
        with self._lock:
            if not self._done:
                self._bars.advance(self._id, n)

    def expect(self, n: int) -> None:
        with self._lock:
            if not self._done:
                total = next(t for t in self._bars.tasks if t.id == self._id).total
                self._bars.update(self._id, total=(total or 0) + n)

    def done(self) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
            task = next(t for t in self._bars.tasks if t.id == self._id)
            total = task.total if task.total is not None else task.completed
            self._bars.update(self._id, total=total)
            self._bars.stop_task(self._id)


class LiveProgress:
    """Live bars on ``console`` (default: stderr); notes are printed above them after ``prefix``."""

    def __init__(self, console: Console | None = None, *, prefix: str = "") -> None:
        self.prefix = prefix
        self.console = console or Console(stderr=True, highlight=False)
        self._bars = Bars(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _Rate(),
            TimeRemainingColumn(),
            TimeElapsedColumn(),
            console=self.console,
            refresh_per_second=5,
        )

    def __enter__(self) -> LiveProgress:
        self._bars.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._bars.stop()

    def start(self, task: str, total: int | None = None) -> Task:
        return _LiveTask(self._bars, self._bars.add_task(task, total=total))

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """The display stopped for a while (a question asked on the terminal), then drawn again."""
        self._bars.stop()
        try:
            yield
        finally:
            self._bars.start()

    def note(self, text: str) -> None:
        self._bars.console.print(self.prefix + text, markup=False, highlight=False)


class NoteLines:
    """Off a terminal: a job's notes as lines through ``write`` (``firehose audit: hashing s3://...``), tasks
    untold (a log or a cron mail keeps the stages, not a bar)."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write

    def start(self, task: str, total: int | None = None) -> Task:
        return NO_PROGRESS.start(task, total)

    def note(self, text: str) -> None:
        self._write(text)
