"""Sorting more rows than memory should hold: an external merge sort.

Rows are sorted in chunks of ``chunk`` in memory; each full chunk is written to an unnamed temporary file (gone
when closed, or when the process dies) in ``marshal`` batches (each after its length), and the chunks are merged
with ``heapq.merge``. Memory holds one chunk plus one batch per spilled chunk, however many rows there are; rows
that fit in one chunk never touch the disk. Rows are tuples of ``marshal``-able values (str, int, float),
compared as tuples.
"""

from __future__ import annotations

import heapq
import marshal
import tempfile
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import IO, Any, TypeVar

T = TypeVar("T", bound=tuple[Any, ...])

CHUNK = 100_000
"""Rows sorted in memory at once: about 25 MB of inventory rows (a key, a size, an etag, a time)."""
BATCH = 4_096
"""Rows written or read back per ``marshal`` call: far fewer calls than rows, little memory per chunk."""


def external_sort(rows: Iterable[T], *, chunk: int = CHUNK) -> Iterator[T]:
    """``rows`` in ascending order, lazily, with at most ``chunk`` of them in memory at once."""
    source = iter(rows)
    spilled: list[IO[bytes]] = []
    try:
        while True:
            block = sorted(islice(source, chunk))
            if len(block) < chunk or not block:
                if not spilled:
                    yield from block
                    return
                if block:
                    spilled.append(_spill(block))
                break
            spilled.append(_spill(block))
            del block
        yield from heapq.merge(*(_read(file) for file in spilled))
    finally:
        for file in spilled:
            file.close()


def _spill(block: list[T]) -> IO[bytes]:
    file = tempfile.TemporaryFile(prefix="firehose-sort-")  # noqa: SIM115  # closed by external_sort
    for start in range(0, len(block), BATCH):
        batch = marshal.dumps(block[start : start + BATCH])
        file.write(len(batch).to_bytes(8, "little"))
        file.write(batch)
    file.seek(0)
    return file


def _read(file: IO[bytes]) -> Iterator[T]:
    # Each batch read whole, then parsed from bytes: ``marshal.load`` on a file asks it for every value's bytes
    # one call at a time, 18 times slower (3.3 s against 0.17 s for 100,000 inventory rows here), and a million
    # rows read back ten spilled chunks.
    while size := file.read(8):
        yield from marshal.loads(file.read(int.from_bytes(size, "little")))
