"""Settling what is in doubt: a request that went out without an answer is looked for among LeadConduit's own
source events (a taken submit stores the request it was made by); found, it was sent; not found after a grace
period, it was not received and may be sent again; otherwise it stays ``unknown``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from firehose import payload
from firehose.api import EventQuery, LeadConduit
from firehose.errors import DataError, FirehoseError
from firehose.event import EventView
from firehose.ids import seconds_of
from firehose.replaying.request import StoredRequest, identity, origin
from firehose.state import LedgerEntry, ReplayLedger


@dataclass(frozen=True)
class Doubt:
    """A request that went out with no answer: where, when, and the hashes of what it carried."""

    event_id: str
    target: str
    claimed_at: datetime
    identity: Mapping[str, str]
    in_flight_seconds: float = 0.0
    """How long its sender may still be at it (a claim in a shared ledger, whose machine may be alive): no
    settling as not received before that, whatever ``--settle-after`` says."""


@dataclass(frozen=True)
class Settlement:
    status: str  # sent | failed (not received) | unknown
    reason: str
    new_lead_id: str | None = None
    new_outcome: str | None = None


class Settler:
    """Finds what became of an in-doubt request when its target is the LeadConduit firehose reads events from.

    A submit that LeadConduit processed made a new lead whose ``source`` event stores the request (facts.md
    §3.4): so the settler pages ``GET /events`` for the target flow's and source's source events made from
    shortly before the request went out (``SKEW_SECONDS``, for clocks that differ) until now, and looks for
    one whose stored body is the one sent (same bytes, or the same parsed fields). Found: ``sent``, with the
    new lead id. Not found, once ``grace_seconds`` have passed since the request (events appear a little after
    a lead is taken): ``failed`` (not received), so it may be sent again. Otherwise, or when the API cannot be
    read, it stays ``unknown``. Leads a replay made (``known_leads``) are never taken for another's.
    """

    SKEW_SECONDS = 120

    def __init__(
        self,
        api: LeadConduit,
        api_url: str,
        *,
        grace_seconds: float = 300.0,
        known_leads: Callable[[str], bool] = lambda lead_id: False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.api = api
        self.origin = origin(api_url)
        self.grace_seconds = grace_seconds
        self.known_leads = known_leads
        self.clock = clock
        self._taken: set[str] = set()

    def settle(self, doubt: Doubt) -> Settlement:
        found = re.search(r"/flows/([^/?]+)/sources/([^/?]+)", urlsplit(doubt.target).path)
        if origin(doubt.target) != self.origin or not found:
            return Settlement("unknown", f"{IN_DOUBT}; its target is not the LeadConduit firehose can query")
        if "request" not in doubt.identity:
            return Settlement("unknown", f"{IN_DOUBT}; no record of what it carried")
        since = doubt.claimed_at - timedelta(seconds=self.SKEW_SECONDS)
        rules = (
            {"lhv": "flow.id", "op": "is equal to", "rhv": found.group(1)},
            {"lhv": "source.id", "op": "is equal to", "rhv": found.group(2)},
        )
        claimed = int(doubt.claimed_at.timestamp())
        early: dict[str, Any] | None = None  # a match from before the claim (within the skew): only a fallback
        ambiguous = False
        try:
            for event in self.api.iter_events(EventQuery(start=since, rules=rules, types=("source",))):
                view = EventView(event)
                if view.id == doubt.event_id or not view.lead_id or view.lead_id in self._taken:
                    continue
                if not self._carries(event, doubt.identity) or self.known_leads(view.lead_id):
                    continue
                if "fields" not in doubt.identity:  # an empty request: any empty request would match
                    ambiguous = True
                    break
                if seconds_of(view.id) >= claimed:
                    return self._sent(event)
                early = early or event
        except FirehoseError as exc:
            return Settlement("unknown", f"{IN_DOUBT}; could not ask LeadConduit ({exc})")
        if early is not None:
            return self._sent(early)
        if ambiguous:
            return Settlement("unknown", f"{IN_DOUBT}; it carried no field, so LeadConduit's leads cannot tell it")
        waited = self.clock() - doubt.claimed_at.timestamp()
        grace = max(self.grace_seconds, doubt.in_flight_seconds)
        if waited < grace:
            return Settlement(
                "unknown",
                f"{IN_DOUBT}; LeadConduit shows no lead from it yet, too soon to be sure "
                f"({waited:.0f} s of {grace:.0f} s, --settle-after): rerun later",
            )
        return Settlement(
            "failed",
            f"settled: LeadConduit shows no lead made by this request in flow {found.group(1)} since "
            f"{since:%Y-%m-%d %H:%M:%S}Z: not received",
        )

    def _sent(self, event: Mapping[str, Any]) -> Settlement:
        view = EventView(event)
        lead = str(view.lead_id)
        self._taken.add(lead)
        outcome = event.get("outcome")
        reason = f"settled: LeadConduit shows lead {lead} made by this request"
        return Settlement("sent", reason, lead, str(outcome) if outcome is not None else None)

    @staticmethod
    def _carries(event: Mapping[str, Any], wanted: Mapping[str, str]) -> bool:
        try:
            stored = StoredRequest.of(event)
        except DataError:
            return False
        found = identity(stored.method, stored.uri, payload.kind_of(stored.header("Content-Type")), stored.body)
        return found["request"] == wanted.get("request") or (
            "fields" in found and found["fields"] == wanted.get("fields")
        )


IN_DOUBT = "sent before without an answer: the target may have taken it"


def settle_ledger(ledger: ReplayLedger, settler: Settler) -> list[tuple[LedgerEntry, Settlement]]:
    """Try to settle every lead the ledger has in doubt; what is settled (sent, or not received) is written.
    Returns every attempt, the ones left ``unknown`` too (with why), for the operator to see."""
    tried = []
    for entry in ledger.in_doubt():
        claimed = entry.claimed_at or entry.updated_at
        if claimed is None:
            continue
        outcome = settler.settle(Doubt(entry.event_id, entry.target, claimed, entry.identity or {}))
        tried.append((entry, outcome))
        if outcome.status != "unknown":
            changes: dict[str, Any] = {"status": outcome.status, "reason": outcome.reason}
            if outcome.status == "sent":
                changes |= {"new_lead_id": outcome.new_lead_id, "new_outcome": outcome.new_outcome}
            ledger.write([replace(entry, **changes)])
    return tried
