"""Seeded, realistic LeadConduit data: flows with both firehose shapes, leads with PII-like fields, and the
events LeadConduit records for them (all six types), shaped after the OpenAPI 2025 Event schemas.

The same seed (and the same ``until``) gives the same data, byte for byte. ``process_lead`` is shared with the
live submit endpoint, so seeded and submitted leads go through the same flow logic.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from xml.sax.saxutils import escape

from firehose.codec import encode
from firehose.ids import make_id
from firehose.rules import evaluate

RETENTION = timedelta(days=90)
"""How long LeadConduit keeps an event (``expires_at`` = creation + 90 days)."""

PUBLIC_URL = "https://app.leadconduit.com"
"""The base URL seeded events record in ``request.uri``, as LeadConduit would."""

FIRST_NAMES = (
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Carlos",
    "Mei",
    "Aisha",
    "Dmitri",
    "Priya",
    "Kwame",
    "Sofia",
    "Hiroshi",
    "Fatima",
    "Lars",
    "Amara",
    "Diego",
)
LAST_NAMES = (
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Nguyen",
    "Okafor",
    "Kowalski",
)
STREETS = ("Main St", "Oak Ave", "Maple Dr", "Cedar Ln", "Elm St", "Pine Rd", "Lakeview Blvd", "Sunset Way")
PLACES = (
    ("Austin", "TX", "787"),
    ("Dallas", "TX", "752"),
    ("Denver", "CO", "802"),
    ("Phoenix", "AZ", "850"),
    ("Miami", "FL", "331"),
    ("Seattle", "WA", "981"),
    ("Chicago", "IL", "606"),
    ("Boston", "MA", "021"),
    ("Atlanta", "GA", "303"),
    ("Portland", "OR", "972"),
    ("Newark", "NJ", "071"),
    ("Reno", "NV", "895"),
)
MAIL_DOMAINS = ("example.com", "example.net", "example.org", "mail.example.com")
BLOCKED_STATES = ("NJ", "NV")
"""States the seeded flows' filter steps stop (a realistic compliance filter)."""

CONTENT_TYPES = ("application/x-www-form-urlencoded", "application/json", "application/xml")


def iso(moment: datetime) -> str:
    """LeadConduit's timestamp form: ISO 8601, UTC, milliseconds, ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class IdMaker:
    """ObjectIds the way one LeadConduit process makes them: a fixed random part and a rising counter."""

    def __init__(self, rng: random.Random) -> None:
        self._random5 = rng.getrandbits(40)
        self._counter = rng.getrandbits(24)

    def at(self, moment: datetime) -> str:
        self._counter = (self._counter + 1) & 0xFF_FFFF
        return make_id(int(moment.timestamp()), self._random5, self._counter)


@dataclass(frozen=True)
class Source:
    id: str
    name: str
    content_type: str


@dataclass(frozen=True)
class Step:
    id: str
    kind: str  # "filter" or "recipient"
    name: str
    key: str = ""
    rule_set: dict[str, Any] | None = None
    retry_enabled: bool = False
    price: float = 0.0


@dataclass(frozen=True)
class Flow:
    id: str
    name: str
    sources: tuple[Source, ...]
    steps: tuple[Step, ...]
    firehose: dict[str, Any]
    acceptance_criteria: dict[str, Any]
    account: dict[str, str] = field(default_factory=dict)


def _short_id(rng: random.Random) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(6))


DESTINATIONS = 5
"""The destinations of the sandbox's flows: in order, Auto's S3 (legacy shape), Home's S3 and Azure, Health's
Azure, Life's S3."""


def make_flows(
    seed: int,
    *,
    bucket: str = "lc-archive",
    aws_credential_id: str | None = None,
    azure_credential_id: str | None = None,
    destinations: int = DESTINATIONS,
) -> tuple[Flow, ...]:
    """The sandbox's flows, one per firehose shape:

    1. legacy single-bucket shape (S3), prefix without a trailing slash;
    2. ``services`` with aws and azure both enabled, aws prefix ending in ``/``;
    3. ``services`` with azure only (aws present but disabled), empty prefix;
    4. ``services`` with aws only (azure disabled);
    5. firehose disabled.

    With fewer ``destinations`` (1 to 5), only the first that many of ``DESTINATIONS`` are written: a flow with
    none of them is left out, one with some has the others disabled (the flow with its firehose off stays).
    """
    if not 1 <= destinations <= DESTINATIONS:
        raise ValueError(f"destinations must be from 1 to {DESTINATIONS}, got {destinations}")
    rng = random.Random(f"flows:{seed}")
    ids = IdMaker(rng)
    created = datetime(2024, 1, 15, 12, 0, tzinfo=UTC)
    aws_cred = aws_credential_id or ids.at(created)
    azure_cred = azure_credential_id or ids.at(created)
    account = {"id": ids.at(created), "name": "Sandbox Insurance Co"}

    def service(enabled: bool, cred: str, prefix: str) -> dict[str, Any]:
        return {"enabled": enabled, "credential_id": cred, "bucket": bucket, "prefix": prefix}

    shapes: list[tuple[str, dict[str, Any]]] = [
        (
            "Auto Insurance",
            {"enabled": True, "credential_id": aws_cred, "bucket": bucket, "prefix": "events/auto"},
        ),
        (
            "Home Insurance",
            {
                "enabled": True,
                "services": {
                    "aws": service(True, aws_cred, "events/home/"),
                    "azure": service(True, azure_cred, "events/home"),
                },
            },
        ),
        (
            "Health Insurance",
            {
                "enabled": True,
                "services": {"aws": service(False, aws_cred, "events/health"), "azure": service(True, azure_cred, "")},
            },
        ),
        (
            "Life Insurance",
            {
                "enabled": True,
                "services": {
                    "aws": service(True, aws_cred, "events/life"),
                    "azure": service(False, azure_cred, "events/life"),
                },
            },
        ),
        ("Solar Leads", {"enabled": False, "credential_id": aws_cred, "bucket": bucket, "prefix": "solar"}),
    ]
    flows = []
    for number, (name, firehose) in enumerate(shapes):
        sources = tuple(
            Source(ids.at(created), f"{vendor} ({name})", CONTENT_TYPES[(number + index) % len(CONTENT_TYPES)])
            for index, vendor in enumerate(("LeadVendor A", "Web Form", "Partner Network")[: 2 + number % 2])
        )
        steps = (
            Step(ids.at(created), "recipient", "SuppressionList check", key="suppressionlist", price=0.01),
            Step(
                ids.at(created),
                "filter",
                "Blocked states",
                rule_set={
                    "id": _short_id(rng),
                    "op": "and",
                    "rules": [
                        {"id": _short_id(rng), "lhv": "lead.state", "op": "is included in", "rhv": list(BLOCKED_STATES)}
                    ],
                },
            ),
            Step(ids.at(created), "recipient", "TrustedForm claim", key="trustedform", price=0.25),
            Step(
                ids.at(created),
                "recipient",
                f"{name} buyer CRM",
                key="buyer_crm",
                retry_enabled=True,
                price=round(8 + number * 3.5, 2),
            ),
        )
        criteria = {
            "rule_set": {
                "id": _short_id(rng),
                "op": "and",
                "rules": [
                    {"id": _short_id(rng), "lhv": "lead.email", "op": "is not blank"},
                    {"id": _short_id(rng), "lhv": "lead.phone_1", "op": "is not blank"},
                ],
            },
            "outcome": "failure",
            "reason": "Email and phone are required",
        }
        flows.append(Flow(ids.at(created), name, sources, steps, firehose, criteria, account))
    return _first_destinations(flows, destinations)


def _first_destinations(flows: list[Flow], wanted: int) -> tuple[Flow, ...]:
    """``flows`` cut to their first ``wanted`` enabled destinations (ids made as for all five: the same seed
    names the same flows)."""
    kept: list[Flow] = []
    for flow in flows:
        firehose = copy.deepcopy(flow.firehose)
        services = firehose.get("services")
        enabled = [firehose] if not services else [services[n] for n in ("aws", "azure") if services[n]["enabled"]]
        if not firehose["enabled"] or not enabled:
            kept.append(flow)  # no destination: counts for none
            continue
        if wanted <= 0:
            continue
        for service in enabled[wanted:]:
            service["enabled"] = False
        wanted -= len(enabled)
        kept.append(replace(flow, firehose=firehose))
    return tuple(kept)


def fake_lead(rng: random.Random) -> dict[str, Any]:
    """PII-like fields a web form would send. All addresses are reserved example domains."""
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    city, state, zip3 = rng.choice(PLACES)
    lead: dict[str, Any] = {
        "first_name": first,
        "last_name": last,
        "email": f"{first}.{last}{rng.randint(1, 999)}@{rng.choice(MAIL_DOMAINS)}".lower(),
        "phone_1": f"{rng.choice((512, 214, 303, 602, 305, 206))}555{rng.randint(0, 9999):04d}",
        "address_1": f"{rng.randint(10, 9999)} {rng.choice(STREETS)}",
        "city": city,
        "state": state,
        "postal_code": f"{zip3}{rng.randint(0, 99):02d}",
        "trustedform_cert_url": f"https://cert.trustedform.com/{rng.getrandbits(160):040x}",
    }
    if rng.random() < 0.04:
        lead["email"] = ""  # some submissions miss a required field and fail acceptance criteria
    if rng.random() < 0.1:
        lead["is_test"] = "true"
    return lead


def encode_body(fields: dict[str, Any], content_type: str) -> str:
    """A request body as a source would send it, in its content type."""
    if content_type == "application/json":
        return encode(fields).decode()
    if content_type == "application/x-www-form-urlencoded":
        return urlencode({k: str(v) for k, v in fields.items()})
    items = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in fields.items())
    return f'<?xml version="1.0" encoding="UTF-8"?><lead>{items}</lead>'


@dataclass
class Submission:
    """One inbound request, as recorded in the source event's ``request``."""

    flow: Flow
    source: Source
    fields: dict[str, Any]
    method: str
    uri: str
    headers: dict[str, str]
    body: str
    received_at: datetime
    ip: str


def seeded_submission(
    flow: Flow, source: Source, fields: dict[str, Any], at: datetime, rng: random.Random
) -> Submission:
    body = encode_body(fields, source.content_type)
    return Submission(
        flow=flow,
        source=source,
        fields=fields,
        method="POST",
        uri=f"{PUBLIC_URL}/flows/{flow.id}/sources/{source.id}/submit",
        headers={
            "Content-Type": source.content_type,
            "Accept": "application/json",
            "User-Agent": "Mozilla/5.0 (compatible; LeadVendor/2.1)",
        },
        body=body,
        received_at=at,
        ip=f"198.51.100.{rng.randint(1, 254)}",  # TEST-NET-2: documentation addresses only
    )


def _base_event(
    event_id: str,
    event_type: str,
    outcome: str,
    reason: str,
    vars_: dict[str, Any],
    flow: Flow,
    start: datetime,
    ms: int,
    created: datetime | None = None,
) -> dict[str, Any]:
    """The properties every event has. ``created`` (default ``start``) is when the event was recorded: the
    moment its id was made, which ``expires_at`` counts 90 days from."""
    created = created or start
    return {
        "id": event_id,
        "type": event_type,
        "outcome": outcome,
        "reason": reason,
        "vars": vars_,
        "host": "app.leadconduit.com",
        "start_timestamp": int(start.timestamp() * 1000),
        "end_timestamp": int(start.timestamp() * 1000) + ms,
        "firehose": flow.firehose,
        "ms": ms,
        "wait_ms": max(0, ms - 4),
        "overhead_ms": min(ms, 4),
        "lag_ms": 0,
        "total_ms": ms,
        "handler_version": "5.41.2",
        "version": "3.0.0",
        "cap_reached": False,
        "ping_limit_reached": False,
        "expires_at": iso(created + RETENTION),
    }


def _recipient_outcome(rng: random.Random, step: Step, fields: dict[str, Any]) -> tuple[str, str]:
    phone = fields.get("phone_1")  # a submitted field may be a list or an object (repeated or nested keys)
    if step.key == "suppressionlist" and isinstance(phone, str) and phone.endswith("0000"):
        return "failure", "Phone is on the suppression list"
    roll = rng.random()
    if roll < 0.72:
        return "success", ""
    if roll < 0.90:
        return "failure", rng.choice(("Duplicate lead", "Outside service area", "Invalid phone"))
    if roll < 0.97:
        return "error", rng.choice(("Connection timed out", "Server returned 502"))
    return "skip", "Cap reached"


def process_lead(
    submission: Submission, ids: IdMaker, rng: random.Random
) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """Run one submission through its flow. Returns the lead id, the response body and the events (in order).

    Events: one per step that handled the lead (recipient, filter), a ``retry`` for a recipient step that
    errored with retry on, then the ``source`` event; some successful leads later get ``feedback-received``
    and ``feedback-sent`` events days afterwards.
    """
    flow, source, fields = submission.flow, submission.source, submission.fields
    at = submission.received_at
    lead_id = ids.at(at)
    lead_vars = {"id": lead_id, **fields}
    base_vars: dict[str, Any] = {
        "lead": lead_vars,
        "flow": {"id": flow.id, "name": flow.name},
        "source": {"id": source.id, "name": source.name},
        "account": dict(flow.account),
        "submission": {"timestamp": iso(at), "ip": submission.ip},
    }
    events: list[dict[str, Any]] = []
    clock = at + timedelta(milliseconds=rng.randint(5, 40))
    appended: dict[str, Any] = {}
    outcome, reason, price = "success", "", 0.0
    accepted = evaluate(flow.acceptance_criteria["rule_set"], {"vars": base_vars})
    step_count = 0
    recipient_successes: list[tuple[Step, dict[str, Any]]] = []
    if not accepted:
        outcome, reason = "failure", flow.acceptance_criteria["reason"]
    else:
        for step in flow.steps:
            step_count += 1
            ms = rng.randint(3, 900) if step.kind == "recipient" else rng.randint(1, 5)
            event_id = ids.at(clock)
            vars_ = {**base_vars, **appended}
            if step.kind == "filter":
                assert step.rule_set is not None
                stopped = evaluate(step.rule_set, {"vars": vars_})
                event = _base_event(
                    event_id,
                    "filter",
                    "stop" if stopped else "continue",
                    "Lead is from a blocked state" if stopped else "",
                    vars_,
                    flow,
                    clock,
                    ms,
                )
                event["rule_set"] = step.rule_set
                events.append(event)
                clock += timedelta(milliseconds=ms + rng.randint(1, 10))
                if stopped:
                    outcome, reason = "failure", "Lead is from a blocked state"
                    break
                continue
            result, why = _recipient_outcome(rng, step, fields)
            vars_ = {
                **vars_,
                "recipient": {"id": step.id, "name": step.name},
                "event_id": event_id,
                "price": step.price,
            }
            event = _base_event(event_id, "recipient", result, why, vars_, flow, clock, ms)
            event.update(_recipient_fields(step, result))
            events.append(event)
            appended[step.key] = {"outcome": result, "reason": why or None}
            if result == "success":
                price += step.price
                recipient_successes.append((step, event))
            if result == "error" and step.retry_enabled:
                retry_at = clock + timedelta(minutes=rng.randint(5, 30))
                retry_result, retry_why = _recipient_outcome(rng, step, fields)
                retry = _base_event(ids.at(retry_at), "retry", retry_result, retry_why, vars_, flow, retry_at, ms)
                retry.update(_recipient_fields(step, retry_result))
                retry["retry_status"] = "completed"
                events.append(retry)
            clock += timedelta(milliseconds=ms + rng.randint(1, 10))
        if outcome == "success" and rng.random() < 0.01:
            outcome, reason = "error", "Internal error processing lead"
    response_body = {"outcome": outcome, "reason": reason or None, "lead": {"id": lead_id}, "price": 0}
    total_ms = int((clock - at).total_seconds() * 1000)
    source_event = _base_event(ids.at(clock), "source", outcome, reason, base_vars, flow, at, total_ms, clock)
    source_event.update(
        {
            "module_id": "leadconduit-default.inbound",
            "package_version": "2.4.1",
            "acceptance_criteria": flow.acceptance_criteria,
            "step_count": step_count,
            "appended": appended,
            "request": {
                "method": submission.method,
                "uri": submission.uri,
                "version": "1.1",
                "headers": submission.headers,
                "body": submission.body,
                "timestamp": int(at.timestamp() * 1000),
            },
            "response": {
                "status": 201,
                "status_text": "Created",
                "version": "1.1",
                "headers": {"Content-Type": "application/json"},
                "body": encode(response_body).decode(),
                "timestamp": int(clock.timestamp() * 1000),
            },
        }
    )
    events.append(source_event)
    if recipient_successes and rng.random() < 0.06:
        events.extend(_feedback(recipient_successes[-1], base_vars, flow, clock, ids, rng))
    return lead_id, response_body, events


def _recipient_fields(step: Step, result: str) -> dict[str, Any]:
    sold = result == "success"
    return {
        "step_id": step.id,
        "key": step.key,
        "module_id": "leadconduit-custom.outbound.json"
        if step.key == "buyer_crm"
        else f"leadconduit-{step.key}.outbound.{step.key}",
        "package_version": "1.8.0",
        "caps_reached": result == "skip",
        "cost": step.price if sold and step.key != "buyer_crm" else 0.0,
        "purchase_price": 0.0,
        "sale_price": step.price if sold and step.key == "buyer_crm" else 0.0,
        "revenue": step.price if sold and step.key == "buyer_crm" else 0.0,
        step.key: {"outcome": result, "reason": None if sold else "see reason"},
    }


def _feedback(
    success: tuple[Step, dict[str, Any]],
    base_vars: dict[str, Any],
    flow: Flow,
    after: datetime,
    ids: IdMaker,
    rng: random.Random,
) -> list[dict[str, Any]]:
    step, recipient_event = success
    when = after + timedelta(days=rng.randint(1, 10), seconds=rng.randint(0, 86_399))
    kind = rng.choice(("return", "conversion"))
    why = "Bad phone number" if kind == "return" else "Policy sold"
    vars_ = {
        **base_vars,
        "recipient": {"id": step.id, "name": step.name},
        "feedback": {"timestamp": iso(when), "type": kind, "reason": why},
    }
    request = {
        "method": "POST",
        "uri": f"{PUBLIC_URL}/events/{recipient_event['id']}/{kind}",
        "version": "1.1",
        "headers": {"Content-Type": "application/json"},
        "body": encode({"reason": why}).decode(),
        "timestamp": int(when.timestamp() * 1000),
    }
    response = {
        "status": 200,
        "status_text": "OK",
        "version": "1.1",
        "headers": {"Content-Type": "application/json"},
        "body": '{"outcome":"success"}',
        "timestamp": int(when.timestamp() * 1000) + 12,
    }
    events = []
    for offset, event_type in enumerate(("feedback-sent", "feedback-received")):
        moment = when + timedelta(milliseconds=offset * 15)
        event = _base_event(ids.at(moment), event_type, "success", "", vars_, flow, moment, 12)
        event.update(
            {
                "module_id": "leadconduit-default.feedback",
                "recipient_event_id": recipient_event["id"],
                "step_id": step.id,
                "feedback": {"integration": {"module_id": "leadconduit-default.feedback"}},
                "request": request,
                "response": response,
            }
        )
        events.append(event)
    return events


def generate(
    seed: int, *, leads: int, days: float, until: datetime, flows: tuple[Flow, ...] | None = None
) -> Iterator[dict[str, Any]]:
    """Yield the events of ``leads`` leads spread over the ``days`` before ``until``, lead by lead.

    Events come in lead order, not id order (feedback and retries happen later): sort them to serve them.
    """
    flows = flows or make_flows(seed)
    rng = random.Random(f"leads:{seed}")
    ids = IdMaker(rng)
    span = days * 86_400
    offsets = sorted(rng.random() * span for _ in range(leads))
    start = until - timedelta(seconds=span)
    for offset in offsets:
        at = start + timedelta(seconds=offset)
        at = at.replace(microsecond=(at.microsecond // 1000) * 1000)
        flow = rng.choice(flows)
        source = rng.choice(flow.sources)
        submission = seeded_submission(flow, source, fake_lead(rng), at, rng)
        _, _, events = process_lead(submission, ids, rng)
        yield from (event for event in events if _created(event) <= until)


def _created(event: dict[str, Any]) -> datetime:
    return datetime.fromtimestamp(int(event["id"][:8], 16), tz=UTC)
