"""The watch's alerts: one JSON object each (``"alert"`` names its kind), written as NDJSON by the command line.

Kinds: ``late`` (an event's object not in its destination by the deadline), ``recovered`` (a late one arrived,
with its delivery lag), ``repaired`` (a late one written by ``--repair-after``), ``repair_failed`` (it could not
be: the API no longer holds the event, or the store refused the write; once per pair and reason),
``destination_down`` / ``destination_up`` (every request to a destination failed, or nothing arrived there while
events waited, for ``--down-after``; and the end of it), ``api_down`` / ``api_up`` (``GET /events`` failed, after
its retries, for ``--down-after``; and the end of it). No alert holds a secret: reasons go through the credential
filter, and URLs are those of destinations and the API, never a key.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from firehose.secret import redact_text

KINDS = ("late", "recovered", "repaired", "repair_failed", "destination_down", "destination_up", "api_down", "api_up")
ALARMS = frozenset({"late", "repair_failed"})
"""Kinds logged as warnings (a failed repair leaves its event late), with every ``*_down``; any other kind
(``recovered``, ``repaired``, ``*_up``, one added later) is news, logged as info."""


def moment(seconds: float) -> str:
    """ISO 8601 UTC with milliseconds, as LeadConduit writes times."""
    text = datetime.fromtimestamp(seconds, tz=UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def pair_alert(kind: str, now: float, pair: Any, **extra: Any) -> dict[str, Any]:
    """A ``late``, ``recovered``, ``repaired`` or ``repair_failed`` alert for one (event, destination) pair
    (``ledger.Pair``)."""
    return {
        "alert": kind,
        "at": moment(now),
        "event_id": pair.event_id,
        "lead_id": pair.lead_id,
        "destination": pair.destination,
        "key": pair.key,
        "event_end": moment(pair.ended),
        "deadline": moment(pair.deadline),
        **extra,
    }


def outage_alert(kind: str, now: float, *, since: float, reason: str = "", **where: str) -> dict[str, Any]:
    """A ``destination_*`` or ``api_*`` alert: what (``destination=`` or ``api=``), since when, and why."""
    found: dict[str, Any] = {"alert": kind, "at": moment(now), **{k: redact_text(v) for k, v in where.items()}}
    found["since"] = moment(since)
    if reason:
        found["reason"] = redact_text(" ".join(reason.split()))[:500]
    return found


def is_alarm(alert: dict[str, Any]) -> bool:
    kind = str(alert.get("alert", ""))
    return kind in ALARMS or kind.endswith("_down")


def alert_line(alert: dict[str, Any]) -> str:
    """One line for the log, for an alert of any kind: its kind, where, which event, and why."""
    parts = [f"{alert.get('alert')}:", str(alert.get("destination") or alert.get("api") or "")]
    if "event_id" in alert:
        parts.append(f"event {alert['event_id']}")
    if alert.get("lag_seconds") is not None:
        parts.append(f"lag {alert['lag_seconds']} s")
    if "reason" in alert:
        parts.append(f"({alert['reason']})")
    return redact_text(" ".join(part for part in parts if part))
