"""A replay's options, and its plan: each selected event once, without those the ledger says were sent (or may
have been), those of leads a replay made, and those past ``max_count``. The events to send are spooled to a
temporary file, so memory stays flat however many are selected.
"""

from __future__ import annotations

import tempfile
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO, Any

from firehose.arguments import lines, names
from firehose.codec import decode, encode_line
from firehose.errors import DataError, UsageError
from firehose.event import EventView
from firehose.replaying.request import Edits, Prepared, Target, prepare
from firehose.replaying.selection import Selection
from firehose.secret import Secret, redact_url
from firehose.state import SENDING, LedgerEntry, ReplayLedger, refusal, same_lead

STATUSES = ("sent", "failed", "unknown", "skipped")
LEAD_FIELDS = (
    "status", "event_id", "lead_id", "flow_id", "original_outcome", "new_outcome", "new_lead_id", "http_status",
    "attempts", "reason",
)  # fmt: skip
"""A lead's fields in a report's rows, in order."""


@dataclass(frozen=True, repr=False)
class ReplayOptions:
    """What a replay sends, from where, to where, and how. Each field is the command's flag of the same name."""

    target: Target = field(default_factory=Target)
    """``--target``, or ``--to-flow``/``--to-source``; without a URL, LeadConduit at the settings' URL."""
    selection: Selection = field(default_factory=Selection)
    archives: tuple[str, ...] = ()
    """``--from``: archive URLs to read source events from."""
    from_api: bool = False
    """``--from-api``: read them from ``GET /events`` (the default when no archive is named)."""
    ids: Iterable[str] | Path | None = None
    """``--ids``: the lines of an id list (a bare id, or NDJSON such as a dead-letter file); read once."""
    edits: Edits = field(default_factory=Edits)
    source_key: Secret | None = None
    force: bool = False
    retry_unknown: bool = False
    max_count: int | None = None
    concurrency: int = 4
    keep_query_credentials: bool = False
    include_pii: bool = False
    """Show lead data in diffs, and keep query values (lead data in a GET submit) in the ledger's and the
    report's URLs."""
    dry_run: bool = False
    """Plan and diff; send nothing, claim nothing, write no ledger or dead letter."""
    rate: float | None = None
    """At most this many requests per second (None: no limit)."""
    max_attempts: int = 5
    timeout_seconds: float = 30.0
    settle_after_seconds: float = 300.0
    follow_redirects: bool = False
    ledger: str | None = None
    """``--ledger``: a store URL where each lead is also claimed, for replays run from several machines."""
    confirm_over: int | None = 100
    """Ask ``confirm`` before sending more leads than this (None: never ask)."""
    dead_letter: Path = Path("replay-dead-letter.ndjson")
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        # Tolerant of what a Python caller writes: one archive URL, one id or an id file, a dead letter as text.
        object.__setattr__(self, "archives", names(self.archives, "archives"))
        object.__setattr__(self, "ids", lines(self.ids, "--ids"))
        object.__setattr__(self, "dead_letter", Path(self.dead_letter))
        for name, value, least in (("--max", self.max_count, 1), ("--confirm-over", self.confirm_over, 0)):
            if value is not None and value < least:
                raise UsageError(f"{name} must be at least {least}, got {value}")

    def __repr__(self) -> str:
        """Its fields, with any URL's credentials hidden (a target's user info, an archive's SAS token): a
        repr goes to task logs."""
        shown = {f.name: getattr(self, f.name) for f in fields(self)}
        shown["archives"] = tuple(redact_url(url) for url in self.archives)
        shown["ledger"] = redact_url(self.ledger) if self.ledger else None
        return f"ReplayOptions({', '.join(f'{name}={value!r}' for name, value in shown.items())})"

    def prepare(self, event: Mapping[str, Any], known_identity: Mapping[str, str] | None = None) -> Prepared:
        return prepare(
            event,
            self.target,
            self.edits,
            self.source_key,
            keep_query_credentials=self.keep_query_credentials,
            known_identity=known_identity,
        )


@dataclass(frozen=True)
class LeadResult:
    """One event's row in a replay report."""

    event_id: str
    lead_id: str | None
    flow_id: str | None
    status: str  # sent | failed | unknown | skipped
    original_outcome: str | None = None
    new_outcome: str | None = None
    new_lead_id: str | None = None
    http_status: int | None = None
    attempts: int = 0
    reason: str | None = None
    url: str | None = None
    """Where it went, redacted (``Prepared.shown_url``)."""

    def row(self) -> dict[str, Any]:
        """The lead's row in a report (``ReplayResult.FIELDS``)."""
        return {name: getattr(self, name) for name in LEAD_FIELDS}

    @property
    def pair(self) -> str:
        return f"{self.original_outcome or '?'} → {self.new_outcome or '?'}"


@dataclass
class Plan:
    """What a run will send: the events (spooled to a temporary file, so memory stays flat), and the events
    it will not send, each with why."""

    spool: IO[bytes]
    count: int = 0
    skipped: list[LeadResult] = field(default_factory=list)
    left_over: int = 0
    """Selected, but past ``max_count``: left for a later run."""

    def events(self) -> Iterator[dict[str, Any]]:
        for _, event, _ in self.entries():
            yield event

    def entries(self) -> Iterator[tuple[int, dict[str, Any], dict[str, str] | None]]:
        """(attempts made by earlier runs, event, its request's identity if the plan computed it) for each event
        to send."""
        self.spool.seek(0)
        for line in self.spool:
            item = decode(line, where="the replay spool")
            yield int(item["attempts"]), item["event"], item.get("identity")

    def close(self) -> None:
        self.spool.close()


@dataclass
class Summary:
    """Counts of a run, per status, per outcome pair and per flow."""

    statuses: Counter[str] = field(default_factory=Counter)
    pairs: Counter[str] = field(default_factory=Counter)
    by_flow: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))

    def add(self, result: LeadResult) -> None:
        self.statuses[result.status] += 1
        self.by_flow[result.flow_id or "?"][result.status] += 1
        if result.status == "sent":
            self.pairs[result.pair] += 1


def plan(events: Iterable[Mapping[str, Any]], ledger: ReplayLedger, options: ReplayOptions) -> Plan:
    """Choose what to send: each selected event once, leaving out those the ledger says were sent (or may
    have been: ``unknown``) unless forced, those of leads that a replay made (a replay's own source event
    matches the same selection: sending it would post the lead a second time), and stopping at ``max_count``.

    The plan is advice: ``send`` claims each lead again, atomically, right before its request goes out."""
    result = Plan(tempfile.TemporaryFile())  # noqa: SIM115 - closed by Plan.close(), or below on an error
    try:
        _fill(result, events, ledger, options)
    except BaseException:
        result.close()
        raise
    return result


def _fill(result: Plan, events: Iterable[Mapping[str, Any]], ledger: ReplayLedger, options: ReplayOptions) -> None:
    seen: set[str] = set()
    for event in events:
        view = EventView(event)
        if view.id in seen:  # the same event from two destinations, or listed twice
            continue
        seen.add(view.id)
        entry, twin, origin, known = _lookup(event, ledger, options)
        if origin is not None:
            result.skipped.append(
                skipped_row(event, "skipped", reason=f"this lead was made by the replay of event {origin}")
            )
            continue
        reason = refusal(entry, force=options.force, retry_unknown=options.retry_unknown)
        if reason is None and twin is not None and not options.force:
            reason = same_lead(twin)
        if reason:
            # A lead still in doubt is reported as such (and the run exits 1) until something settles it.
            doubt = entry is not None and entry.status in ("unknown", SENDING) and reason.startswith("sent before")
            result.skipped.append(skipped_row(event, "unknown" if doubt else "skipped", reason=reason, entry=entry))
            continue
        if options.max_count is not None and result.count >= options.max_count:
            result.left_over += 1  # counted, not listed: a later run takes them
            continue
        spooled = {"attempts": entry.attempts if entry else 0, "event": dict(event), "identity": known}
        result.spool.write(encode_line(spooled))
        result.count += 1


def _lookup(
    event: Mapping[str, Any], ledger: ReplayLedger, options: ReplayOptions
) -> tuple[LedgerEntry | None, LedgerEntry | None, str | None, dict[str, str] | None]:
    """The event's own ledger row; another event's row for the very request this one would send (sent, or
    may have been: a replay's own new source event, or a lead its vendor sent twice; one lead, one post); the
    event whose replay made this event's lead; and this request's identity, for ``send``."""
    view = EventView(event)
    try:
        prepared = options.prepare(event)
    except DataError:  # send() fails it with the reason, before any claim
        origin = ledger.replayed_as(view.lead_id) if view.lead_id else None
        return ledger.get(view.id), None, origin, None
    own, twin, origin = ledger.lookup(ledger_entry(prepared, SENDING, 0, options))
    return own, twin, origin, dict(prepared.identity)


def skipped_row(event: Mapping[str, Any], status: str, *, reason: str, entry: LedgerEntry | None = None) -> LeadResult:
    """The row of an event a run did not send (or sent before): from the event, and its ledger entry if any."""
    view = EventView(event)
    flow = view.get("vars", "flow", "id")
    return LeadResult(
        view.id,
        view.lead_id,
        str(flow) if flow else None,
        status,
        str(event.get("outcome")) if event.get("outcome") is not None else None,
        new_outcome=entry.new_outcome if entry else None,
        new_lead_id=entry.new_lead_id if entry else None,
        http_status=entry.http_status if entry else None,
        reason=reason,
    )


def ledger_entry(
    prepared: Prepared, status: str, attempts: int, options: ReplayOptions, result: LeadResult | None = None
) -> LedgerEntry:
    return LedgerEntry(
        prepared.event_id,
        prepared.lead_id,
        prepared.flow_id,
        prepared.shown_url(include_pii=options.include_pii),
        status,
        attempts,
        result.http_status if result else None,
        prepared.original_outcome,
        result.new_outcome if result else None,
        result.new_lead_id if result else None,
        result.reason if result else None,
        identity=prepared.identity,
        claimed_by=options.run_id,
    )
