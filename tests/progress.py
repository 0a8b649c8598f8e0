"""A ``firehose.progress.Progress`` that records what a job tells it, for tests."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class RecordedTask:
    name: str
    total: int | None
    count: int = 0
    finished: bool = False
    after_done: int = 0
    """advance() calls after done(): a job that keeps counting a task it ended."""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def advance(self, n: int = 1) -> None:
        with self._lock:
            if self.finished:
                self.after_done += n
            self.count += n

    def expect(self, n: int) -> None:
        with self._lock:
            self.total = (self.total or 0) + n

    def done(self) -> None:
        self.finished = True


@dataclass
class Recorded:
    tasks: list[RecordedTask] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def start(self, task: str, total: int | None = None) -> RecordedTask:
        recorded = RecordedTask(task, total)
        self.tasks.append(recorded)
        return recorded

    def note(self, text: str) -> None:
        self.notes.append(text)

    def named(self, prefix: str) -> list[RecordedTask]:
        return [task for task in self.tasks if task.name.startswith(prefix)]
