"""A replay ledger shared by machines, kept in a store (``--ledger s3://…``, ``az://…``, ``file:///…``).

SQLite's lock holds only on one machine. For replays run from several, each lead is claimed with a
create-only object, the one operation every store makes atomic (S3 ``If-None-Match: *``, Azure ``IfMissing``,
an exclusive create on disk). A lead is its request (``replaying.request.identity``: method, path, query and body), not
the event that carries it: a replay's own new source event, and a lead its vendor sent twice, carry the same
request and so share one history. Per request, under ``<prefix>/<request sha256>/``:

- ``<n>.claim.json``: attempt ``n`` is claimed (which run, host, when, where to, hashes of the body). Whoever
  creates it sends; a machine that finds it already there does not.
- ``<n>.result.json``: how attempt ``n`` ended (``sent``, ``failed``, ``unknown``), also create-only.

A claim without a result is in doubt (its machine died, or is still sending): no one sends the lead again
unless asked (``--retry-unknown``), or until the settler finds what became of it; and never, whatever is
asked, while the claiming machine may still be sending it (the claim says for how long:
``in_flight_seconds``). A ``failed`` result (the flow did not take it, or nothing was sent) lets the next
run claim ``n + 1``. Nothing is ever overwritten, so the objects are also the history of every attempt. No
lead data is written: ids, hashes, a redacted URL.
"""

from __future__ import annotations

import math
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from firehose.archive import Store
from firehose.codec import decode, encode
from firehose.errors import DataError

_NAME = re.compile(r"^(\d{6})\.(claim|result)\.json$")


@dataclass(frozen=True)
class StoredClaim:
    """The last claim of an event in the store, and its result if one was written."""

    number: int
    claim: Mapping[str, Any]
    result: Mapping[str, Any] | None

    @property
    def status(self) -> str | None:
        return str(self.result.get("status")) if self.result else None

    def in_flight(self, now: datetime) -> bool:
        """Whether the machine that claimed it may still be sending it."""
        if self.result is not None:
            return False
        claimed, seconds = claimed_at(self.claim), in_flight_seconds(self.claim)
        if claimed is None or seconds is None:
            return True  # a claim we cannot read: assume the worst
        return (now - claimed).total_seconds() < seconds


def claimed_at(claim: Mapping[str, Any]) -> datetime | None:
    """When a claim was made, as an aware time (one written without a zone is UTC: compared with an aware "now"
    it raised TypeError); None when it cannot be read. Claims come from a shared store, written by any
    machine, so nothing in them is taken on trust."""
    try:
        moment = datetime.fromisoformat(str(claim.get("claimed_at")))
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def in_flight_seconds(claim: Mapping[str, Any]) -> float | None:
    """How long a claim's machine may be sending it; None when unreadable (``nan`` compared as "not in flight",
    which would have let another machine send the lead again)."""
    try:
        seconds = float(claim.get("in_flight_seconds") or 0)
    except (TypeError, ValueError, OverflowError):
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


class StoreLedger:
    """Claims and results of replays in ``store`` under ``prefix``, for run ``run_id``."""

    def __init__(self, store: Store, prefix: str, run_id: str) -> None:
        self.store = store
        self.prefix = prefix.strip("/")
        self.run_id = run_id
        self.host = socket.gethostname()

    def check(self) -> None:
        """Fail now, before any lead is claimed, if the store cannot be listed (a missing bucket, a refused
        key): ``ArchiveError``, naming the store."""
        for _ in self.store.list(f"{self.prefix}/" if self.prefix else "", limit=1):
            break

    def _key(self, request: str, number: int, kind: str) -> str:
        folder = f"{self.prefix}/{request}" if self.prefix else request
        return f"{folder}/{number:06d}.{kind}.json"

    def last(self, request: str) -> StoredClaim | None:
        """The request's latest claim with its result, or None if no run ever claimed it."""
        folder = f"{self.prefix}/{request}/" if self.prefix else f"{request}/"
        numbers: dict[int, set[str]] = {}
        for info in self.store.list(folder):
            found = _NAME.match(info.key[len(folder) :])
            if found:
                numbers.setdefault(int(found.group(1)), set()).add(found.group(2))
        claimed = [n for n, kinds in numbers.items() if "claim" in kinds]
        if not claimed:
            return None
        number = max(claimed)
        claim = self._read(self._key(request, number, "claim"))
        result = self._read(self._key(request, number, "result")) if "result" in numbers[number] else None
        return StoredClaim(number, claim or {}, result)

    def _read(self, key: str) -> dict[str, Any] | None:
        try:
            value = decode(self.store.read(key), where=f"{self.store.url}/{key}")
        except DataError:  # a claim being written this instant (an empty file on disk): a claim all the same
            return None
        return value if isinstance(value, dict) else None

    def claim(
        self,
        event_id: str,
        *,
        target: str,
        identity: Mapping[str, str],
        force: bool,
        retry_unknown: bool,
        in_flight_seconds: float = 0.0,
    ) -> tuple[int | None, StoredClaim | None, str | None]:
        """Claim the next attempt of the request ``identity["request"]`` for ``event_id``: ``(number, None,
        None)`` when this run may send it, else ``(None, last claim, why not)``."""
        request = identity["request"]
        last = self.last(request)
        if last is not None:
            why = self.refusal(last, force=force, retry_unknown=retry_unknown)
            if why is not None:
                return None, last, why
        number = (last.number if last else 0) + 1
        body = {
            "schema": "firehose.replay-claim/1",
            "event_id": event_id,
            "attempt": number,
            "run": self.run_id,
            "host": self.host,
            "pid": os.getpid(),
            "claimed_at": datetime.now(UTC).isoformat(),
            "target": target,
            "identity": dict(identity),
            "in_flight_seconds": in_flight_seconds,
        }
        key = self._key(request, number, "claim")
        if self.store.write(key, encode(body)):
            return number, None, None
        # Taken: by another run this instant, or by our own write that a retried PUT saw as existing.
        mine = self._read(key)
        if mine is not None and mine.get("run") == self.run_id:
            return number, None, None
        taken = StoredClaim(number, mine or {}, None)
        return None, taken, f"claimed by another run at the same moment ({_who(taken)})"

    @staticmethod
    def refusal(last: StoredClaim, *, force: bool, retry_unknown: bool) -> str | None:
        """Why the lead must not be sent again given its last claim (the same rules as the local ledger, and
        never while the claiming machine may still be sending it)."""
        if last.in_flight(datetime.now(UTC)):
            return f"being sent right now by {_who(last)} (event {last.claim.get('event_id')})"
        status = last.status
        if status == "sent" and not force:
            lead = last.result.get("new_lead_id") if last.result else None
            return f"already sent ({_who(last)}, new lead {lead}); --force sends again"
        if status in (None, "unknown") and not (retry_unknown or force):
            state = "no answer" if status == "unknown" else "no result recorded"
            return f"claimed by {_who(last)} with {state}: it may have reached the flow; --retry-unknown sends again"
        return None

    def finish(self, event_id: str, request: str, number: int, result: Mapping[str, Any]) -> bool:
        """Record how attempt ``number`` ended (create-only: the first word on an attempt stands; False when
        another run had already written one)."""
        body = {**result, "event_id": event_id, "attempt": number, "run": self.run_id,
                "finished_at": datetime.now(UTC).isoformat()}  # fmt: skip
        return self.store.write(self._key(request, number, "result"), encode(body))


def _who(claim: StoredClaim) -> str:
    found = claim.claim
    return f"run {found.get('run', '?')} on {found.get('host', '?')} at {found.get('claimed_at', '?')}"
