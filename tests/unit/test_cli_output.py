"""What the command line writes for people: counts with their nouns."""

from __future__ import annotations

import pytest

from firehose.cli.output import counted


@pytest.mark.parametrize(
    ("number", "noun", "shown"),
    [(0, "lead", "0 leads"), (1, "lead", "1 lead"), (2, "lead", "2 leads"), (1200, "event", "1,200 events"),
     (1, "missing object", "1 missing object")],
)  # fmt: skip
def test_a_count_takes_its_noun_in_the_singular_only_for_one(number: int, noun: str, shown: str) -> None:
    assert counted(number, noun) == shown
