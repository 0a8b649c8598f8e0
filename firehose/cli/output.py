"""What the command line writes for people: standard output for bytes (buffered, never closed under a command),
summary lines on stderr (silenced by ``--quiet``), and counts with their nouns."""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO

import click

from firehose.progress import NO_PROGRESS, Progress
from firehose.secret import redact_text


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
_log_format = "text"


def be_quiet() -> None:
    """``--quiet``: from now on ``tell`` writes nothing (errors and problems still go to stderr)."""
    global _quiet
    _quiet = True


def quiet() -> bool:
    return _quiet


def set_log_format(name: str) -> None:
    """``--log-format text|json``: how every line on stderr is written (``log_line``)."""
    global _log_format
    _log_format = name


def log_format() -> str:
    return _log_format


def log_line(message: str, *, level: str = "info", fields: Mapping[str, Any] | None = None,
             created: float | None = None) -> str:  # fmt: skip
    """A line for stderr: the text itself, or with ``--log-format json`` one JSON object (``time``, ``level``,
    ``message``, then ``fields``, which never replace those three), credentials taken out of every string."""
    if _log_format != "json":
        return message
    from datetime import UTC, datetime

    from firehose.report import json_compact

    moment = datetime.fromtimestamp(time.time() if created is None else created, tz=UTC)
    document: dict[str, Any] = {
        "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": level,
        "message": _redacted(message.removeprefix("firehose: ")),
    }
    for name, value in (fields or {}).items():
        document.setdefault(_encodable(str(name)), _redacted(value))
    line = json_compact(document).decode()
    # JSON lets these stand unescaped in a string, but a reader that splits lines as Python's str.splitlines does
    # (or a JavaScript one) would cut the line there: escaped, the line stays one.
    return line.replace("\x85", "\\u0085").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


_JSON_INTEGERS = range(-(2**63), 2**64)
"""The integers a JSON line carries as numbers (orjson's range); any other is written as its digits, a string."""


def _encodable(text: str) -> str:
    """``text`` as JSON can carry it: a file name that is not UTF-8 (its bytes as lone surrogates, ``\\udcff``)
    is written as the text mode writes it, never an encoding error in place of the line."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return _encodable(redact_text(value))
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        return value if value in _JSON_INTEGERS else str(value)
    if isinstance(value, Mapping):
        return {_encodable(str(k)): _redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redacted(v) for v in value]
    return _redacted(str(value))  # a path, a datetime, a caller's own object: as text, never a failed line


def tell(message: str, *, nl: bool = True) -> None:
    """A summary or progress line on stderr, unless ``--quiet``."""
    if not _quiet:
        click.echo(log_line(message) if nl else message, err=True, nl=nl)


def say(message: str, *, level: str = "warning") -> None:
    """A problem or notice on stderr, shown even under ``--quiet``, as ``--log-format`` asks."""
    click.echo(log_line(message, level=level), err=True)


def say_error(message: str) -> None:
    """The one line a failed command ends with (``firehose: error: ...``), as ``--log-format`` asks."""
    click.echo(log_line(message, level="error"), err=True)


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
