"""Whole documents and single lines of JSON, as the command line writes them: a report file (indented, for people
and ``jq`` alike), one NDJSON line, one compact document on stdout."""

from __future__ import annotations

from typing import Any

from firehose.codec import encode, encode_line, encode_pretty


def json_document(value: Any) -> bytes:
    """A report file: indented JSON with a final newline."""
    return encode_pretty(value)


def json_line(value: Any) -> bytes:
    """One NDJSON line."""
    return encode_line(value)


def json_compact(value: Any) -> bytes:
    """One JSON document on one line, without a newline."""
    return encode(value)
