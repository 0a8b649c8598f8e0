"""Replay: send the stored inbound requests of ``source`` events to a flow again, once.

select (the API, an archive, or a list of ids) → rebuild each request from the event's ``request`` → diff it
against the original (``--dry-run``) → send with a rate limit, concurrency and retries → record each event in
the ledger (``state.ReplayLedger``).

A LeadConduit submit creates a new lead and runs every step again (deliveries, fees; facts.md §3.4), and there
is no idempotency key. So the ledger is written *before* a request goes out and again when its answer comes;
an event already ``sent`` is never posted again unless ``force``; one whose request went out without an answer
is ``unknown`` and is not retried unless ``retry_unknown``.
"""

from __future__ import annotations

import base64
import queue
import re
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

from firehose import payload
from firehose.api import EventQuery, LeadConduit
from firehose.archive import Store
from firehose.archive.layout import ArchivedEvent
from firehose.archive.listing import ArchiveListing, find_event_keys, read_many
from firehose.codec import decode, encode, encode_line, records
from firehose.errors import ArchiveError, DataError, FirehoseError, UsageError
from firehose.event import EventView
from firehose.http import Delivery, Sender
from firehose.ids import seconds_of
from firehose.rules import RuleError, evaluate_all
from firehose.secret import Secret
from firehose.state import SENDING, LedgerEntry, ReplayLedger

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        # Not hop-by-hop by RFC 9110, but belonging to the original connection, not to the lead: the HTTP
        # client sets its own Host, Content-Length and encodings, and the proxies' view of the first sender
        # (an IP address: lead data) is not ours to repeat.
        "host",
        "content-length",
        "expect",
        "accept-encoding",
        "forwarded",
        "via",
        "x-real-ip",
    }
)
CREDENTIAL_WORDS = ("authorization", "cookie", "api-key", "apikey", "api_key", "token", "secret", "password", "auth")
"""A header whose name holds one of these is taken for a credential: dropped, and never shown."""
STATUSES = ("sent", "failed", "unknown", "skipped")


def is_credential(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in CREDENTIAL_WORDS)


def _dropped(name: str) -> bool:
    lowered = name.lower()
    return lowered in HOP_BY_HOP or lowered.startswith("x-forwarded-") or is_credential(lowered)


@dataclass(frozen=True)
class StoredRequest:
    """A source event's ``request`` as LeadConduit recorded it (HttpRequest in the OpenAPI file)."""

    method: str
    uri: str
    headers: tuple[tuple[str, str], ...]
    body: str

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key.lower() == name.lower()), None)

    @classmethod
    def of(cls, event: Mapping[str, Any]) -> StoredRequest:
        """The event's request; ``DataError`` naming the event when it is not a source event or has none."""
        view = EventView(event)
        if view.type != "source":
            raise DataError(
                f"event {view.id} is a {view.type or 'typeless'} event: replay sends source events only, "
                "as they alone carry the inbound request"
            )
        raw = event.get("request")
        if not isinstance(raw, Mapping) or not raw.get("uri"):
            raise DataError(f"event {view.id} has no stored request (request.uri) to replay")
        headers = raw.get("headers") or {}
        pairs: list[tuple[str, str]] = []
        if isinstance(headers, Mapping):
            for name, value in headers.items():
                values = value if isinstance(value, list) else [value]
                pairs.extend((str(name), str(v)) for v in values)
        elif isinstance(headers, list):  # tolerate [[name, value], ...] (not documented, seen in other tools)
            pairs.extend((str(p[0]), str(p[1])) for p in headers if isinstance(p, list | tuple) and len(p) == 2)
        body = raw.get("body")
        return cls(
            str(raw.get("method") or "POST").upper(),
            str(raw["uri"]),
            tuple(pairs),
            body if isinstance(body, str) else "" if body is None else encode(body).decode(),
        )


@dataclass(frozen=True)
class Target:
    """Where a replay goes: ``url`` (``--target``; a bare ``scheme://host`` keeps each event's own path), or the
    original host with ``flow_id``/``source_id`` (``--to-flow``/``--to-source``), or else the original URI.
    ``base_url`` completes path-only URIs."""

    url: str | None = None
    flow_id: str | None = None
    source_id: str | None = None
    base_url: str = "https://app.leadconduit.com"

    def __post_init__(self) -> None:
        if self.url and (self.flow_id or self.source_id):
            raise UsageError("--target and --to-flow/--to-source cannot be used together")

    def resolve(self, original_uri: str) -> str:
        original = urlsplit(original_uri)
        if not original.netloc:
            base = urlsplit(self.base_url)
            original = SplitResult(base.scheme, base.netloc, original.path, original.query, "")
        if self.url:
            # A bare host (no path) keeps each event's own path: a rehearsal of many flows on another host.
            target = urlsplit(self.url)
            path = target.path if target.path not in ("", "/") else original.path
            query = target.query or original.query
            return urlunsplit((target.scheme, target.netloc, path, query, ""))
        path = original.path
        if self.flow_id or self.source_id:
            found = re.match(r"^(.*?)/flows/([^/]+)/sources/([^/]+)(/.*)?$", path)
            if not found:
                raise DataError(f"the stored URI {original.path!r} is not a flow submit URL; give --target")
            flow = self.flow_id or found.group(2)
            source = self.source_id or found.group(3)
            path = f"{found.group(1)}/flows/{flow}/sources/{source}{found.group(4) or '/submit'}"
        return urlunsplit((original.scheme, original.netloc, path, original.query, ""))


@dataclass(frozen=True)
class Edits:
    """``--set FIELD=VALUE`` (in order), ``--unset FIELD``, ``--mark-test`` (``is_test=true``)."""

    sets: tuple[tuple[str, str], ...] = ()
    unsets: tuple[str, ...] = ()
    mark_test: bool = False

    def all_sets(self) -> list[tuple[str, Any]]:
        return [*self.sets, *((("is_test", True),) if self.mark_test else ())]

    def __bool__(self) -> bool:
        return bool(self.sets or self.unsets or self.mark_test)

    @property
    def operator_fields(self) -> set[str]:
        """Fields whose new value the operator chose: not lead data, so diffs may show it."""
        return {name for name, _ in self.all_sets()}


@dataclass(frozen=True)
class Prepared:
    """The request a replay sends for one source event, beside the one LeadConduit stored."""

    event_id: str
    lead_id: str | None
    flow_id: str | None
    source_id: str | None
    original_outcome: str | None
    original: StoredRequest
    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: str


def prepare(event: Mapping[str, Any], target: Target, edits: Edits, source_key: Secret | None = None) -> Prepared:
    """Rebuild a source event's request: its method, stored body byte for byte (unless edited), Content-Type
    and query string; hop-by-hop and credential headers dropped, ``Accept: application/json`` so the answer
    can be read, and Basic auth with ``source_key`` for sources that require it."""
    stored = StoredRequest.of(event)
    view = EventView(event)
    url = target.resolve(stored.uri)
    body = stored.body
    content_type = stored.header("Content-Type")
    if edits:
        try:
            kind = payload.kind_of(content_type)
            split = urlsplit(url)
            query_names = set(payload.query_fields(split.query))
            sets = edits.all_sets()
            # The inbound merges the query string into the body, the query winning: edit a field where it is.
            in_query = [(n, v) for n, v in sets if n in query_names]
            unset_query = [n for n in edits.unsets if n in query_names]
            if in_query or unset_query:
                url = urlunsplit(split._replace(query=payload.edit_form(split.query, in_query, unset_query)))
            if body.strip() or stored.method != "GET":
                edited = payload.edit(kind, body, [(n, v) for n, v in sets if n not in query_names], edits.unsets)
                # An edit that changes no field (is_test already true) keeps the stored bytes.
                if payload.fields(kind, edited) != payload.fields(kind, body):
                    body = edited
            elif sets:  # a GET submit carries its fields in the query string only
                split = urlsplit(url)
                url = urlunsplit(split._replace(query=payload.edit_form(split.query, sets, [])))
        except DataError as exc:
            raise DataError(f"event {view.id}: cannot apply the edits: {exc}") from None
    headers = [(name, value) for name, value in stored.headers if not _dropped(name)]
    headers = [(name, value) for name, value in headers if name.lower() != "accept"]
    headers.append(("Accept", "application/json"))
    if source_key is not None:
        token = base64.b64encode(f"API:{source_key.reveal()}".encode()).decode()
        headers.append(("Authorization", f"Basic {token}"))
    flow = view.get("vars", "flow", "id")
    source = view.get("vars", "source", "id")
    return Prepared(
        view.id,
        view.lead_id,
        str(flow) if flow else None,
        str(source) if source else None,
        str(event.get("outcome")) if event.get("outcome") is not None else None,
        stored,
        stored.method,
        url,
        tuple(headers),
        body,
    )


# -- the diff ---------------------------------------------------------------------------------------------
REDACTED = "***"


def request_diff(prepared: Prepared, *, include_pii: bool = False, edits: Edits | None = None) -> dict[str, Any]:
    """What changes between the stored request and the one a replay sends: URL, headers, body field by field.

    Lead data (field values, header values, query values) shows as ``***`` unless ``include_pii``, except
    values the operator set; credentials always show as ``***``."""
    chosen = edits.operator_fields if edits else set()
    original = prepared.original

    def shown(value: str, field_name: str | None = None) -> str:
        return value if include_pii or (field_name is not None and field_name in chosen) else REDACTED

    before_url, after_url = _absolute(original.uri, prepared.url), prepared.url
    url = {
        "from": _url_shown(before_url, include_pii),
        "to": _url_shown(after_url, include_pii),
        "changed": before_url != after_url,
    }
    before_headers = {name.lower(): (name, value) for name, value in original.headers}
    after_headers = {name.lower(): (name, value) for name, value in prepared.headers}
    headers: list[dict[str, Any]] = []
    for key, (name, value) in before_headers.items():
        if key not in after_headers:
            hidden = REDACTED if is_credential(key) else shown(value)
            headers.append({"change": "removed", "header": name, "from": hidden})
        elif after_headers[key][1] != value:
            headers.append(
                {
                    "change": "changed",
                    "header": name,
                    "from": REDACTED if is_credential(key) else shown(value),
                    "to": REDACTED if is_credential(key) else after_headers[key][1],
                }
            )
    for key, (name, value) in after_headers.items():
        if key not in before_headers:
            headers.append({"change": "added", "header": name, "to": REDACTED if is_credential(key) else value})
    kind = payload.kind_of(original.header("Content-Type"))
    body: dict[str, Any] = {
        "content_type": original.header("Content-Type"),
        "identical": original.body == prepared.body,
        "bytes": len(prepared.body.encode()),
        "fields": [],
    }
    if not body["identical"]:
        try:
            old, new = payload.fields(kind, original.body), payload.fields(kind, prepared.body)
        except DataError as exc:
            body["fields"] = [{"change": "unreadable", "reason": str(exc)}]
        else:
            for name in [*old, *(n for n in new if n not in old)]:
                if name not in new:
                    body["fields"].append({"change": "removed", "field": name, "from": shown(old[name])})
                elif name not in old:
                    body["fields"].append({"change": "added", "field": name, "to": shown(new[name], name)})
                elif old[name] != new[name]:
                    body["fields"].append(
                        {"change": "changed", "field": name, "from": shown(old[name]), "to": shown(new[name], name)}
                    )
    return {
        "event_id": prepared.event_id,
        "lead_id": prepared.lead_id,
        "flow_id": prepared.flow_id,
        "original_outcome": prepared.original_outcome,
        "method": prepared.method,
        "url": url,
        "headers": headers,
        "body": body,
        "differs": url["changed"] or bool(headers) or not body["identical"],
    }


def _absolute(uri: str, like: str) -> str:
    split = urlsplit(uri)
    if split.netloc:
        return uri
    base = urlsplit(like)
    return urlunsplit((base.scheme, base.netloc, split.path, split.query, ""))


def _url_shown(url: str, include_pii: bool) -> str:
    """A URL with its query values hidden (a GET submit carries the lead in them)."""
    split = urlsplit(url)
    if include_pii or not split.query:
        return url
    names = [part.split("=", 1)[0] for part in split.query.split("&")]
    return urlunsplit(split._replace(query="&".join(f"{name}={REDACTED}" for name in names)))


def diff_lines(diff: Mapping[str, Any]) -> list[str]:
    """A diff for people: one line per change."""
    lines = [
        f"event {diff['event_id']} (lead {diff['lead_id']}, flow {diff['flow_id']}, was {diff['original_outcome']})"
    ]
    url = diff["url"]
    if url["changed"]:
        lines += [f"  url  - {diff['method']} {url['from']}", f"       + {diff['method']} {url['to']}"]
    else:
        lines.append(f"  url    {diff['method']} {url['to']}")
    marks = {"removed": "-", "added": "+", "changed": "~"}
    for header in diff["headers"]:
        detail = _change_text(header)
        lines.append(f"  header {marks[header['change']]} {header['header']}: {detail}")
    body = diff["body"]
    if body["identical"]:
        lines.append(f"  body   {body['bytes']} bytes ({body['content_type']}), identical")
    for item in body["fields"]:
        if item["change"] == "unreadable":
            lines.append(f"  body   ! {item['reason']}")
            continue
        detail = _change_text(item)
        lines.append(f"  body {marks[item['change']]} {item['field']}: {detail}")
    return lines


def _change_text(change: Mapping[str, Any]) -> str:
    if change["change"] == "changed":
        return f"{change['from']} -> {change['to']}"
    return str(change.get("to", change.get("from")))


# -- selection --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Selection:
    """Which source events to replay. Empty tuples select everything."""

    start: datetime | None = None
    end: datetime | None = None
    flows: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    outcomes: tuple[str, ...] = ()
    reason: str | None = None
    """A regular expression searched in the event's ``reason``."""
    rules: tuple[dict[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.reason is not None:
            try:
                re.compile(self.reason)
            except re.error as exc:
                raise UsageError(f"--reason {self.reason!r} is not a regular expression: {exc}") from None

    def matches(self, event: Mapping[str, Any]) -> bool:
        """Whether an event passes every filter (checked locally: for archives and id lists, and for what the
        API cannot filter)."""
        view = EventView(event)
        if view.type != "source":
            return False
        made = seconds_of(view.id)
        if self.start is not None and made < self.start.timestamp():
            return False
        if self.end is not None and made > self.end.timestamp():
            return False
        if self.flows and str(view.get("vars", "flow", "id")) not in self.flows:
            return False
        if self.sources and str(view.get("vars", "source", "id")) not in self.sources:
            return False
        if self.outcomes and str(event.get("outcome")) not in self.outcomes:
            return False
        if self.reason is not None and not re.search(self.reason, str(event.get("reason") or "")):
            return False
        if self.rules:
            try:
                return evaluate_all(list(self.rules), event)
            except RuleError as exc:
                raise UsageError(f"--rules: {exc}") from None
        return True

    def api_query(self) -> EventQuery:
        """The ``/events`` query that does as much of the filtering as LeadConduit documents."""
        rules = list(self.rules)
        for field_name, values in (("flow.id", self.flows), ("source.id", self.sources)):
            if values:
                rules.append({"lhv": field_name, "op": "is included in", "rhv": list(values)})
        return EventQuery(start=self.start, end=self.end, rules=tuple(rules), types=("source",), outcomes=self.outcomes)


@dataclass
class Problems:
    """Objects or ids that could not be used, each reported with its reason (never dropped in silence)."""

    items: list[tuple[str, str]] = field(default_factory=list)

    def add(self, where: str, reason: str) -> None:
        self.items.append((where, reason))


def from_api(api: LeadConduit, selection: Selection) -> Iterator[dict[str, Any]]:
    for event in api.iter_events(selection.api_query()):
        if selection.matches(event):
            yield event


def from_archive(store: Store, prefix: str, selection: Selection, problems: Problems) -> Iterator[dict[str, Any]]:
    """Source events archived under ``prefix``, for the leads of the window (from an hour before its start)."""
    start = int(selection.start.timestamp()) - 3600 if selection.start else None
    end = int(selection.end.timestamp()) if selection.end else None
    listing = ArchiveListing(store, prefix, start_seconds=start, end_seconds=end)
    keys = (row.key for row in listing if isinstance(row, ArchivedEvent))
    for key, body in read_many(store, keys):
        where = f"{store.url}/{key}"
        if isinstance(body, ArchiveError):
            problems.add(where, str(body))
            continue
        try:
            found = records(body, where=where)
        except DataError as exc:
            problems.add(where, str(exc))
            continue
        for event in found:
            if isinstance(event, dict) and selection.matches(event):
                yield event


def from_ids(
    lines: Iterable[str], fetch: Callable[[str], dict[str, Any] | None], problems: Problems
) -> Iterator[dict[str, Any]]:
    """Events named in an id list: a bare id per line, or NDJSON lines with ``event_id``/``id`` and, as in a
    dead-letter file, the ``event`` itself (used as is, nothing fetched). A named event that is not a source
    event is refused (``UsageError``), since the caller asked for it by name."""
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        event: dict[str, Any] | None
        if text.startswith("{"):
            row = decode(text, where=f"--ids line {number}")
            event = row.get("event") if isinstance(row.get("event"), dict) else None
            event_id = str(row.get("event_id") or row.get("id") or "")
            if event is None and event_id:
                event = fetch(event_id)
        else:
            event_id = text
            event = fetch(event_id)
        if event is None:
            problems.add(f"--ids line {number}", f"event {event_id or '?'} was not found")
            continue
        view = EventView(event)
        if view.type != "source":
            raise UsageError(
                f"event {view.id} (--ids line {number}) is a {view.type} event: replay sends source events only"
            )
        yield event


class Sources:
    """Where a replay's events come from: the API (``api``, or None), and archives (``(store, prefix)`` pairs)."""

    def __init__(self, api: LeadConduit | None, archives: Sequence[tuple[Store, str]], *, workers: int = 8) -> None:
        self.api, self.archives, self.workers = api, archives, workers

    def fetch(self, event_id: str, problems: Problems) -> dict[str, Any] | None:
        """One event by id: from the first archive that holds it, else from the API."""
        for store, prefix in self.archives:
            for key in find_event_keys(store, prefix, event_id, workers=self.workers):
                for record in records(store.read(key), where=f"{store.url}/{key}"):
                    if isinstance(record, dict) and str(record.get("id", "")).lower() == event_id.lower():
                        return record
        if self.api is not None:
            try:
                return self.api.get_event(event_id)
            except FirehoseError as exc:
                problems.add(event_id, str(exc))
        return None

    def select(
        self, selection: Selection, problems: Problems, *, ids: Iterable[str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """The selected source events: those named in ``ids`` (fetched where needed), else every matching one
        from the archives, then from the API."""
        if ids is not None:
            for event in from_ids(ids, lambda event_id: self.fetch(event_id, problems), problems):
                if selection.matches(event):
                    yield event
            return
        for store, prefix in self.archives:
            yield from from_archive(store, prefix, selection, problems)
        if self.api is not None:
            yield from from_api(self.api, selection)


# -- sending ----------------------------------------------------------------------------------------------
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
class ReplayOptions:
    target: Target
    edits: Edits = Edits()
    source_key: Secret | None = None
    force: bool = False
    retry_unknown: bool = False
    max_count: int | None = None
    concurrency: int = 4


@dataclass(frozen=True)
class Result:
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

    @property
    def pair(self) -> str:
        return f"{self.original_outcome or '?'} → {self.new_outcome or '?'}"


@dataclass
class Plan:
    """What a run will send: the events (spooled to a temporary file, so memory stays flat), and the events
    it will not send, each with why."""

    spool: IO[bytes]
    count: int = 0
    skipped: list[Result] = field(default_factory=list)
    left_over: int = 0
    """Selected, but past ``max_count``: left for a later run."""

    def events(self) -> Iterator[dict[str, Any]]:
        for _, event in self.entries():
            yield event

    def entries(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """(attempts made by earlier runs, event) for each event to send."""
        self.spool.seek(0)
        for line in self.spool:
            item = decode(line, where="the replay spool")
            yield int(item["attempts"]), item["event"]

    def close(self) -> None:
        self.spool.close()


@dataclass
class Summary:
    """Counts of a run, per status, per outcome pair and per flow."""

    statuses: Counter[str] = field(default_factory=Counter)
    pairs: Counter[str] = field(default_factory=Counter)
    by_flow: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))

    def add(self, result: Result) -> None:
        self.statuses[result.status] += 1
        self.by_flow[result.flow_id or "?"][result.status] += 1
        if result.status == "sent":
            self.pairs[result.pair] += 1


def plan(events: Iterable[Mapping[str, Any]], ledger: ReplayLedger, options: ReplayOptions) -> Plan:
    """Choose what to send: each selected event once, leaving out those the ledger says were sent (or may
    have been: ``unknown``) unless forced, those of leads that a replay made (a replay's own source event
    matches the same selection: sending it would post the lead a second time), and stopping at ``max_count``."""
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
        origin = ledger.replayed_as(view.lead_id) if view.lead_id else None
        if origin is not None:
            result.skipped.append(_row(event, "skipped", reason=f"this lead was made by the replay of event {origin}"))
            continue
        entry = ledger.get(view.id)
        if entry is not None and not options.force:
            reason = None
            if entry.status == "sent":
                when = f"{entry.updated_at:%Y-%m-%d %H:%M}Z" if entry.updated_at else "an earlier run"
                reason = f"already sent ({when}, new lead {entry.new_lead_id}); --force sends again"
            elif entry.status == "unknown" and not options.retry_unknown:
                reason = f"sent before without an answer ({entry.reason}); --retry-unknown sends again"
            if reason:
                result.skipped.append(_row(event, "skipped", reason=reason, entry=entry))
                continue
        if options.max_count is not None and result.count >= options.max_count:
            result.left_over += 1  # counted, not listed: a later run takes them
            continue
        result.spool.write(encode_line({"attempts": entry.attempts if entry else 0, "event": dict(event)}))
        result.count += 1


def _row(event: Mapping[str, Any], status: str, *, reason: str, entry: LedgerEntry | None = None) -> Result:
    view = EventView(event)
    flow = view.get("vars", "flow", "id")
    return Result(
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


def send(
    to_send: Plan,
    ledger: ReplayLedger,
    sender: Sender,
    options: ReplayOptions,
    *,
    dead_letter: Callable[[Result, Mapping[str, Any]], None],
    on_result: Callable[[Result], None],
) -> None:
    """Send the planned events, ``options.concurrency`` at a time.

    The ledger is written from this thread only, one transaction per lead handed over: the ``sending`` row of
    the lead about to go together with the final rows of the answers that came in since. So a ``kill -9``
    leaves at most ``concurrency`` leads ``sending`` (in doubt), and an answer whose final row was not
    committed yet shows as in doubt too: never as not sent. The sender paces each attempt itself (the rate
    limiter), right before it writes to the socket.
    """
    answers: queue.SimpleQueue[tuple[Prepared, Mapping[str, Any], int, Delivery | BaseException]] = queue.SimpleQueue()
    finals: list[LedgerEntry] = []
    in_flight = 0

    def work(prepared: Prepared, event: Mapping[str, Any], earlier: int) -> None:
        try:
            delivery: Delivery | BaseException = sender.deliver(
                prepared.method, prepared.url, prepared.headers, prepared.body.encode()
            )
        except BaseException as exc:  # handed back, raised in the sending thread
            delivery = exc
        answers.put((prepared, event, earlier, delivery))

    def settle() -> None:
        nonlocal in_flight
        prepared, event, earlier, delivery = answers.get()
        in_flight -= 1
        if isinstance(delivery, BaseException):
            raise delivery
        result = _result(prepared, delivery, earlier)
        finals.append(_entry(prepared, result.status, result.attempts, result))
        if result.status == "failed":
            dead_letter(result, event)
        on_result(result)

    with ThreadPoolExecutor(max_workers=options.concurrency, thread_name_prefix="replay") as pool:
        try:
            for earlier, event in to_send.entries():
                try:
                    prepared = prepare(event, options.target, options.edits, options.source_key)
                except DataError as exc:
                    result = _row(event, "failed", reason=str(exc))
                    dead_letter(result, event)
                    on_result(result)
                    continue
                while in_flight >= options.concurrency:  # every request handed over starts at once
                    settle()
                ledger.write([*finals, _entry(prepared, SENDING, earlier)])
                finals.clear()
                pool.submit(work, prepared, event, earlier)
                in_flight += 1
            while in_flight:
                settle()
        finally:
            ledger.write(finals)


def _entry(prepared: Prepared, status: str, attempts: int, result: Result | None = None) -> LedgerEntry:
    return LedgerEntry(
        prepared.event_id,
        prepared.lead_id,
        prepared.flow_id,
        prepared.url,
        status,
        attempts,
        result.http_status if result else None,
        prepared.original_outcome,
        result.new_outcome if result else None,
        result.new_lead_id if result else None,
        result.reason if result else None,
    )


def _result(prepared: Prepared, delivery: Delivery, earlier_attempts: int) -> Result:
    outcome, lead_id, reason = read_answer(delivery.body, delivery.content_type) if delivery.accepted else (None,) * 3
    if delivery.accepted:
        status = "sent"
    elif delivery.state == "unknown":
        status = "unknown"
    else:
        status = "failed"
    why = delivery.reason if status != "sent" else reason
    if status == "failed" and delivery.attempts > 1:
        why = f"{why} (gave up after {delivery.attempts} attempts)"
    return Result(
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
        prepared.url,
    )


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
