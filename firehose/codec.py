"""The only module that uses orjson: JSON in and out, NDJSON lines, canonical form, and the records an archived
object holds."""

from __future__ import annotations

import gzip
import itertools
import re
import zlib
from collections.abc import Iterator
from typing import Any

import orjson

from firehose.errors import DataError


def decode(data: bytes | str, *, where: str = "input") -> Any:
    """Parse one JSON document; ``where`` names the thing at fault in the error (a URL, a key)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DataError(f"{where}: not valid JSON ({exc})") from exc


def encode(value: Any) -> bytes:
    """Compact JSON bytes, keys in their given order."""
    return _dumps(value, 0)


def encode_line(value: Any) -> bytes:
    """One NDJSON line: compact JSON followed by a newline."""
    return _dumps(value, orjson.OPT_APPEND_NEWLINE)


def encode_pretty(value: Any) -> bytes:
    """Indented JSON with sorted keys, for people to read."""
    return _dumps(value, orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE)


def canonical(value: Any) -> bytes:
    """A stable byte form (sorted keys, compact): documents equal as JSON give equal bytes, whatever their key
    order and whitespace."""
    return _dumps(value, orjson.OPT_SORT_KEYS)


def preview(value: Any, limit: int = 120) -> str:
    """The start of a value as JSON, for a message (``str()`` of a list nested 1,000 deep recursed too far)."""
    try:
        return encode(value)[:limit].decode("utf-8", "replace")
    except TypeError:  # not JSON at all (a caller's own object)
        return type(value).__name__


def _dumps(value: Any, option: int) -> bytes:
    """orjson's bytes; for a document nested deeper than orjson writes (255 levels, though it reads 1,024), the
    same JSON from ``_dumps_deep``. An event LeadConduit served or a firehose stored is never refused for
    being deep: it is printed, compared and repaired like any other."""
    try:
        return orjson.dumps(value, option=option)
    except orjson.JSONEncodeError as exc:
        if "recursion" not in str(exc).lower():
            raise
    text = _dumps_deep(value, sort_keys=bool(option & orjson.OPT_SORT_KEYS), indent=bool(option & orjson.OPT_INDENT_2))
    return text + b"\n" if option & orjson.OPT_APPEND_NEWLINE else text


def _dumps_deep(value: Any, *, sort_keys: bool, indent: bool) -> bytes:
    """JSON by an explicit stack instead of recursion, so depth costs memory, not stack. Slower than orjson by
    far; used only past orjson's depth. Leaves (strings, numbers, ...) are orjson's own, so the bytes are
    orjson's (``OPT_INDENT_2``'s layout when ``indent``)."""
    parts: list[bytes] = []
    todo: list[tuple[bool, Any, int]] = [(False, value, 0)]  # (literal bytes?, value or bytes, depth)
    colon = b": " if indent else b":"

    def gap(depth: int) -> bytes:
        return b"\n" + b"  " * depth if indent else b""

    while todo:
        literal, item, depth = todo.pop()
        if literal:
            parts.append(item)
        elif isinstance(item, dict):
            if not item:
                parts.append(b"{}")
                continue
            keys = sorted(item) if sort_keys else list(item)
            todo.append((True, gap(depth) + b"}", 0))
            for index in range(len(keys) - 1, -1, -1):
                key = keys[index]
                if not isinstance(key, str):
                    raise TypeError(f"a JSON object key must be a string, got {type(key).__name__}")
                todo.append((False, item[key], depth + 1))
                todo.append((True, (b"{" if index == 0 else b",") + gap(depth + 1) + orjson.dumps(key) + colon, 0))
        elif isinstance(item, list | tuple):
            if not item:
                parts.append(b"[]")
                continue
            todo.append((True, gap(depth) + b"]", 0))
            for index in range(len(item) - 1, -1, -1):
                todo.append((False, item[index], depth + 1))
                todo.append((True, (b"[" if index == 0 else b",") + gap(depth + 1), 0))
        else:
            parts.append(orjson.dumps(item))
    return b"".join(parts)


GZIP_MAGIC = b"\x1f\x8b"


def records(data: bytes, *, where: str) -> list[Any]:
    """The JSON records stored in one archived object: one document, a JSON array of them, or NDJSON;
    gzip-compressed or not (the firehose layout's format is NOT DOCUMENTED, facts.md §1.3).

    Raises ``DataError`` naming ``where`` (the object's URL) and the reason when nothing parses.
    """
    return list(iter_records(data, where=where))


_NOT_SPACE = re.compile(rb"[^ \t\r\n]")
"""JSON's whitespace is these four; a line with nothing else is blank."""


def iter_records(data: bytes, *, where: str) -> Iterator[Any]:
    """``records`` one at a time, for a caller that prints each and lets it go: an NDJSON object is parsed a
    line at a time from slices of the one buffer (no copy of its lines: a 200 MB object took 4.6 times its size
    to print, 1.3 times now), and the records of a document are released as they are taken. Raises
    ``DataError`` at the first line that does not parse, after the records before it."""
    if data[:2] == GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{where}: gzip data is corrupt ({exc})") from exc
    lines = _lines(data)
    first, second = next(lines, None), next(lines, None)
    if first is None:
        raise DataError(f"{where}: empty object")
    if second is not None:
        # NDJSON when the first line is a whole document of its own (a document spanning lines is not); tried
        # before the whole object, which for NDJSON would only fail after orjson copied it all.
        try:
            head = orjson.loads(first[1])
        except orjson.JSONDecodeError:
            pass
        else:
            yield head
            yield from _ndjson(itertools.chain((second,), lines), where)
            return
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if second is not None:
            raise DataError(f"{where}: NDJSON line 1 is not valid JSON ({exc})") from exc
        raise DataError(f"{where}: not valid JSON ({exc})") from exc
    if not isinstance(document, list):
        yield document
        return
    document.reverse()  # popped from the end: each record is let go once taken
    while document:
        yield document.pop()


def _ndjson(lines: Iterator[tuple[int, memoryview]], where: str) -> Iterator[Any]:
    """Each numbered line parsed; a ``DataError`` naming the first that does not parse."""
    for number, line in lines:
        try:
            yield orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise DataError(f"{where}: NDJSON line {number} is not valid JSON ({exc})") from exc


def _lines(data: bytes) -> Iterator[tuple[int, memoryview]]:
    """``(line number, the line)`` for each line that is not blank, as views into ``data`` (no copies)."""
    view = memoryview(data)
    start, number = 0, 0
    while start < len(data):
        end = data.find(b"\n", start)
        end = len(data) if end < 0 else end
        number += 1
        if _NOT_SPACE.search(data, start, end):
            yield number, view[start:end]
        start = end + 1
