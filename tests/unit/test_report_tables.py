"""What a person sees of a text table, and the machine formats byte for byte as they were."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime

import pytest

from firehose.report.rows import RowWriter
from firehose.report.tables import TextTable

ANSI = re.compile(r"\x1b\[[0-9;]*m")
KEY = "events/auto/6ae13b5aa55055783f30ae4c/6ae13b5aa55055783f30ae4d.json"
ROW = {"verdict": "missing", "key": KEY, "expires_at": datetime(2026, 11, 1, 0, 0, 3, tzinfo=UTC),
       "fields": ["a", "b"], "values": {"x": {"archive": 1, "api": '2,"3'}}, "n": None}  # fmt: skip
FIELDS = ["verdict", "key", "expires_at", "fields", "values", "n"]
GOLDEN = {
    "json": b'{"schema":"firehose.test/1","url":"s3://b/p","start":"2026-11-01T00:00:00Z","findings":[{"verdict":"missing","key":"events/auto/6ae13b5aa55055783f30ae4c/6ae13b5aa55055783f30ae4d.json","expires_at":"2026-11-01T00:00:03Z","fields":["a","b"],"values":{"x":{"archive":1,"api":"2,\\"3"}},"n":null},{"verdict":"missing","key":"events/auto/6ae13b5aa55055783f30ae4c/6ae13b5aa55055783f30ae4d.json","expires_at":"2026-11-01T00:00:03Z","fields":["a","b"],"values":{"x":{"archive":1,"api":"2,\\"3"}},"n":null}],"count":2}\n',
    "ndjson": b'{"verdict":"missing","key":"events/auto/6ae13b5aa55055783f30ae4c/6ae13b5aa55055783f30ae4d.json","expires_at":"2026-11-01T00:00:03Z","fields":["a","b"],"values":{"x":{"archive":1,"api":"2,\\"3"}},"n":null}\n{"verdict":"missing","key":"events/auto/6ae13b5aa55055783f30ae4c/6ae13b5aa55055783f30ae4d.json","expires_at":"2026-11-01T00:00:03Z","fields":["a","b"],"values":{"x":{"archive":1,"api":"2,\\"3"}},"n":null}\n',  # noqa: E501
    "csv": b'verdict,key,expires_at,fields,values,n\nmissing,events/auto/6ae13b5aa55055783f30ae4c/6ae13b5aa55055783f30ae4d.json,2026-11-01T00:00:03Z,"[""a"",""b""]","{""x"":{""archive"":1,""api"":""2,\\""3""}}",\nmissing,events/auto/6ae13b5aa55055783f30ae4c/6ae13b5aa55055783f30ae4d.json,2026-11-01T00:00:03Z,"[""a"",""b""]","{""x"":{""archive"":1,""api"":""2,\\""3""}}",\n',  # noqa: E501
}
"""Written by the RowWriter before rendering moved into firehose/report/ (scripts parse these)."""


@pytest.mark.parametrize("fmt", sorted(GOLDEN))
def test_json_ndjson_and_csv_are_byte_for_byte_what_they_were(fmt: str) -> None:
    out = io.BytesIO()
    writer = RowWriter(out, fmt, FIELDS, schema="firehose.test/1", rows_name="findings",
                       meta={"url": "s3://b/p", "start": datetime(2026, 11, 1, tzinfo=UTC)})  # fmt: skip
    for _ in range(2):
        writer.write(ROW)
    writer.close({"count": 2})
    assert out.getvalue() == GOLDEN[fmt]


def _table(terminal: bool, rows: list[list[str]], columns: int = 200) -> list[str]:
    out = io.BytesIO()
    table = TextTable(out, ["verdict", "key", "type", "reason"], {"verdict": 8, "key": 30, "type": 10},
                      terminal=terminal, columns=columns)  # fmt: skip
    for row in rows:
        table.row(row)
    table.close()
    return out.getvalue().decode().splitlines()


ROWS = [
    ["missing", "events/a/1.json", "source", "not in the archive"],
    ["differ", KEY, "recipient", "content differs"],  # a key longer than its column (30)
    ["match", "k", "feedback-received", "-"],  # a type longer than its column (10)
]


@pytest.mark.parametrize("terminal", [False, True], ids=["pipe", "terminal"])
def test_a_value_longer_than_its_column_folds_inside_it_and_the_next_column_stays_put(terminal: bool) -> None:
    lines = [ANSI.sub("", line) for line in _table(terminal, ROWS)]
    header = lines[0]
    offsets = [header.index(name) for name in ("key", "type", "reason")]
    assert offsets == [10, 42, 54]
    for line in lines[1:]:
        for offset in offsets:  # every later column starts at its offset: a space before it on every line
            assert line[offset - 2 : offset] == "  " or len(line) <= offset, (line, offset)
    by_row = [line for line in lines[1:] if line[:10].strip()]
    assert [line.split()[0] for line in by_row] == ["missing", "differ", "match"]
    folded = "".join(line[10:40].strip() for line in lines if "differ" in line or not line[:10].strip())
    assert KEY in folded, "the key reads whole, top to bottom, inside its column"
    assert lines[lines.index(next(line for line in lines if line.startswith("differ"))) + 1][42:].strip() == ""


def test_off_a_terminal_the_table_is_plain_text_one_line_per_row_that_fits() -> None:
    lines = _table(False, [ROWS[0], ["match", "events/b/2.json", "source", "-"]])
    assert lines == [
        "verdict   key                             type        reason",
        "missing   events/a/1.json                 source      not in the archive",
        "match     events/b/2.json                 source      -",
    ]
    assert not any("\x1b" in line for line in _table(False, ROWS)), "no escape codes in a pipe"


def test_on_a_terminal_the_header_is_bold_and_the_last_column_folds_at_its_edge() -> None:
    lines = _table(True, [["differ", "k", "source", "a reason much longer than what is left of the terminal"]], 80)
    assert "\x1b[1m" in lines[0], "rich draws the header"
    plain = [ANSI.sub("", line) for line in lines]
    assert all(len(line) <= 80 for line in plain) and len(plain) > 2, plain
    assert " ".join(line[54:].strip() for line in plain[1:]) == "a reason much longer than what is left of the terminal"
