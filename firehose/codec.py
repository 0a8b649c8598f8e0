"""The only module that uses orjson: JSON in and out, NDJSON lines, canonical form, and the records an archived
object holds."""

from __future__ import annotations

import gzip
import zlib
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
    return orjson.dumps(value)


def encode_line(value: Any) -> bytes:
    """One NDJSON line: compact JSON followed by a newline."""
    return orjson.dumps(value, option=orjson.OPT_APPEND_NEWLINE)


def encode_pretty(value: Any) -> bytes:
    """Indented JSON with sorted keys, for people to read."""
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE)


def canonical(value: Any) -> bytes:
    """A stable byte form (sorted keys, compact): documents equal as JSON give equal bytes, whatever their key
    order and whitespace."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


GZIP_MAGIC = b"\x1f\x8b"


def records(data: bytes, *, where: str) -> list[Any]:
    """The JSON records stored in one archived object: one document, a JSON array of them, or NDJSON;
    gzip-compressed or not (the firehose layout's format is NOT DOCUMENTED, facts.md §1.3).

    Raises ``DataError`` naming ``where`` (the object's URL) and the reason when nothing parses.
    """
    if data[:2] == GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{where}: gzip data is corrupt ({exc})") from exc
    if not data.strip():
        raise DataError(f"{where}: empty object")
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as whole_error:
        lines = [line for line in data.splitlines() if line.strip()]
        if len(lines) < 2:
            raise DataError(f"{where}: not valid JSON ({whole_error})") from whole_error
        found = []
        for number, line in enumerate(lines, start=1):
            try:
                found.append(orjson.loads(line))
            except orjson.JSONDecodeError as exc:
                raise DataError(f"{where}: NDJSON line {number} is not valid JSON ({exc})") from exc
        return found
    return document if isinstance(document, list) else [document]
