"""Judging a store's retention settings against a required retention (``--require-retention 7y``).

Each check gives PASS, FAIL (why) or UNKNOWN (why), in words an auditor can read without the tool. The rules:

- **S3 Object Lock** holds each object for the default retention: PASS when on, in COMPLIANCE mode, for at
  least the required period. GOVERNANCE mode FAILs (users with ``s3:BypassGovernanceRetention`` can delete),
  as does a shorter period or no lock at all.
- **Versioning** keeps the original when an object is overwritten or deleted: PASS when Enabled.
- **Lifecycle** rules that apply to the destination's prefix FAIL when they delete current objects, or old
  versions, sooner than required; transitions to colder storage are noted, not failed.
- **Azure immutability** (a container policy, immutable storage with versioning, or a legal hold): PASS for a
  legal hold, UNKNOWN for a policy (the Blob endpoint does not report its period), FAIL when there is none.
- **Azure soft delete** keeps deleted blobs recoverable: PASS for at least the required period.

A setting the endpoint does not report, or the credentials may not read, is UNKNOWN with that reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from firehose.archive.base import LifecycleRule, RetentionSettings
from firehose.duration import days_of

PASS, FAIL, UNKNOWN = "PASS", "FAIL", "UNKNOWN"


def parse_retention(text: str) -> int:
    """``7y``, ``18mo``, ``90d``, ``2y6mo``: the number of days (a year is 365 days, a month 30), in the one
    duration grammar of every flag (``duration``)."""
    return days_of(text, "--require-retention")


def days_text(days: int) -> str:
    if days % 365 == 0:
        return f"{days // 365}y"
    return f"{days}d"


@dataclass(frozen=True)
class Check:
    """One judged setting of one destination."""

    destination: str
    check: str
    verdict: str
    finding: str


def applies(rule: LifecycleRule, prefix: str) -> bool:
    """Whether a rule can touch objects under ``prefix``: one prefix starts with the other."""
    return prefix.startswith(rule.prefix) or rule.prefix.startswith(prefix)


def judge(destination: str, prefix: str, settings: RetentionSettings, required_days: int) -> list[Check]:
    """Every check for one destination (``prefix`` is where its events are)."""
    notes = dict(settings.notes)
    checks: list[Check] = []

    def add(name: str, verdict: str, finding: str) -> None:
        checks.append(Check(destination, name, verdict, finding))

    def unknown(name: str, setting: str) -> None:
        add(name, UNKNOWN, notes.get(setting, "not reported by this endpoint"))

    if settings.kind == "s3":
        _judge_object_lock(settings, required_days, add, unknown)
    if settings.kind == "file":
        unknown("object_lock", "object_lock")
    if settings.kind in ("s3", "file"):
        _judge_versioning(settings, add, unknown)
        _judge_lifecycle(settings, prefix, required_days, add, unknown)
    if settings.kind == "az":
        _judge_azure(settings, required_days, add, unknown)
    return checks


Adder = Callable[[str, str, str], None]
Unknown = Callable[[str, str], None]


def _judge_object_lock(settings: RetentionSettings, required_days: int, add: Adder, unknown: Unknown) -> None:
    need = days_text(required_days)
    if settings.lock_enabled is None:
        unknown("object_lock", "object_lock")
    elif not settings.lock_enabled:
        add("object_lock", FAIL, "Object Lock is off: objects can be deleted or overwritten at any time")
    elif not settings.lock_mode:
        add("object_lock", FAIL, "Object Lock is on but sets no default retention: new objects are not held")
    elif settings.lock_mode != "COMPLIANCE":
        add(
            "object_lock",
            FAIL,
            f"default retention is {settings.lock_mode}: users with s3:BypassGovernanceRetention can delete",
        )
    elif (settings.lock_days or 0) < required_days:
        add("object_lock", FAIL, f"default retention is {settings.lock_days} days, shorter than {need}")
    else:
        add("object_lock", PASS, f"COMPLIANCE retention of {settings.lock_days} days (at least {need})")


def _judge_versioning(settings: RetentionSettings, add: Adder, unknown: Unknown) -> None:
    if settings.versioning is None:
        unknown("versioning", "versioning")
    elif settings.versioning == "Enabled":
        add("versioning", PASS, "versioning is on: an overwritten or deleted object keeps its earlier version")
    else:
        add("versioning", FAIL, f"versioning is {settings.versioning}: an overwrite loses the original")


def _judge_azure(settings: RetentionSettings, required_days: int, add: Adder, unknown: Unknown) -> None:
    if settings.lock_enabled is None:
        unknown("immutability", "immutability")
    elif settings.legal_hold:
        add("immutability", PASS, "a legal hold keeps every blob until it is cleared")
    elif settings.lock_enabled:
        unknown("immutability", "immutability")
    else:
        add("immutability", FAIL, "no immutability policy or legal hold: blobs can be deleted or overwritten")
    if settings.soft_delete_days is None:
        unknown("soft_delete", "soft_delete")
    elif settings.soft_delete_days >= required_days:
        add("soft_delete", PASS, f"deleted blobs stay recoverable for {settings.soft_delete_days} days")
    elif settings.soft_delete_days == 0:
        add("soft_delete", FAIL, "soft delete is off: a deleted blob is gone at once")
    else:
        add("soft_delete", FAIL, f"deleted blobs stay recoverable for {settings.soft_delete_days} days only")
    unknown("versioning", "versioning")
    unknown("lifecycle", "lifecycle")


def _judge_lifecycle(
    settings: RetentionSettings,
    prefix: str,
    required_days: int,
    add: Callable[[str, str, str], None],
    unknown: Callable[[str, str], None],
) -> None:
    if settings.lifecycle is None:
        unknown("lifecycle", "lifecycle")
        return
    need = days_text(required_days)
    rules = [rule for rule in settings.lifecycle if rule.enabled and applies(rule, prefix)]
    problems = []
    for rule in rules:
        if rule.expiration_days is not None and rule.expiration_days < required_days:
            where = rule.prefix or "/"
            problems.append(f"rule {rule.id!r} deletes objects under {where} after {rule.expiration_days} days")
        if rule.expiration_date is not None:
            where = rule.prefix or "/"
            problems.append(f"rule {rule.id!r} deletes objects under {where} on {rule.expiration_date:%Y-%m-%d}")
        if rule.noncurrent_expiration_days is not None and rule.noncurrent_expiration_days < required_days:
            problems.append(f"rule {rule.id!r} deletes earlier versions after {rule.noncurrent_expiration_days} days")
    if problems:
        add("lifecycle", FAIL, "; ".join(problems) + f" (required: {need})")
        return
    moves = [f"rule {r.id!r} moves objects to {r.transition_class} after {r.transition_days} days" for r in rules
             if r.transition_days is not None]  # fmt: skip
    add(
        "lifecycle",
        PASS,
        ("no lifecycle rule deletes objects under this prefix sooner than " + need)
        + (f"; {'; '.join(moves)}" if moves else ""),
    )


def overall(checks: list[Check]) -> str:
    """FAIL if any check failed, else UNKNOWN if any is unknown, else PASS."""
    verdicts = {check.verdict for check in checks}
    return FAIL if FAIL in verdicts else UNKNOWN if UNKNOWN in verdicts or not checks else PASS
