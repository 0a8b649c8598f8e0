"""Sending a plan: each lead claimed in the ledger (and a shared ledger, for several machines) before its
request goes out, ``concurrency`` at a time, paced by the rate limiter, and recorded when its answer comes.
A LeadConduit submit creates a new lead and has no idempotency key (facts.md §3.4): the claim is what makes
"never twice" hold, across a ``kill -9`` too.
"""

from __future__ import annotations

import queue
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from firehose import payload
from firehose.claims import StoredClaim, StoreLedger, in_flight_seconds
from firehose.claims import claimed_at as claim_time
from firehose.codec import decode
from firehose.errors import ArchiveError, DataError, UsageError
from firehose.http import Delivery, Sender
from firehose.replaying.plan import LeadResult, Plan, ReplayOptions, ledger_entry, skipped_row
from firehose.replaying.request import Prepared, body_bytes
from firehose.replaying.settle import Doubt, Settler
from firehose.secret import REDACTED, is_credential
from firehose.state import SENDING, LedgerEntry, ReplayLedger


class RateLimiter:
    """At most ``per_second`` starts per second, shared by every sending thread: each start comes at least
    ``MARGIN / per_second`` after the one before it actually began (not after when it was due), so a thread
    that woke late never lets the next one follow it closely: no bursts.

    The 2% margin is for what happens after a start (network, the target's own scheduling): requests spaced
    exactly 1/R apart were measured arriving 51 and 52 in one second at 50/s. The rate achieved is about 2%
    under the one asked for.
    """

    MARGIN = 1.02

    def __init__(
        self,
        per_second: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if per_second <= 0:
            raise UsageError(f"--rate must be above 0, got {per_second}")
        self.interval = self.MARGIN / per_second
        self._clock, self._sleep = clock, sleep
        self._last = float("-inf")
        self._lock = threading.Lock()

    def __call__(self) -> None:
        while True:
            with self._lock:
                now = self._clock()
                due = self._last + self.interval
                if now >= due:
                    self._last = now
                    return
            self._sleep(due - now)  # then look again: another thread may have started meanwhile


@dataclass(frozen=True)
class _Skip:
    """A worker's word that the shared ledger refused the lead: nothing was sent."""

    reason: str


def send(
    to_send: Plan,
    ledger: ReplayLedger,
    sender: Sender,
    options: ReplayOptions,
    *,
    dead_letter: Callable[[LeadResult, Mapping[str, Any]], None],
    on_result: Callable[[LeadResult], None],
    shared: StoreLedger | None = None,
    settler: Settler | None = None,
) -> None:
    """Send the planned events, ``options.concurrency`` at a time.

    Each lead is first *claimed* in the local ledger (``ReplayLedger.claim``: atomic across processes), with
    the final rows of the answers that came in since, in one transaction; a lead another run claimed since
    planning is skipped with why. With ``shared`` (a ledger in a store, for several machines), the worker
    then claims it there with a create-only object before sending. So a ``kill -9`` leaves at most
    ``concurrency`` leads ``sending`` (in doubt), and an answer whose final row was not committed yet shows as
    in doubt too: never as not sent. A claim whose request never reached the socket is released (``failed``,
    free to send again). The sender paces each attempt itself (the rate limiter), right before the socket.
    """
    _Sending(ledger, sender, options, dead_letter, on_result, shared, settler).run(to_send)


Answer = tuple[Prepared, Mapping[str, Any], int, "Delivery | _Skip | BaseException"]
"""A worker's answer for one lead: what was sent, its event, attempts before this run, and what came back."""


class _Sending:
    """One ``send``: the claims in this thread, the requests in ``concurrency`` workers, their answers back here."""

    def __init__(
        self,
        ledger: ReplayLedger,
        sender: Sender,
        options: ReplayOptions,
        dead_letter: Callable[[LeadResult, Mapping[str, Any]], None],
        on_result: Callable[[LeadResult], None],
        shared: StoreLedger | None,
        settler: Settler | None,
    ) -> None:
        self.ledger, self.sender, self.options = ledger, sender, options
        self.dead_letter, self.on_result = dead_letter, on_result
        self.shared, self.settler = shared, settler
        self.answers: queue.SimpleQueue[Answer] = queue.SimpleQueue()
        self.finals: list[LedgerEntry] = []
        """Final rows of answers not yet written: they go in the next claim's transaction, or the last write."""
        self.in_flight = 0

    def run(self, to_send: Plan) -> None:
        pool = ThreadPoolExecutor(max_workers=self.options.concurrency, thread_name_prefix="replay")
        try:
            for earlier, planned, known in to_send.entries():
                self._hand_over(pool, planned, earlier, known)
            while self.in_flight:
                self._settle()
        finally:
            # Stopped early (a caller's callback raised, the dead-letter file failed, Ctrl-C): the requests already
            # handed over finish, and every answer that came is recorded: no lead that was answered stays in doubt.
            pool.shutdown(wait=True)
            while self.in_flight:
                prepared, answered, earlier, outcome = self.answers.get()
                self.in_flight -= 1
                if not isinstance(outcome, BaseException):
                    self._record(prepared, answered, earlier, outcome)
            self.ledger.write(self.finals)

    def _hand_over(
        self, pool: ThreadPoolExecutor, event: Mapping[str, Any], earlier: int, known: Mapping[str, str] | None
    ) -> None:
        options = self.options
        try:
            prepared = options.prepare(event, known)
        except DataError as exc:  # refused before any claim: nothing to release
            result = skipped_row(event, "failed", reason=str(exc))
            self.dead_letter(result, event)
            self.on_result(result)
            return
        while self.in_flight >= options.concurrency:  # every request handed over starts at once
            self._settle()
        claim = ledger_entry(prepared, SENDING, earlier, options)
        why = self.ledger.claim(claim, self.finals, force=options.force, retry_unknown=options.retry_unknown)
        self.finals.clear()
        if why is not None:
            self.on_result(skipped_row(event, "skipped", reason=why))
            return
        pool.submit(self._work, prepared, event, earlier)
        self.in_flight += 1

    def _work(self, prepared: Prepared, event: Mapping[str, Any], earlier: int) -> None:
        outcome: Delivery | _Skip | BaseException
        try:
            outcome = _deliver(prepared, self.sender, self.options, self.shared, self.settler)
        except BaseException as exc:  # handed back, raised in the sending thread
            outcome = exc
        self.answers.put((prepared, event, earlier, outcome))

    def _settle(self) -> None:
        prepared, event, earlier, outcome = self.answers.get()
        self.in_flight -= 1
        if isinstance(outcome, BaseException):
            # Nothing is known of whether it went out: the claim stays as it is (in doubt), and the run stops.
            raise outcome
        result = self._record(prepared, event, earlier, outcome)  # recorded before anyone hears of it
        if result.status == "failed":
            self.dead_letter(result, event)
        self.on_result(result)

    def _record(
        self, prepared: Prepared, event: Mapping[str, Any], earlier: int, outcome: Delivery | _Skip
    ) -> LeadResult:
        options = self.options
        if isinstance(outcome, _Skip):
            result = skipped_row(event, "skipped", reason=outcome.reason)
            self.finals.append(ledger_entry(prepared, "skipped", earlier, options, result))
        else:
            result = result_of(prepared, outcome, earlier, options)
            self.finals.append(ledger_entry(prepared, result.status, result.attempts, options, result))
        return result


def _deliver(
    prepared: Prepared,
    sender: Sender,
    options: ReplayOptions,
    shared: StoreLedger | None,
    settler: Settler | None,
) -> Delivery | _Skip:
    """Claim in the shared ledger (if any), send, and record the result there: one lead, in a worker thread.

    With a shared ledger the rate limit is waited for *before* the claim, so a claim is never older than its
    request by more than a store write: the ``in_flight_seconds`` it promises other machines holds."""
    if shared is None:
        return sender.deliver(
            prepared.method,
            prepared.url,
            prepared.headers,
            body_bytes(prepared),
        )
    request = prepared.identity["request"]
    sender.pace()
    try:
        number, last, why = _claim_shared(shared, prepared, options, sender)
        busy = last is not None and last.in_flight(datetime.now(UTC))
        if number is None and last is not None and last.status is None and settler is not None and not busy:
            number, why = _settle_shared(shared, last, prepared, settler, options, sender)
    except ArchiveError as exc:
        return Delivery("unsent", 0, reason=f"not sent: the shared ledger could not be used ({exc})")
    if number is None:
        return _Skip(why or "claimed by another run")
    delivery = sender.deliver(
        prepared.method,
        prepared.url,
        prepared.headers,
        body_bytes(prepared),
        paced=True,
    )
    result = result_of(prepared, delivery, 0, options)
    outcome = {
        "status": result.status,
        "http_status": result.http_status,
        "new_lead_id": result.new_lead_id,
        "new_outcome": result.new_outcome,
        "reason": result.reason,
    }
    try:
        if not shared.finish(prepared.event_id, request, number, outcome):
            note = "another run had already written this attempt's result in the shared ledger"
            return replace(delivery, reason=f"{delivery.reason or 'sent'}; {note}")
    except ArchiveError as exc:  # the claim stands without a result: others see it in doubt, never free
        return replace(delivery, reason=f"{delivery.reason or 'sent'}; its result is not in the shared ledger ({exc})")
    return delivery


def _settle_shared(
    shared: StoreLedger,
    last: StoredClaim,
    prepared: Prepared,
    settler: Settler,
    options: ReplayOptions,
    sender: Sender,
) -> tuple[int | None, str | None]:
    """A claim in the shared ledger without a result whose machine is done with it (died, or gave up): settle it
    through LeadConduit; when it was not received, record that and claim the next attempt."""
    claim = last.claim
    claimed_at, in_flight = claim_time(claim), in_flight_seconds(claim)
    if claimed_at is None or in_flight is None:
        return None, "claimed with no result, and the claim cannot be read"
    doubt = Doubt(str(claim.get("event_id", "")), str(claim.get("target", "")), claimed_at, claim.get("identity") or {})
    outcome = settler.settle(replace(doubt, in_flight_seconds=in_flight))
    if outcome.status == "unknown":
        return None, outcome.reason
    settled = {"status": outcome.status, "reason": outcome.reason, "new_lead_id": outcome.new_lead_id, "settled": True}
    if not shared.finish(doubt.event_id, prepared.identity["request"], last.number, settled):
        return None, "another run settled it at the same moment"
    if outcome.status == "sent":
        return None, outcome.reason
    number, _, why = _claim_shared(shared, prepared, options, sender)
    return number, why


def _claim_shared(
    shared: StoreLedger, prepared: Prepared, options: ReplayOptions, sender: Sender
) -> tuple[int | None, StoredClaim | None, str | None]:
    return shared.claim(
        prepared.event_id,
        target=prepared.shown_url(include_pii=options.include_pii),
        identity=prepared.identity,
        force=options.force,
        retry_unknown=options.retry_unknown,
        in_flight_seconds=sender.longest_seconds(),
    )


def result_of(prepared: Prepared, delivery: Delivery, earlier_attempts: int, options: ReplayOptions) -> LeadResult:
    """What an answer means for the lead. 2xx: sent. 303 to a request that carried ``redir_url``: sent (it is
    LeadConduit's answer to a taken lead). Any other 3xx: failed, the lead was not taken (``Location`` named).
    No usable answer after sending: unknown. Nothing sent, or refused: failed."""
    taken = delivery.accepted or (
        delivery.state == "answered" and delivery.status == 303 and prepared.redirect_expected
    )
    outcome, lead_id, reason = read_answer(delivery.body, delivery.content_type) if taken else (None,) * 3
    if taken:
        status = "sent"
    elif delivery.state == "unknown":
        status = "unknown"
    else:
        status = "failed"
    why = delivery.reason if status != "sent" else reason
    if why:
        why = _masked(why, prepared, lead_values=not options.include_pii)
    if status == "failed" and delivery.attempts > 1:
        why = f"{why} (gave up after {delivery.attempts} attempts)"
    return LeadResult(
        prepared.event_id,
        prepared.lead_id,
        prepared.flow_id,
        status,
        prepared.original_outcome,
        outcome,
        lead_id,
        delivery.status,
        earlier_attempts + delivery.attempts,
        why,
        prepared.shown_url(include_pii=options.include_pii),
    )


def _masked(text: str, prepared: Prepared, *, lead_values: bool = True) -> str:
    """``text`` (a target's answer, quoted in a reason) with the credentials we sent as ``***``, and the lead's
    own values too (``lead_values``): a target that echoes the request back must not put a key in the ledger,
    the report or the dead letters, nor the lead without --include-pii."""
    sent_secrets = {value for name, value in prepared.headers if is_credential(name)}
    if not lead_values:
        return _replace_all(text, sent_secrets)
    try:
        kind = payload.kind_of(prepared.original.header("Content-Type"))
        values = {**payload.fields(kind, prepared.body), **payload.query_fields(urlsplit(prepared.url).query)}
    except DataError:
        values = payload.query_fields(urlsplit(prepared.url).query)
    return _replace_all(text, {v for v in values.values() if len(v) >= 3} | sent_secrets)


def _replace_all(text: str, values: set[str]) -> str:
    for value in sorted(values, key=len, reverse=True):  # the longest first: one may hold another
        text = text.replace(value, REDACTED)
    return text


def read_answer(body: bytes, content_type: str) -> tuple[str | None, str | None, str | None]:
    """``(outcome, new lead id, reason)`` from a submit's answer: the inbound's JSON object, the API page's
    list of metadata records (facts.md §3.2), or the XML ``<result>``; Nones for what is not there."""
    text = body.strip()
    if not text:
        return None, None, None
    if text.startswith(b"<"):
        try:
            root = ET.fromstring(text)
        except ET.ParseError:
            return None, None, None
        return root.findtext("outcome"), root.findtext("lead/id"), root.findtext("reason")
    try:
        answer = decode(text, where="the submit answer")
    except DataError:
        return None, None, None
    if isinstance(answer, list) and answer and isinstance(answer[0], dict):
        inner = answer[0].get("response", {}).get("body")
        if isinstance(inner, str):
            return read_answer(inner.encode(), "application/json")
        answer = answer[0]
    if not isinstance(answer, dict):
        return None, None, None
    lead = answer.get("lead")
    lead_id = lead.get("id") if isinstance(lead, dict) else None
    reason = answer.get("reason")
    outcome = answer.get("outcome")
    return (
        str(outcome) if outcome is not None else None,
        str(lead_id) if lead_id is not None else None,
        str(reason) if reason is not None else None,
    )
