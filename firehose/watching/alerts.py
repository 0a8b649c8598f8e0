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
