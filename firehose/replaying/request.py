"""How a replay rebuilds a source event's request: the stored request read tolerantly, the target the user named
(never a host an archive names), the operator's edits to the body, and the hashes that make a request *this lead*.
Strict in what it sends: a method, header or URL HTTP cannot carry is refused here, naming the event.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlsplit, urlunsplit

from firehose import payload
from firehose.codec import encode
from firehose.errors import DataError, UsageError
from firehose.event import EventView
from firehose.secret import Secret, is_credential, is_credential_param, redact_url

DEFAULT_LEADCONDUIT = "https://app.leadconduit.com"


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


@dataclass(frozen=True, repr=False)
class Target:
    """Where a replay goes. An archive is data, not instructions: a request goes only to a host the user named.

    - ``url`` (``--target``): there; a bare ``scheme://host`` keeps each event's own path and query.
    - otherwise LeadConduit, at ``base_url`` (``--url``, the configured API URL): each event's own path, or
      ``flow_id``/``source_id`` (``--to-flow``/``--to-source``). A stored URI that names a host other than
      LeadConduit's (the configured one, or ``app.leadconduit.com``) is refused, never followed."""

    url: str | None = None
    flow_id: str | None = None
    source_id: str | None = None
    base_url: str | None = None
    """LeadConduit's URL (``--url``); None: the settings' (``replay`` fills it in), or LeadConduit's own."""

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

    def __repr__(self) -> str:
        url = redact_url(self.url) if self.url else None
        base = redact_url(self.base_url) if self.base_url else None
        return f"Target(url={url!r}, flow_id={self.flow_id!r}, source_id={self.source_id!r}, base_url={base!r})"

    @property
    def named(self) -> str:
        """The origin (``scheme://host:port``) every request of this replay goes to."""
        return origin(self.url or self.leadconduit)

    @property
    def leadconduit(self) -> str:
        return self.base_url or DEFAULT_LEADCONDUIT

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
        base = urlsplit(self.leadconduit)
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
    if source_key is not None and origin(url) == target.named:
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


def body_bytes(prepared: Prepared) -> bytes:
    return payload.body_bytes(prepared.body, prepared.original.header("Content-Type"))


def _param_name(pair: str) -> str:
    return unquote_plus(pair.partition("=")[0])


def origin(url: str) -> str:
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
