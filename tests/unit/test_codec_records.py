from __future__ import annotations

import gzip

import pytest

from firehose.codec import records
from firehose.errors import DataError


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'{"id":"a"}', [{"id": "a"}]),
        (b'{"id":"a"}\n{"id":"b"}\n', [{"id": "a"}, {"id": "b"}]),
        (b'[{"id":"a"},{"id":"b"}]', [{"id": "a"}, {"id": "b"}]),
        (gzip.compress(b'{"id":"a"}\n{"id":"b"}', mtime=0), [{"id": "a"}, {"id": "b"}]),
    ],
)
def test_one_document_ndjson_arrays_and_gzip(data: bytes, expected: list) -> None:
    assert records(data, where="s3://b/k") == expected


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty object"),
        (b"{not json", "not valid JSON"),
        (b'{"a":1}\n{oops', "NDJSON line 2 is not valid JSON"),
        (b"\x1f\x8bnot gzip at all", "gzip data is corrupt"),
    ],
)
def test_broken_objects_name_the_object_and_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(DataError, match=rf"^s3://b/k: {reason}"):
        records(data, where="s3://b/k")
