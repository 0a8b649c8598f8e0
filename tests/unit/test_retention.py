"""Retention settings judged against a required period: PASS, FAIL and UNKNOWN, each with its reason."""

from __future__ import annotations

import pytest

from firehose.archive.base import LifecycleRule, RetentionSettings
from firehose.errors import UsageError
from firehose.evidence.retention import FAIL, PASS, UNKNOWN, judge, overall, parse_retention

SEVEN_YEARS = 7 * 365


def verdicts(settings: RetentionSettings, prefix: str = "events/auto") -> dict[str, tuple[str, str]]:
    return {c.check: (c.verdict, c.finding) for c in judge("s3://b/events/auto", prefix, settings, SEVEN_YEARS)}


def test_durations() -> None:
    assert parse_retention("7y") == 2555 and parse_retention("90d") == 90 and parse_retention("2y6mo") == 910
    with pytest.raises(UsageError, match="--require-retention 'seven'"):
        parse_retention("seven")


def test_a_locked_versioned_bucket_without_lifecycle_passes() -> None:
    good = RetentionSettings("s3", "Enabled", True, "COMPLIANCE", 2600, lifecycle=())
    found = verdicts(good)
    assert {name: v for name, (v, _) in found.items()} == {"object_lock": PASS, "versioning": PASS, "lifecycle": PASS}
    assert overall(judge("x", "events/auto", good, SEVEN_YEARS)) == PASS


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        (RetentionSettings("s3", "Enabled", False, lifecycle=()), "Object Lock is off"),
        (RetentionSettings("s3", "Enabled", True, "GOVERNANCE", 3000, lifecycle=()), "GOVERNANCE"),
        (RetentionSettings("s3", "Enabled", True, "COMPLIANCE", 30, lifecycle=()), "30 days, shorter than 7y"),
    ],
)
def test_lock_failures_say_why(settings: RetentionSettings, reason: str) -> None:
    verdict, finding = verdicts(settings)["object_lock"]
    assert verdict == FAIL and reason in finding


def test_lifecycle_rules_under_the_prefix_fail_when_they_delete_too_soon() -> None:
    rules = (
        LifecycleRule("short", True, "events/", expiration_days=30),
        LifecycleRule("other-prefix", True, "logs/", expiration_days=1),
        LifecycleRule("off", False, "", expiration_days=1),
        LifecycleRule("cold", True, "", transition_days=90, transition_class="GLACIER"),
    )
    verdict, finding = verdicts(RetentionSettings("s3", "Enabled", True, "COMPLIANCE", 3000, lifecycle=rules))[
        "lifecycle"
    ]
    assert verdict == FAIL and "rule 'short' deletes objects under events/ after 30 days" in finding
    assert "other-prefix" not in finding and "'off'" not in finding
    fine = RetentionSettings("s3", "Enabled", True, "COMPLIANCE", 3000, lifecycle=rules[1:])
    verdict, finding = verdicts(fine)["lifecycle"]
    assert verdict == PASS and "moves objects to GLACIER after 90 days" in finding


def test_unreported_settings_are_unknown_with_the_reason() -> None:
    settings = RetentionSettings("s3", notes=(("versioning", "not readable with these credentials (AccessDenied)"),))
    found = verdicts(settings)
    assert found["versioning"] == (UNKNOWN, "not readable with these credentials (AccessDenied)")
    assert found["lifecycle"][0] == UNKNOWN and found["object_lock"][0] == UNKNOWN


def test_azure_without_immutability_fails_and_account_settings_are_unknown() -> None:
    notes = (("versioning", "not reported by this endpoint: x"), ("lifecycle", "not reported by this endpoint: y"))
    azure = RetentionSettings("az", lock_enabled=False, legal_hold=False, soft_delete_days=0, notes=notes)
    found = {c.check: c.verdict for c in judge("az://c", "", azure, SEVEN_YEARS)}
    assert found == {"immutability": FAIL, "soft_delete": FAIL, "versioning": UNKNOWN, "lifecycle": UNKNOWN}
    held = RetentionSettings("az", lock_enabled=True, legal_hold=True, soft_delete_days=3000, notes=notes)
    found = {c.check: c.verdict for c in judge("az://c", "", held, SEVEN_YEARS)}
    assert found["immutability"] == PASS and found["soft_delete"] == PASS
