"""Parquet inventory files (S3 Inventory and Azure Blob Inventory), read with pyarrow: the one module that imports
it, and only when a Parquet inventory is read (``pip install 'firehose[inventory]'``)."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from typing import Any

from firehose.errors import DataError, UsageError

BATCH_ROWS = 16_384
"""Rows decoded at once: a row group is read a batch at a time, so memory does not grow with the file's rows."""


def parquet_rows(data: bytes, where: str) -> tuple[Sequence[str], Iterator[Sequence[Any]]]:
    """The file's column names and its rows (tuples in that order), a batch at a time."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise UsageError(f"{where} is Parquet, which needs pyarrow: pip install 'firehose[inventory]'") from None
    try:
        file = pyarrow.parquet.ParquetFile(io.BytesIO(data))
    except (pyarrow.ArrowException, OSError) as exc:
        raise DataError(f"{where}: not a whole Parquet file ({exc})") from None
    names = list(file.schema_arrow.names)

    def rows() -> Iterator[Sequence[Any]]:
        try:
            for batch in file.iter_batches(batch_size=BATCH_ROWS):
                yield from zip(*(column.to_pylist() for column in batch.columns), strict=True)
        except (pyarrow.ArrowException, OSError) as exc:
            raise DataError(f"{where}: not a whole Parquet file ({exc})") from None

    return names, rows()
