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
import contextlib
import hashlib
import os
import queue
import re
import tempfile
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qsl, unquote_plus, urlsplit, urlunsplit

from firehose import payload
from firehose.api import EventQuery, LeadConduit
from firehose.archive import Store
from firehose.archive.base import IN_FLIGHT
from firehose.archive.layout import ArchivedEvent
from firehose.archive.listing import ArchiveListing, find_event_keys, read_many
from firehose.claims import StoredClaim, StoreLedger, in_flight_seconds
from firehose.claims import claimed_at as claim_time
from firehose.codec import decode, encode, encode_line, records
from firehose.errors import ArchiveError, DataError, FirehoseError, UsageError
from firehose.event import EventView
from firehose.http import Delivery, Sender
from firehose.ids import is_object_id, seconds_of
from firehose.rules import RuleError, evaluate_all
from firehose.secret import REDACTED, Secret, is_credential, is_credential_param, redact_url
from firehose.state import SENDING, LedgerEntry, ReplayLedger, refusal, same_lead

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
STATUSES = ("sent", "failed", "unknown", "skipped")
LEADCONDUIT_HOSTS = frozenset({"app.leadconduit.com"})
"""Hosts a stored ``request.uri`` may name and still be LeadConduit's own: sent to the configured URL instead."""
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
"""An HTTP token (RFC 9110 §5.6.2): what a method or a header name may be made of."""
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
"""Characters no header value may hold (CR and LF above all: they would start a header of their own)."""


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
    """Where a replay goes. An archive is data, not instructions: a request goes only to a host the user named.

    - ``url`` (``--target``): there; a bare ``scheme://host`` keeps each event's own path and query.
    - otherwise LeadConduit, at ``base_url`` (``--url``, the configured API URL): each event's own path, or
      ``flow_id``/``source_id`` (``--to-flow``/``--to-source``). A stored URI that names a host other than
      LeadConduit's (the configured one, or ``app.leadconduit.com``) is refused, never followed."""

    url: str | None = None
    flow_id: str | None = None
    source_id: str | None = None
    base_url: str = "https://app.leadconduit.com"

    def __post_init__(self) -> None:
        if self.url and (self.flow_id or self.source_id):
            raise UsageError("--target and --to-flow/--to-source cannot be used together")
        if bool(self.flow_id) != bool(self.source_id):
            raise UsageError("--to-flow and --to-source go together: a submit URL names both")
        for name, value in (("--target", self.url), ("--url", self.base_url)):
            if value is None:
                continue
            try:
                parts = urlsplit(value)
                parts.port  # noqa: B018 - raises ValueError for a port that is not a number
            except ValueError as exc:
                raise UsageError(f"{name} {redact_url(value)!r} is not a URL: {exc}") from None
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise UsageError(f"{name} {redact_url(value)!r} is not an http(s) URL with a host")

    @property
    def named(self) -> str:
        """The origin (``scheme://host:port``) every request of this replay goes to."""
        return _origin(self.url or self.base_url)

    def resolve(self, original_uri: str) -> str:
        """The URL to send to, for a stored URI; ``DataError`` when the URI names a host nobody named."""
        try:
            original = urlsplit(original_uri)
        except ValueError as exc:
            raise DataError(f"the stored URI is not a URL ({exc})") from None
        if self.url:
            # A bare host (no path) keeps each event's own path: a rehearsal of many flows on another host.
            target = urlsplit(self.url)
            path = target.path if target.path not in ("", "/") else original.path
            query = target.query or original.query
            return urlunsplit((target.scheme, target.netloc.rsplit("@", 1)[-1], path, query, ""))
        base = urlsplit(self.base_url)
        if original.netloc:
            try:
                host = (original.hostname or "").lower()
            except ValueError:
                host = ""
            if host != (base.hostname or "").lower() and host not in LEADCONDUIT_HOSTS:
                named = host or original.netloc.rsplit("@", 1)[-1]  # never the user info: it may hold a password
                raise DataError(
                    f"its stored request names host {named!r}, not LeadConduit's "
                    f"({base.hostname}): refused; give --target to send it elsewhere"
                )
        path = original.path
        if self.flow_id or self.source_id:
            found = re.match(r"^(.*?)/flows/([^/]+)/sources/([^/]+)(/.*)?$", path)
            if not found:
                raise DataError(f"the stored URI {original.path!r} is not a flow submit URL; give --target")
            path = f"{found.group(1)}/flows/{self.flow_id}/sources/{self.source_id}{found.group(4) or '/submit'}"
        return urlunsplit((base.scheme, base.netloc.rsplit("@", 1)[-1], path, original.query, ""))


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
    identity: Mapping[str, str] = field(default_factory=dict)
    """Hashes of what is sent (``body``: its bytes; ``fields``: its parsed fields): how the settler recognises
    the lead this request made, without keeping the lead."""
    redirect_expected: bool = False
    """The request carries ``redir_url``: LeadConduit then answers a taken lead with 303 (facts.md §3.2)."""

    def shown_url(self, *, include_pii: bool = False) -> str:
        """The URL for a report or the ledger: no user info, credentials ``***``, query values ``***`` without
        PII."""
        return redact_url(self.url, query_values=not include_pii)


def prepare(
    event: Mapping[str, Any],
    target: Target,
    edits: Edits,
    source_key: Secret | None = None,
    *,
    keep_query_credentials: bool = False,
    known_identity: Mapping[str, str] | None = None,
) -> Prepared:
    """Rebuild a source event's request: its method, stored body byte for byte (unless edited), Content-Type
    and query string; hop-by-hop and credential headers dropped, credential query parameters dropped (unless
    ``keep_query_credentials``), ``Accept: application/json`` so the answer can be read, and Basic auth with
    ``source_key`` for sources that require it, only towards the host the user named.

    Raises ``DataError`` naming the event for a request that must not or cannot be sent: a host nobody named,
    a method or header HTTP cannot carry (a CR/LF would inject a header of its own), an edit the body cannot
    take. Nothing is claimed or sent for such an event.

    ``known_identity``: the request's ``identity``, computed by the plan for the same options (it parses the
    body: not done twice per lead)."""
    view = EventView(event)
    try:
        return _prepare(event, view, target, edits, source_key, keep_query_credentials, known_identity)
    except DataError as exc:
        raise DataError(f"event {view.id}: {exc}") from None


def _target_url(url: str, keep_query_credentials: bool) -> str:
    """The URL to send to: one HTTP can carry, without credential query parameters unless they are kept."""
    if re.search(r"[\x00-\x20\x7f]", url) or not url.isascii():
        raise DataError("its stored URI holds spaces, control or non-ASCII characters HTTP cannot carry")
    split = urlsplit(url)
    if not keep_query_credentials and split.query:
        kept = "&".join(p for p in split.query.split("&") if not is_credential_param(_param_name(p)))
        url = urlunsplit(split._replace(query=kept))
    return url


def _headers_kept(stored: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The stored headers sent again: no hop-by-hop or credential header, no Accept (ours replaces it), and a
    ``DataError`` for one HTTP cannot carry."""
    headers = [(name, value) for name, value in stored if not _dropped(name) and name.lower() != "accept"]
    for name, value in headers:
        if not _TOKEN.match(name):
            raise DataError(f"its stored header name {name[:40]!r} is not an HTTP header name")
        if _BAD_VALUE.search(value):
            raise DataError(f"its stored header {name} holds a line break or control character (not sent)")
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise DataError(f"its stored header {name} holds characters HTTP headers cannot carry") from None
    return headers


def _prepare(
    event: Mapping[str, Any],
    view: EventView,
    target: Target,
    edits: Edits,
    source_key: Secret | None,
    keep_query_credentials: bool,
    known_identity: Mapping[str, str] | None = None,
) -> Prepared:
    stored = StoredRequest.of(event)
    if not _TOKEN.match(stored.method):
        raise DataError(f"its stored method {stored.method[:40]!r} is not an HTTP method")
    url = _target_url(target.resolve(stored.uri), keep_query_credentials)
    body = stored.body
    content_type = stored.header("Content-Type")
    if edits:
        try:
            body, url = _edited(body, url, stored.method, content_type, edits)
        except DataError as exc:
            raise DataError(f"cannot apply the edits: {exc}") from None
    if body != stored.body:  # an edited body its charset cannot carry is refused now, not when sending
        payload.body_bytes(body, content_type, strict=True)
    headers = _headers_kept(stored.headers)
    headers.append(("Accept", "application/json"))
    if source_key is not None and _origin(url) == target.named:
        token = base64.b64encode(f"API:{source_key.reveal()}".encode()).decode()
        headers.append(("Authorization", f"Basic {token}"))
    flow = view.get("vars", "flow", "id")
    source = view.get("vars", "source", "id")
    kind = payload.kind_of(content_type)
    body_fields: dict[str, str] | None = {}
    if kind and (known_identity is None or "redir_url" in body.lower()):
        try:  # parsed once, for the identity and the redir_url check
            body_fields = payload.fields(kind, body)
        except DataError:
            body_fields = None
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
        dict(known_identity) if known_identity else identity(stored.method, url, kind, body, body_fields=body_fields),
        _carries_redirect(url, body_fields or {}),
    )


def _edited(body: str, url: str, method: str, content_type: str | None, edits: Edits) -> tuple[str, str]:
    # LeadConduit merges the query string over the body (the query winning): payload edits each field where
    # LeadConduit reads it, and checks that LeadConduit would read the original's fields plus the edits.
    split = urlsplit(url)
    edited = payload.edit_request(method, split.query, content_type, body, edits.all_sets(), edits.unsets)
    if edited.query != split.query:
        url = urlunsplit(split._replace(query=edited.query))
    return edited.body, url


def _body_bytes(prepared: Prepared) -> bytes:
    return payload.body_bytes(prepared.body, prepared.original.header("Content-Type"))


def _param_name(pair: str) -> str:
    return unquote_plus(pair.partition("=")[0])


def _origin(url: str) -> str:
    """``scheme://host:port`` of a URL, lower-cased, without user info."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}".lower()


def identity(
    method: str, url: str, kind: str | None, body: str, *, body_fields: Mapping[str, str] | None = None
) -> dict[str, str]:
    """What makes a request *this lead*, as hashes (the ledger keeps no lead data):

    - ``request``: the method, the path and query (not the host: LeadConduit records its own) and the body's
      bytes. A replay's own new source event stores exactly the request it was made by, so it has the same
      ``request`` hash as the replay: that is how a later run knows it for a replay, on any machine.
    - ``fields``: the fields the inbound reads (body and query merged, the query winning), for a settler
      that meets the body re-encoded. Absent when the request carries no field at all (an empty GET): such a
      request cannot be told from another, and is never settled as sent by matching it.

    ``body_fields``: the body's fields when the caller has them already (None: the body does not parse)."""
    split = urlsplit(url)
    found = {"request": hashlib.sha256(f"{method} {split.path}?{split.query}\n{body}".encode()).hexdigest()}
    if body_fields is None and kind:
        try:
            body_fields = payload.fields(kind, body)
        except DataError:
            body_fields = None
    fields = {**(body_fields or {}), **payload.query_fields(split.query)} if split.query else dict(body_fields or {})
    if fields:
        found["fields"] = hashlib.sha256(encode(dict(sorted(fields.items())))).hexdigest()
    return found


def _carries_redirect(url: str, body_fields: Mapping[str, str]) -> bool:
    if "redir_url" in url.lower():
        names = {name.lower() for name, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True)}
        if "redir_url" in names:
            return True
    return any(name.lower() == "redir_url" for name in body_fields)


def redacted_event(event: Mapping[str, Any]) -> dict[str, Any]:
    """The event as a dead-letter file keeps it: its stored request's credential headers and query values as
    ``***`` and its URI without user info. The sender drops those anyway, so nothing needed is lost."""
    copy = dict(event)
    request = event.get("request")
    if isinstance(request, Mapping):
        request = dict(request)
        if isinstance(request.get("uri"), str):
            request["uri"] = redact_url(request["uri"])
        headers = request.get("headers")
        if isinstance(headers, Mapping):
            request["headers"] = {k: REDACTED if is_credential(str(k)) else v for k, v in headers.items()}
        elif isinstance(headers, list):
            request["headers"] = [
                [p[0], REDACTED] if isinstance(p, list | tuple) and len(p) == 2 and is_credential(str(p[0])) else p
                for p in headers
            ]
        copy["request"] = request
    return copy


# -- the diff ---------------------------------------------------------------------------------------------


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
    headers = _header_changes(original.headers, prepared.headers, shown)
    kind = payload.kind_of(original.header("Content-Type"))
    body: dict[str, Any] = {
        "content_type": original.header("Content-Type"),
        "identical": original.body == prepared.body,
        "bytes": len(_body_bytes(prepared)),
        "fields": [],
    }
    if not body["identical"]:
        body["fields"] = _field_changes(kind, original.body, prepared.body, shown)
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


Shown = Callable[..., str]
"""How a diff shows a value: itself, or ``***`` (lead data without ``include_pii``)."""


def _header_changes(
    before: Sequence[tuple[str, str]], after: Sequence[tuple[str, str]], shown: Shown
) -> list[dict[str, Any]]:
    """Headers removed, changed and added; a credential's value always ``***``."""
    before_headers = {name.lower(): (name, value) for name, value in before}
    after_headers = {name.lower(): (name, value) for name, value in after}
    changes: list[dict[str, Any]] = []
    for key, (name, value) in before_headers.items():
        if key not in after_headers:
            hidden = REDACTED if is_credential(key) else shown(value)
            changes.append({"change": "removed", "header": name, "from": hidden})
        elif after_headers[key][1] != value:
            changes.append(
                {
                    "change": "changed",
                    "header": name,
                    "from": REDACTED if is_credential(key) else shown(value),
                    "to": REDACTED if is_credential(key) else after_headers[key][1],
                }
            )
    for key, (name, value) in after_headers.items():
        if key not in before_headers:
            changes.append({"change": "added", "header": name, "to": REDACTED if is_credential(key) else value})
    return changes


def _field_changes(kind: str | None, before: str, after: str, shown: Shown) -> list[dict[str, Any]]:
    """Body fields removed, added and changed, in the stored body's order."""
    try:
        old, new = payload.fields(kind, before), payload.fields(kind, after)
    except DataError as exc:
        return [{"change": "unreadable", "reason": str(exc)}]
    changes: list[dict[str, Any]] = []
    for name in [*old, *(n for n in new if n not in old)]:
        if name not in new:
            changes.append({"change": "removed", "field": name, "from": shown(old[name])})
        elif name not in old:
            changes.append({"change": "added", "field": name, "to": shown(new[name], name)})
        elif old[name] != new[name]:
            changes.append({"change": "changed", "field": name, "from": shown(old[name]), "to": shown(new[name], name)})
    return changes


def _absolute(uri: str, like: str) -> str:
    split = urlsplit(uri)
    if split.netloc:
        return uri
    base = urlsplit(like)
    return urlunsplit((base.scheme, base.netloc, split.path, split.query, ""))


def _url_shown(url: str, include_pii: bool) -> str:
    """A URL with its query values hidden (a GET submit carries the lead in them); credentials are hidden even
    with ``include_pii``, and user info is never shown."""
    return redact_url(url, query_values=not include_pii)


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
        # An error that names the object already (``s3://b/k: not valid JSON``) is not prefixed with it twice.
        self.items.append((where, reason.removeprefix(f"{where}: ")))


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
            try:
                row = decode(text, where=f"--ids line {number}")
            except DataError as exc:  # that line fails alone, reported; the others go on
                problems.add(f"--ids line {number}", str(exc))
                continue
            if not isinstance(row, dict):
                problems.add(f"--ids line {number}", "not a JSON object")
                continue
            event = row.get("event") if isinstance(row.get("event"), dict) else None
            event_id = str(row.get("event_id") or row.get("id") or "")
            if event is not None and not is_object_id(event.get("id")):
                problems.add(f"--ids line {number}", "its event has no valid id")
                continue
            if event is None and event_id:
                if not is_object_id(event_id):  # never looked up: an archive listing reads its time from it
                    problems.add(f"--ids line {number}", f"{event_id[:40]!r} is not an event id")
                    continue
                event = fetch(event_id)
        else:
            event_id = text
            if not is_object_id(event_id):
                problems.add(f"--ids line {number}", f"{event_id[:40]!r} is not an event id")
                continue
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

    def __init__(
        self, api: LeadConduit | None, archives: Sequence[tuple[Store, str]], *, workers: int = IN_FLIGHT
    ) -> None:
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
    keep_query_credentials: bool = False
    include_pii: bool = False
    """Keep query values (lead data in a GET submit) in the ledger's and the report's URLs."""
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)

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
    """Where it went, redacted (``Prepared.shown_url``)."""

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

    def add(self, result: Result) -> None:
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
            result.skipped.append(_row(event, "skipped", reason=f"this lead was made by the replay of event {origin}"))
            continue
        reason = refusal(entry, force=options.force, retry_unknown=options.retry_unknown)
        if reason is None and twin is not None and not options.force:
            reason = same_lead(twin)
        if reason:
            # A lead still in doubt is reported as such (and the run exits 1) until something settles it.
            doubt = entry is not None and entry.status in ("unknown", SENDING) and reason.startswith("sent before")
            result.skipped.append(_row(event, "unknown" if doubt else "skipped", reason=reason, entry=entry))
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
    own, twin, origin = ledger.lookup(_entry(prepared, SENDING, 0, options))
    return own, twin, origin, dict(prepared.identity)


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


# -- settling what is in doubt ----------------------------------------------------------------------------
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
        self.origin = _origin(api_url)
        self.grace_seconds = grace_seconds
        self.known_leads = known_leads
        self.clock = clock
        self._taken: set[str] = set()

    def settle(self, doubt: Doubt) -> Settlement:
        found = re.search(r"/flows/([^/?]+)/sources/([^/?]+)", urlsplit(doubt.target).path)
        if _origin(doubt.target) != self.origin or not found:
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


# -- sending ----------------------------------------------------------------------------------------------
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
    dead_letter: Callable[[Result, Mapping[str, Any]], None],
    on_result: Callable[[Result], None],
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
    answers: queue.SimpleQueue[tuple[Prepared, Mapping[str, Any], int, Delivery | _Skip | BaseException]] = (
        queue.SimpleQueue()
    )
    finals: list[LedgerEntry] = []
    in_flight = 0

    def work(prepared: Prepared, event: Mapping[str, Any], earlier: int) -> None:
        outcome: Delivery | _Skip | BaseException
        try:
            outcome = _deliver(prepared, sender, options, shared, settler)
        except BaseException as exc:  # handed back, raised in the sending thread
            outcome = exc
        answers.put((prepared, event, earlier, outcome))

    def settle() -> None:
        nonlocal in_flight
        prepared, event, earlier, outcome = answers.get()
        in_flight -= 1
        if isinstance(outcome, BaseException):
            # Nothing is known of whether it went out: the claim stays as it is (in doubt), and the run stops.
            raise outcome
        if isinstance(outcome, _Skip):
            result = _row(event, "skipped", reason=outcome.reason)
            finals.append(_entry(prepared, "skipped", earlier, options, result))
        else:
            result = _result(prepared, outcome, earlier, options)
            finals.append(_entry(prepared, result.status, result.attempts, options, result))
            if result.status == "failed":
                dead_letter(result, event)
        on_result(result)

    with ThreadPoolExecutor(max_workers=options.concurrency, thread_name_prefix="replay") as pool:
        try:
            for earlier, event, known in to_send.entries():
                try:
                    prepared = options.prepare(event, known)
                except DataError as exc:  # refused before any claim: nothing to release
                    result = _row(event, "failed", reason=str(exc))
                    dead_letter(result, event)
                    on_result(result)
                    continue
                while in_flight >= options.concurrency:  # every request handed over starts at once
                    settle()
                why = ledger.claim(
                    _entry(prepared, SENDING, earlier, options),
                    finals,
                    force=options.force,
                    retry_unknown=options.retry_unknown,
                )
                finals.clear()
                if why is not None:
                    on_result(_row(event, "skipped", reason=why))
                    continue
                pool.submit(work, prepared, event, earlier)
                in_flight += 1
            while in_flight:
                settle()
        finally:
            ledger.write(finals)


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
            _body_bytes(prepared),
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
        _body_bytes(prepared),
        paced=True,
    )
    result = _result(prepared, delivery, 0, options)
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


def _entry(
    prepared: Prepared, status: str, attempts: int, options: ReplayOptions, result: Result | None = None
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


def _result(prepared: Prepared, delivery: Delivery, earlier_attempts: int, options: ReplayOptions) -> Result:
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


def prune_dead_letters(path: Path, ledger: ReplayLedger, leadconduit: str) -> int:
    """Take out of a dead-letter file the leads this ledger records as sent to ``leadconduit`` (the LeadConduit
    the settings name: where they were meant to go), and return how many. A lead sent elsewhere (a rehearsal on
    a sandbox) stays. Every other line stays byte for byte (one that is not an entry too). The file is rewritten
    beside itself (a new owner-only file, never through a link) and renamed over it: an interrupted prune leaves
    the old file whole. A link, a device (``/dev/null``), an absent file, or nothing to take out: left alone."""
    if path.is_symlink() or not path.is_file():
        return 0
    home = _origin(leadconduit)
    kept: list[bytes] = []
    dropped = 0
    with path.open("rb") as source:
        for line in source:
            try:
                entry = decode(line, where=str(path))
            except DataError:
                entry = None
            found = ledger.get(str(entry.get("event_id"))) if isinstance(entry, dict) else None
            if found is not None and found.status == "sent" and _origin(found.target) == home:
                dropped += 1
            else:
                kept.append(line)
    if not dropped:
        return 0
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # O_EXCL, 0600
    temporary = Path(name)
    try:
        with os.fdopen(descriptor, "wb") as out:
            out.writelines(kept)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    return dropped
