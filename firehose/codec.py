"""The only module that uses orjson: JSON in and out, NDJSON lines, and the canonical form of an event."""

from __future__ import annotations

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
    """A stable byte form (sorted keys, compact): equal documents give equal bytes."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
