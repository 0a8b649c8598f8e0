"""Delivery lag (an object's last-modified minus its event's end) per destination, for the events a reconcile
checks: p50, p95, p99 and the maximum.

Memory stays flat whatever the number of events: lags go into a fixed set of buckets, not a list. A bucket holds
the lags of two significant digits in milliseconds (under 100 ms, one bucket a millisecond): 1.0-1.1 s, 10-11 s,
2.0-2.1 min, ..., so a bucket is at most 10% of its lags wide (1% at the top of a decade), and the ~820 buckets
from 0 to 90 days (the API's memory) are the most a destination can fill. Buckets add up: slices' histograms
merge into exactly the one-process histogram, which percentiles never would.

A percentile is the upper edge of the bucket its rank falls in, capped at the exact maximum: "95% of objects
arrived within p95", never an understatement, at most one bucket's width (10%) over the true value. With one lag,
or all lags in one bucket, every percentile is the exact maximum.

A lag is *unknown*, counted apart and in no percentile, when the event's end or the object's last-modified is
not known (an inventory without a last-modified column). Only objects the listing (or inventory) found count:
an object a repair writes is missing when listed, and its last-modified would be the repair's, not the firehose's.
A lag below zero by less than a second (last-modified has whole seconds on most stores, the end has
milliseconds) counts as 0; one further below (clocks that disagree, an end that is no time) is unknown, as is one
past ``MAX_LAG_MS`` (no store is that old): neither is "arrived at once" nor a number a report could write.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

QUANTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))
TRUNCATION_MS = 1000
"""How far below zero a lag may be and count as 0: a last-modified in whole seconds, an end in milliseconds."""
MAX_LAG_MS = 2**63 - 1
"""The longest lag kept (the largest integer a JSON report carries); any longer is unknown."""


_DECADES = [10**n for n in range(3, 19)]
"""1 s, 10 s, ...: where a bucket's width grows tenfold (bisected: a reconcile observes every object it finds)."""


def delivery_lag(last_modified: float, ended: float) -> float | None:
    """An object's delivery lag in seconds (its last-modified minus its event's end, both Unix seconds), the one
    rule reconcile and the watch share: 0 when less than a second below zero (a last-modified in whole seconds),
    None (unknown) further below (clocks that disagree) or past ``MAX_LAG_MS``, or when either is no number."""
    lag = last_modified - ended
    return max(0.0, lag) if _explained(lag) else None


def _explained(seconds: float) -> bool:
    """Whether a lag is one a clock can explain (not NaN, not far below zero, not past ``MAX_LAG_MS``)."""
    return -TRUNCATION_MS < seconds * 1000 <= MAX_LAG_MS


def bucket_of(milliseconds: int) -> int:
    """The lower edge (ms) of the bucket a lag falls in: exact below 100 ms, two significant digits above."""
    if milliseconds < 100:
        return max(0, milliseconds)
    width = bucket_width(milliseconds)
    return milliseconds // width * width


def bucket_width(lower: int) -> int:
    """A bucket's width (ms), from its lower edge (or any lag in it: they have as many digits)."""
    if lower < 100:
        return 1
    width: int = 10 ** (bisect_right(_DECADES, lower) + 1)
    return width


@dataclass
class LagHistogram:
    """One destination's lags."""

    buckets: Counter[int] = field(default_factory=Counter)
    """Lower edge (ms) -> lags in it."""
    count: int = 0
    unknown: int = 0
    max_ms: int = 0

    def observe(self, seconds: float | None) -> None:
        """One object's lag, in seconds (None: unknown)."""
        if seconds is None or not _explained(seconds):
            self.unknown += 1
            return
        milliseconds = max(0, round(seconds * 1000))
        self.buckets[bucket_of(milliseconds)] += 1
        self.count += 1
        self.max_ms = max(self.max_ms, milliseconds)

    def merge(self, other: LagHistogram) -> None:
        self.buckets.update(other.buckets)
        self.count += other.count
        self.unknown += other.unknown
        self.max_ms = max(self.max_ms, other.max_ms)

    def quantile(self, q: float) -> float | None:
        """Seconds within which a share ``q`` of the lags fall (None: no lag known)."""
        if not self.count:
            return None
        rank = max(1, math.ceil(round(q * self.count, 9)))  # the smallest lag with a share q at or below it
        seen = 0
        for lower in sorted(self.buckets):
            seen += self.buckets[lower]
            if seen >= rank:
                return min(lower + bucket_width(lower), self.max_ms) / 1000
        return self.max_ms / 1000

    def stored(self) -> dict[str, Any]:
        """What a window's record and a report keep: enough to merge (the buckets, sparse, by lower edge in ms)."""
        return {
            "count": self.count,
            "unknown": self.unknown,
            "max_ms": self.max_ms,
            "buckets": {str(lower): self.buckets[lower] for lower in sorted(self.buckets)},
        }

    @classmethod
    def from_stored(cls, stored: Mapping[str, Any]) -> LagHistogram:
        buckets = Counter({int(lower): int(number) for lower, number in stored.get("buckets", {}).items()})
        return cls(buckets, int(stored.get("count", 0)), int(stored.get("unknown", 0)), int(stored.get("max_ms", 0)))

    def report(self) -> dict[str, Any]:
        """The report's entry: percentiles and maximum in seconds (None when no lag is known), and the histogram
        they come from (so that reports merge)."""
        found: dict[str, Any] = {"objects": self.count, "unknown": self.unknown}
        for name, q in QUANTILES:
            found[name] = self.quantile(q)
        found["max"] = self.max_ms / 1000 if self.count else None
        found["histogram"] = self.stored()
        return found


def merged_lags(parts: Iterable[Mapping[str, Mapping[str, Any]]]) -> dict[str, LagHistogram]:
    """Per destination, the histograms of several windows' records or reports, added up."""
    total: dict[str, LagHistogram] = {}
    for part in parts:
        for destination, stored in part.items():
            histogram = stored.get("histogram", stored)  # a report's entry, or a record's histogram itself
            total.setdefault(destination, LagHistogram()).merge(LagHistogram.from_stored(histogram))
    return total


def lag_report(lags: Mapping[str, LagHistogram]) -> dict[str, dict[str, Any]]:
    return {destination: lags[destination].report() for destination in sorted(lags)}
