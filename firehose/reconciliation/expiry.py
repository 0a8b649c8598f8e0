"""The at-risk rule: which gaps LeadConduit forgets soon (``GET /events`` keeps an event 90 days), and the order a
report lists gaps in. The one place a nightly job's "expiring within" is decided."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from firehose.findings import GAPS, Finding

API_DAYS = 90
"""How long ``GET /events`` keeps an event (facts.md: 90 days)."""
AT_RISK_WITHIN = timedelta(days=7)
"""How soon an expiry makes a gap at risk, unless the caller says otherwise (``--expiring-within``)."""


def at_risk(finding: Finding, *, now: datetime, within: timedelta) -> bool:
    """A gap whose event the API forgets within ``within`` of ``now`` (or whose expiry is unknown)."""
    if finding.verdict not in GAPS:
        return False
    return finding.expires_at is None or finding.expires_at <= now + within


def by_expiry(findings: Iterable[Finding]) -> list[Finding]:
    """Gaps first, soonest expiry first; unknown expiry counts as soonest (it cannot be shown to be safe)."""
    gaps = [f for f in findings if f.verdict in GAPS]
    return sorted(gaps, key=lambda f: (f.expires_at is not None, f.expires_at or datetime.min, f.event_id))
