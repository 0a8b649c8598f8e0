"""What the command line writes for people: standard output for bytes (buffered, never closed under a command),
summary lines on stderr (silenced by ``--quiet``), and counts with their nouns."""

from __future__ import annotations

import contextlib
import io
import logging
import sys
from collections.abc import Iterator
from typing import BinaryIO

import click

from firehose.progress import NO_PROGRESS, Progress


class _StdoutWriter(io.BufferedWriter):
    """A buffer over the raw standard output that never closes it: dropped, it only flushes (a plain
    ``BufferedWriter`` closed stdout when collected, and the next write failed with "I/O operation on closed
    file")."""

    def close(self) -> None:
        if not self.raw.closed:
            self.flush()


_stdout_writers: dict[int, BinaryIO] = {}


def binary_stdout() -> BinaryIO:
    """Standard output for bytes, buffered even under PYTHONUNBUFFERED=1 (where it is a raw file and every
    row would be a system call: measured at a fifth of a 10,000-row listing's time). The same object on every
    call for the same stdout."""
    stream = sys.stdout.buffer
    if not isinstance(stream, io.RawIOBase):
        return stream
    writer = _stdout_writers.get(id(stream))
    if writer is None or getattr(writer, "raw", None) is not stream:
        writer = _stdout_writers[id(stream)] = _StdoutWriter(stream, buffer_size=1 << 16)
    return writer


def counted(number: int, noun: str) -> str:
    """``1 lead``, ``2 leads``, ``0 leads``: a count with its noun, as a person writes it."""
    return f"{number:,} {noun}" if number == 1 else f"{number:,} {noun}s"


_quiet = False


def be_quiet() -> None:
    """``--quiet``: from now on ``tell`` writes nothing (errors and problems still go to stderr)."""
    global _quiet
    _quiet = True


def tell(message: str, *, nl: bool = True) -> None:
    """A summary or progress line on stderr, unless ``--quiet``."""
    if not _quiet:
        click.echo(message, err=True, nl=nl)


@contextlib.contextmanager
def shown_progress(command: str, *, notes: bool = False) -> Iterator[Progress]:
    """Where a job reports its progress: live bars (``firehose.report.progress``) when stderr is a terminal;
    off one, the job's notes as ``firehose COMMAND: ...`` lines when ``notes`` (audit's stages), else nothing;
    nothing at all under ``--quiet``."""
    if _quiet:
        yield NO_PROGRESS
    elif sys.stderr.isatty():
        from firehose.report.progress import LiveProgress

        with LiveProgress(prefix=f"firehose {command}: ") as bars, _logging_through(sys.stderr):
            yield bars
    elif notes:
        from firehose.report.progress import NoteLines

        yield NoteLines(lambda text: tell(f"firehose {command}: {text}"))
    else:
        yield NO_PROGRESS


def paused(progress: Progress) -> contextlib.AbstractContextManager[None]:
    """Live bars out of the way while the terminal is asked something; anything else needs no pause."""
    from firehose.report.progress import LiveProgress

    return progress.paused() if isinstance(progress, LiveProgress) else contextlib.nullcontext()


@contextlib.contextmanager
def _logging_through(stream: object) -> Iterator[None]:
    """The command line's log handlers write to ``stream`` for a while: the live display's stand-in for stderr
    (set once it has started), which prints each line above the bars instead of through them."""
    handlers = [
        handler
        for name in ("firehose", "httpx")
        for handler in logging.getLogger(name).handlers
        if getattr(handler, "firehose_cli", False) and isinstance(handler, logging.StreamHandler)
    ]
    before = [handler.setStream(stream) for handler in handlers]
    try:
        yield
    finally:
        for handler, old in zip(handlers, before, strict=True):
            if old is not None:
                handler.setStream(old)
