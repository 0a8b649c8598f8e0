"""Delivery-lag histograms (``reconciliation.lags``): buckets of two significant digits, percentiles that never
understate and are exact at the maximum, and merging that gives the one-process answer."""

from __future__ import annotations

import random

from firehose.reconciliation.lags import LagHistogram, bucket_of, bucket_width, merged_lags
from firehose.report import lag_lines


def test_buckets_hold_two_significant_digits_and_at_most_a_tenth_of_their_lags() -> None:
    assert [bucket_of(ms) for ms in (0, 7, 99, 100, 109, 110, 1999, 2000, 123_456, 7_776_000_000)] == [
        0, 7, 99, 100, 100, 110, 1900, 2000, 120_000, 7_700_000_000,
    ]  # fmt: skip
    assert bucket_of(-400) == 0, "last-modified in whole seconds can be before the end: no lag, not a negative one"
    for ms in random.Random(1).sample(range(100, 10**10), 2000):
        lower = bucket_of(ms)
        assert lower <= ms < lower + bucket_width(lower) and bucket_width(lower) <= lower / 10
    edges = {bucket_of(ms) for ms in range(0, 90 * 86_400_000, 997)}
    assert len(edges) < 830, "memory is flat: a destination fills at most these buckets"


def test_percentiles_are_the_upper_edge_of_their_bucket_capped_at_the_exact_maximum() -> None:
    lags = LagHistogram()
    for seconds in [2.0] * 90 + [2.5] * 9 + [61.3]:
        lags.observe(seconds)
    lags.observe(None)
    report = lags.report()
    assert (report["p50"], report["p95"], report["p99"], report["max"]) == (2.1, 2.6, 2.6, 61.3)
    assert report["objects"] == 100 and report["unknown"] == 1
    one = LagHistogram()
    one.observe(4.321)
    assert one.quantile(0.5) == one.quantile(0.99) == 4.321, "one lag: every percentile is the lag itself"
    assert LagHistogram().report()["p50"] is None


def test_histograms_merge_into_the_one_process_histogram() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(1.5, 1.2) for _ in range(5000)] + [None] * 3
    whole = LagHistogram()
    parts = [LagHistogram() for _ in range(7)]
    for number, value in enumerate(values):
        whole.observe(value)
        parts[number % 7].observe(value)
    merged = merged_lags([{"s3://b": part.report()} for part in parts])["s3://b"]
    assert merged.report() == whole.report()
    assert merged_lags([{"s3://b": whole.stored()}])["s3://b"] == whole, "a window's record reads back the same"
    exact = sorted(v for v in values if v is not None)
    for q, name in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
        true = exact[int(q * len(exact)) - 1]
        assert true <= whole.report()[name] <= true * 1.1 + 0.001, name


def test_the_text_summary_says_each_destinations_percentiles() -> None:
    lags = LagHistogram()
    lags.observe(2.04)
    unknown = LagHistogram()
    unknown.observe(None)
    lines = lag_lines({"s3://b/p": lags.report(), "az://c": unknown.report()})
    assert lines == [
        "  delivery lag az://c: unknown (1 unknown)",
        "  delivery lag s3://b/p: p50 2.04 s, p95 2.04 s, p99 2.04 s, max 2.04 s over 1 object",
    ]


def test_a_lag_no_clock_can_explain_is_unknown_never_zero_nor_a_failed_report() -> None:
    """Clock skew (last-modified hours before the event's end) is not "arrived at once": a lag below zero by more
    than the whole seconds of a last-modified is unknown. A lag beyond any JSON integer of milliseconds (an end
    of ``-1e20``) is unknown too, and the report still writes."""
    from firehose.codec import decode, encode

    lags = LagHistogram()
    for seconds in (-0.4, 3.0, -7200.0, 1e17, float("nan"), float("inf")):
        lags.observe(seconds)
    report = lags.report()
    assert (report["objects"], report["unknown"], report["p50"], report["max"]) == (2, 4, 0.001, 3.0), report
    assert merged_lags([{"s3://b": decode(encode(report))}])["s3://b"] == lags, "the report writes and reads back"
