"""Renderers for listings and reports: text table, JSON, NDJSON, CSV. Streaming, no click, no printing of
their own: they write to the binary stream they are given, so memory stays flat however many rows pass.

JSON output is one versioned document, ``{"schema": "firehose.<command>/1", ..., "<rows>": [...], ...}``, written
as rows arrive; NDJSON is one row per line; CSV has a header row; text is aligned columns for people
(``tables.TextTable``: rich on a terminal, plain text elsewhere; a long value folds inside its column).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, BinaryIO

from firehose.codec import encode, encode_line
from firehose.report.tables import TextTable

FORMATS = ("text", "json", "ndjson", "csv")


def _plain(value: Any) -> Any:
    """JSON- and CSV-ready: times as ISO 8601 UTC (``2026-11-01T00:00:03Z``)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value.tzinfo else value.isoformat()
    return value


def _cell(value: Any) -> str:
    """One CSV or text cell: nested values (lists, objects) as compact JSON, not Python's repr."""
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return encode(value).decode()
    return str(value)


class RowWriter:
    """Writes rows (dicts with the given ``fields``) in one of ``FORMATS``.

    ``widths`` gives text columns their width (the last column is never padded). ``meta`` goes before the rows
    in JSON (after ``schema``), ``summary`` after them (``close(summary)``). ``terminal``: whether text is drawn
    for a terminal (default: whether ``out`` is one).
    """

    def __init__(
        self,
        out: BinaryIO,
        fmt: str,
        fields: Sequence[str],
        *,
        schema: str,
        rows_name: str = "rows",
        widths: Mapping[str, int] | None = None,
        meta: Mapping[str, Any] | None = None,
        terminal: bool | None = None,
    ) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}")
        self.out, self.fmt, self.fields = out, fmt, list(fields)
        self.count = 0
        self._text = io.StringIO()
        self._csv = csv.writer(self._text, lineterminator="\n")
        if fmt == "json":
            head = encode({"schema": schema, **{k: _plain(v) for k, v in (meta or {}).items()}})
            out.write(head[:-1] + (b"," if len(head) > 2 else b"") + b'"' + rows_name.encode() + b'":[')
        elif fmt == "csv":
            self._emit_csv(self.fields)
        self._table = TextTable(out, self.fields, widths, terminal=terminal) if fmt == "text" else None

    def _emit_csv(self, values: Sequence[Any]) -> None:
        self._csv.writerow(values)
        self.out.write(self._text.getvalue().encode())
        self._text.seek(0)
        self._text.truncate()

    def write(self, row: Mapping[str, Any]) -> None:
        plain = {name: _plain(row.get(name)) for name in self.fields}
        if self.fmt == "json":
            self.out.write((b"," if self.count else b"") + encode(plain))
        elif self.fmt == "ndjson":
            self.out.write(encode_line(plain))
        elif self.fmt == "csv":
            self._emit_csv([_cell(plain[name]) for name in self.fields])
        elif self._table is not None:
            self._table.row(["-" if plain[name] is None else _cell(plain[name]) for name in self.fields])
        self.count += 1

    def close(self, summary: Mapping[str, Any] | None = None) -> None:
        if self.fmt == "json":
            tail = encode({k: _plain(v) for k, v in (summary or {}).items()})
            self.out.write(b"]" + (b"," + tail[1:] if len(tail) > 2 else b"}") + b"\n")
        elif self._table is not None:
            self._table.close()
        self.out.flush()
