"""The sandbox: a LeadConduit-compatible HTTP service on loopback (architecture.md §6).

Endpoints, as LeadConduit documents them:

- ``GET /events``: ``after_id``/``before_id`` (exclusive), ``start``/``end`` (inclusive), ``rules`` (a JSON
  array), repeated ``include`` or ``exclude`` (400 when both), ``limit`` 1..1000 (default 100, 400 outside),
  ``sort`` asc|desc (default desc); answers a bare JSON array; events past ``expires_at`` are gone.
- ``GET /events/{id}``: one event, 404 when unknown or expired.
- ``GET|POST /flows/{flow}/sources/{source}/submit``: creates a lead and its events, answers 201
  ``{"outcome","reason","lead":{"id"},"price"}``; 405/406/415/400 as the inbound module does.

Basic auth with the API key as password guards ``/events`` (401 otherwise); the username is ignored.

Sandbox-only controls, under ``/_sandbox/`` and also behind the API key: ``GET /_sandbox/status``,
``PUT /_sandbox/faults`` (``rate_429``, ``rate_5xx``, ``latency_ms``, ``retry_after_seconds``,
``drop_rate``, ``next_statuses``; ``destinations``: a store URL's writes stopped, resumed or delayed, see
``outages``; ``events_per_second``: leads made live, see ``live``), ``POST /_sandbox/leads`` (``count`` leads
made now, or ``age_seconds`` ago) and ``GET /_sandbox/submissions``. API faults apply to every LeadConduit
endpoint.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import logging
import random
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from firehose.codec import decode, encode
from firehose.errors import DataError
from firehose.ids import is_object_id
from firehose.inbound import decode_body
from firehose.rules import RuleError, evaluate_all
from firehose.sandbox import inbound
from firehose.sandbox.generator import (
    DESTINATIONS,
    RETENTION,
    Flow,
    IdMaker,
    Submission,
    generate,
    make_flows,
    process_lead,
)
from firehose.sandbox.live import LiveLeads
from firehose.sandbox.outages import parse_outages
from firehose.sandbox.store import EventStore, Window
from firehose.sandbox.stream import FirehoseStream

log = logging.getLogger(__name__)

SUBMIT_PATH = re.compile(r"^/flows/([^/]+)/sources/([^/]+)/submit$")
EVENT_PATH = re.compile(r"^/events/([^/]+)$")


@dataclass
class Faults:
    """Misbehaviour on demand, so clients' retries can be tested."""

    rate_429: float = 0.0
    rate_5xx: float = 0.0
    latency_ms: float = 0.0
    retry_after_seconds: int = 1
    next_statuses: list[int] = field(default_factory=list)
    """Statuses to answer the next requests with, in order, before the rates apply (deterministic tests)."""


class BadRequest(Exception):
    """A query LeadConduit would refuse with 400."""


def _one(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise BadRequest(f"{name} may be given once")
    return values[0]


def _seconds(value: str, name: str) -> int:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise BadRequest(f"{name} must be an ISO 8601 date-time, got {value!r}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def parse_window(params: dict[str, list[str]]) -> tuple[Window, list[Any], list[str], list[str]]:
    """Validate ``GET /events`` parameters; returns the window, rules, include and exclude."""
    limit_text = _one(params, "limit")
    limit = 100
    if limit_text is not None:
        if not limit_text.strip().isdigit() or not 1 <= int(limit_text) <= 1000:
            raise BadRequest(f"limit must be an integer from 1 to 1000, got {limit_text!r}")
        limit = int(limit_text)
    sort = (_one(params, "sort") or "desc").lower()
    if sort not in ("asc", "desc"):
        raise BadRequest(f"sort must be asc or desc, got {sort!r}")
    ids = {}
    for name in ("after_id", "before_id"):
        value = _one(params, name)
        if value is not None and not is_object_id(value):
            raise BadRequest(f"{name} must be a 24 character hex id, got {value!r}")
        ids[name] = value
    start, end = _one(params, "start"), _one(params, "end")
    rules: list[Any] = []
    rules_text = _one(params, "rules")
    if rules_text:
        try:
            parsed = decode(rules_text, where="rules")
        except DataError as exc:
            raise BadRequest(f"rules must be a JSON array of rules: {exc}") from exc
        if not isinstance(parsed, list):
            raise BadRequest("rules must be a JSON array of rules")
        rules = parsed
    include, exclude = params.get("include", []), params.get("exclude", [])
    if include and exclude:
        raise BadRequest("include and exclude cannot be used together")
    window = Window(
        after_id=ids["after_id"],
        before_id=ids["before_id"],
        start_seconds=_seconds(start, "start") if start else None,
        end_seconds=_seconds(end, "end") if end else None,
        sort=sort,
        limit=limit,
    )
    return window, rules, include, exclude


def _get_path(doc: dict[str, Any], path: list[str]) -> tuple[bool, Any]:
    node: Any = doc
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def project(event: dict[str, Any], include: list[str], exclude: list[str]) -> dict[str, Any]:
    """Keep only ``include`` dot paths (``id`` always kept), or drop the ``exclude`` ones."""
    if include:
        result: dict[str, Any] = {"id": event["id"]}
        for path in include:
            parts = path.split(".")
            found, value = _get_path(event, parts)
            if not found:
                continue
            node = result
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = value
        return result
    result = decode(encode(event))  # a deep copy, cheap with orjson
    for path in exclude:
        parts = path.split(".")
        found, parent = _get_path(result, parts[:-1])
        if found and isinstance(parent, dict):
            parent.pop(parts[-1], None)
    return result


class Sandbox:
    """The state behind the HTTP service: events, flows, faults and the firehose stream."""

    def __init__(
        self,
        *,
        api_key: str,
        stream: FirehoseStream,
        seed: int = 1,
        bucket: str = "lc-archive",
        faults: Faults | None = None,
        clock: Callable[[], float] = time.time,
        destinations: int = DESTINATIONS,
    ) -> None:
        self.api_key = api_key
        self.stream = stream
        self.seed = seed
        self.faults = faults or Faults()
        self.clock = clock
        self.store = EventStore()
        self.flows: tuple[Flow, ...] = make_flows(seed, bucket=bucket, destinations=destinations)
        self._live_rng = random.Random(f"live:{seed}")
        self._fault_rng = random.Random(f"faults:{seed}")
        self._live_ids = IdMaker(self._live_rng)
        self._lock = threading.Lock()
        self.submissions: list[dict[str, Any]] = []
        self.requests = 0
        """LeadConduit requests served (the /_sandbox/ controls not counted)."""
        self.live = LiveLeads(self)

    def seed_data(self, *, leads: int, days: float, until: datetime) -> int:
        """Generate seeded leads into the store and send their events through the firehose."""
        count = 0
        batch: list[dict[str, Any]] = []
        for event in generate(self.seed, leads=leads, days=days, until=until, flows=self.flows):
            batch.append(event)
            count += 1
            if len(batch) >= 2000:
                self.store.add_many(batch)
                self.stream.send(batch)
                batch = []
        self.store.add_many(batch)
        self.stream.send(batch)
        return count

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), tz=UTC)

    def expired_before_seconds(self) -> int:
        """Events made before this second are past ``expires_at`` and no longer served."""
        return int((self.now() - RETENTION).timestamp()) + 1

    def flow_and_source(self, flow_id: str, source_id: str) -> tuple[Flow, Any] | None:
        for flow in self.flows:
            if flow.id == flow_id:
                for source in flow.sources:
                    if source.id == source_id:
                        return flow, source
        return None

    def submit(
        self,
        flow: Flow,
        source: Any,
        *,
        fields: dict[str, Any],
        method: str,
        uri: str,
        headers: dict[str, str],
        body: str,
        ip: str,
        received: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Process one live lead; its events are stored and streamed at once (none from the far future)."""
        now = self.now()
        with self._lock:
            submission = Submission(
                flow=flow,
                source=source,
                fields=fields,
                method=method,
                uri=uri,
                headers=headers,
                body=body,
                received_at=now,
                ip=ip,
            )
            lead_id, answer, events = process_lead(submission, self._live_ids, self._live_rng)
            # Step timings put a lead's events a few seconds after its submission; retries and feedback come
            # minutes to days later, so they cannot exist yet.
            horizon = f"{int(self.clock()) + 60:08x}"
            events = [event for event in events if event["id"][:8] <= horizon]
            self.submissions.append(
                {
                    "lead_id": lead_id,
                    "flow_id": flow.id,
                    "source_id": source.id,
                    "content_type": headers.get("Content-Type", ""),
                    "body": body,
                    "received_at": now.isoformat(),
                    # What came over the wire (every header, Authorization included, and the body as base64):
                    # for tests of what a client sent. The sandbox is a test double; nothing here is real.
                    **(
                        {
                            "method": received["method"],
                            "query": received["query"],
                            "headers": received["headers"],
                            "body_base64": base64.b64encode(received["raw_body"]).decode(),
                        }
                        if received
                        else {}
                    ),
                    "at": self.clock(),
                }
            )
        for event in events:
            self.store.add(event)
        self.stream.send(events)
        return answer

    def fault(self) -> tuple[int, dict[str, str]] | None:
        """A fault to answer with instead of the real answer, if the dice say so."""
        faults = self.faults
        if faults.latency_ms > 0:
            time.sleep(faults.latency_ms / 1000)
        with self._lock:
            self.requests += 1
            if faults.next_statuses:
                status = faults.next_statuses.pop(0)
                return status, {"Retry-After": str(faults.retry_after_seconds)} if status == 429 else {}
            roll = self._fault_rng.random()
            kind = self._fault_rng.choice((500, 502, 503, 504))
        if roll < faults.rate_429:
            return 429, {"Retry-After": str(faults.retry_after_seconds)}
        if roll < faults.rate_429 + faults.rate_5xx:
            return kind, {}
        return None

    def change_faults(self, change: Any) -> None:
        """``PUT /_sandbox/faults``: each named fault set; an unknown name or a bad value is a ``DataError``."""
        if not isinstance(change, dict):
            raise DataError("faults must be a JSON object")
        for name, value in change.items():
            if name == "drop_rate":
                self.stream.drop_rate = float(value)
            elif name == "next_statuses":
                self.faults.next_statuses = [int(status) for status in value]
            elif name == "destinations":
                self.stream.set_outages(parse_outages(value))
            elif name == "events_per_second":
                self.live.set_rate(float(value))
            elif hasattr(self.faults, name):
                setattr(self.faults, name, type(getattr(self.faults, name))(value))
            else:
                raise DataError(f"unknown fault {name!r}")

    def make_leads(self, asked: Any) -> list[dict[str, Any]]:
        """``POST /_sandbox/leads``: ``{"count", "age_seconds"}`` leads made now (``live``); their events."""
        if not isinstance(asked, dict) or set(asked) - {"count", "age_seconds"}:
            raise DataError("leads takes {count, age_seconds}")
        count, age = int(asked.get("count", 1)), float(asked.get("age_seconds", 0))
        if not 1 <= count <= 10_000 or not 0 <= age <= 86_400:
            raise DataError("count must be from 1 to 10000 and age_seconds from 0 to 86400")
        return self.live.make(count, age_seconds=age)

    def status(self) -> dict[str, Any]:
        return {
            "events": len(self.store),
            "submissions": len(self.submissions),
            "requests": self.requests,
            "seed": self.seed,
            "flows": [
                {
                    "id": f.id,
                    "name": f.name,
                    "firehose": f.firehose,
                    "sources": [{"id": s.id, "name": s.name, "content_type": s.content_type} for s in f.sources],
                }
                for f in self.flows
            ],
            "faults": asdict(self.faults),
            "firehose": self.stream.status(),
            "live": self.live.status(),
        }


class Handler(BaseHTTPRequestHandler):
    """One request. Answers always carry Content-Length so connections are kept alive."""

    protocol_version = "HTTP/1.1"
    server_version = "LeadConduitSandbox/1"
    sandbox: Sandbox  # set on the subclass made by make_server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    # -- plumbing ---------------------------------------------------------------------------------------
    def _send(
        self, status: int, body: bytes, content_type: str = "application/json", headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, value: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, encode(value), headers=headers)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _has_body(self) -> bool:
        return (
            bool(int(self.headers.get("Content-Length") or 0))
            or "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        )

    def _body_announced(self) -> bool:
        """A Content-Length (even 0) or chunked encoding: what the inbound module takes for "a body was sent"."""
        return self.headers.get("Content-Length") is not None or self.headers.get("Transfer-Encoding") == "chunked"

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        if not header.lower().startswith("basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return False
        _, _, password = decoded.partition(":")
        return hmac.compare_digest(password.encode(), self.sandbox.api_key.encode())

    def _unauthorized(self) -> None:
        self._json(401, {"error": "not authorized"}, {"WWW-Authenticate": 'Basic realm="LeadConduit"'})

    # -- routing ----------------------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PUT(self) -> None:
        self._route("PUT")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def do_PATCH(self) -> None:
        self._route("PATCH")

    def do_HEAD(self) -> None:
        self._route("HEAD")

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        try:
            if path.startswith("/_sandbox/"):
                self._control(method, path)
                return
            fault = self.sandbox.fault()
            if fault is not None:
                status, headers = fault
                if self._has_body():
                    self._body()  # read it so the connection stays usable
                self._json(status, {"error": "sandbox fault injection"}, headers)
                return
            submit = SUBMIT_PATH.match(path)
            if submit:
                self._submit(method, submit.group(1), submit.group(2), url.query)
                return
            if path == "/events" or EVENT_PATH.match(path):
                if method not in ("GET", "HEAD"):
                    self._json(405, {"error": "method not allowed"}, {"Allow": "GET"})
                    return
                if not self._authorized():
                    self._unauthorized()
                    return
                match = EVENT_PATH.match(path)
                if match:
                    self._one_event(match.group(1))
                else:
                    self._events(url.query)
                return
            self._json(404, {"error": "not found"})
        except (BrokenPipeError, ConnectionResetError):
            return
        except Exception as exc:
            # Whatever a client sends (a Content-Length that is no number, a body nested past the stack), the
            # sandbox answers and logs one line: socketserver would print a traceback and drop the connection.
            status = 400 if isinstance(exc, (ValueError, RecursionError)) else 500
            log.warning("%s %s: answered %d: %s: %s", method, url.path[:200], status, type(exc).__name__, exc)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._json(status, {"error": "the sandbox cannot take this request" if status == 400 else "bug"})

    def _events(self, query: str) -> None:
        params = parse_qs(query, keep_blank_values=True)
        try:
            window, rules, include, exclude = parse_window(params)
            predicate = (lambda event: evaluate_all(rules, event)) if rules else None
            page = self.sandbox.store.query(
                window, expired_before_seconds=self.sandbox.expired_before_seconds(), predicate=predicate
            )
        except (BadRequest, RuleError) as exc:
            self._json(400, {"error": str(exc)})
            return
        if include or exclude:
            page = [encode(project(decode(doc), include, exclude)) for doc in page]
        self._send(200, b"[" + b",".join(page) + b"]")

    def _one_event(self, event_id: str) -> None:
        doc = self.sandbox.store.get(event_id) if is_object_id(event_id) else None
        if doc is None or event_id[:8].lower() < f"{self.sandbox.expired_before_seconds():08x}":
            self._json(404, {"error": "not found"})
            return
        self._send(200, doc)

    def _submit(self, method: str, flow_id: str, source_id: str, query: str) -> None:
        if method not in ("GET", "POST"):
            if self._has_body():
                self._body()
            self._send(405, f"The {method} method is not allowed".encode(), "text/plain", {"Allow": "GET, POST"})
            return
        # Read whatever was sent (so the connection stays usable); the module looks at a POST's body only, and
        # only when a Content-Length or chunked encoding says there is one.
        sent = self._body() if self._body_announced() else None
        body = sent if method == "POST" else None
        try:
            answer_type = inbound.response_type(self.headers.get("Accept"))
            fields = inbound.read_submit(method, self.path, dict(self.headers.items()), body)
        except inbound.InboundError as exc:
            self._send(exc.status, exc.reason.encode(), "text/plain", exc.headers)
            return
        found = self.sandbox.flow_and_source(flow_id, source_id)
        if found is None:
            self._json(404, {"error": f"no source {source_id} in flow {flow_id}"})
            return
        flow, source = found
        host = self.headers.get("Host") or "127.0.0.1"
        raw = sent or b""
        received = {"method": method, "query": query, "headers": dict(self.headers.items()), "raw_body": raw}
        headers = {name: value for name, value in self.headers.items() if name.lower() != "authorization"}
        answer = self.sandbox.submit(
            flow,
            source,
            fields=fields,
            method=method,
            uri=f"http://{host}{self.path}",
            headers=headers,
            body=decode_body(raw, self.headers.get("Content-Type")),
            ip=self.client_address[0],
            received=received,
        )
        self._send(201, inbound.render_response(answer, answer_type), answer_type)

    def _control(self, method: str, path: str) -> None:
        if not self._authorized():
            self._unauthorized()
            return
        sandbox = self.sandbox
        if path == "/_sandbox/status" and method == "GET":
            self._json(200, sandbox.status())
        elif path == "/_sandbox/submissions" and method == "GET":
            self._json(200, sandbox.submissions)
        elif path == "/_sandbox/faults" and method == "PUT":
            try:
                sandbox.change_faults(decode(self._body(), where="faults"))
            except (DataError, TypeError, ValueError) as exc:
                self._json(400, {"error": str(exc)})
                return
            self._json(200, sandbox.status())
        elif path == "/_sandbox/leads" and method == "POST":
            try:
                made = sandbox.make_leads(decode(self._body() or b"{}", where="leads"))
            except (DataError, TypeError, ValueError) as exc:
                self._json(400, {"error": str(exc)})
                return
            self._json(201, {"events": [{"id": e["id"], "lead_id": e["vars"]["lead"]["id"]} for e in made]})
        else:
            self._json(404, {"error": "not found"})


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One line instead of socketserver's traceback (a client that hung up mid-request is no news at all)."""
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            return
        log.warning("a request from %s failed: %s: %s", client_address[0], type(exc).__name__, exc)


def make_server(sandbox: Sandbox, host: str = "127.0.0.1", port: int = 0) -> SandboxServer:
    """An HTTP server for ``sandbox`` (port 0 picks a free port: read ``server.server_address``)."""
    handler = type("BoundHandler", (Handler,), {"sandbox": sandbox})
    return SandboxServer((host, port), handler)


def default_until(clock: Callable[[], float] = time.time) -> datetime:
    """Seeded data ends at the start of the current UTC day, so a seed gives the same data all day."""
    now = datetime.fromtimestamp(clock(), tz=UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)
