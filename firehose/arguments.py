"""What the library takes from a Python caller, tolerantly: a name where a collection of names is expected, a
path or an iterable of lines, a time or epoch seconds. A command line hands these over already shaped; a
caller's ``outcomes="error"`` must mean one outcome, not five letters."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from firehose.errors import UsageError


def names(value: str | Iterable[str] | None, name: str) -> tuple[str, ...]:
    """One name or many, as a tuple; a value that is neither is a ``UsageError`` naming ``name``."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    try:
        return tuple(str(item) for item in value)
    except TypeError:
        raise UsageError(f"{name}: expected a name or a list of names, got {type(value).__name__}") from None


def lines(value: str | Path | Iterable[str] | None, name: str) -> Iterable[str] | None:
    """An id list's lines: a file's (a ``Path``, read lazily; bytes that are not UTF-8 become U+FFFD, so that
    line alone is reported), one id given as a string, or any iterable of lines."""
    if value is None or isinstance(value, Path):
        return None if value is None else _file_lines(value, name)
    if isinstance(value, str):
        return [value]
    if not isinstance(value, Iterable):
        raise UsageError(f"{name}: expected a path or lines, got {type(value).__name__}")
    return value


def _file_lines(path: Path, name: str) -> Iterator[str]:
    try:
        with path.open(errors="replace") as found:
            yield from found
    except OSError as exc:
        raise UsageError(f"{name} {path}: cannot read it ({exc.strerror})") from None


def epoch_seconds(value: Any, name: str) -> int | None:
    """A time as epoch seconds: a ``datetime`` (naive: UTC) or a number; None stays None."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return int((value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp())
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    raise UsageError(f"{name}: expected a datetime or epoch seconds, got {type(value).__name__}")
